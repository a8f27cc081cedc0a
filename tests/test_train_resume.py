"""`satsr train` config hygiene: what --resume may change, strict option types, the run clock."""

from __future__ import annotations

import csv
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
from helpers import run_cli, tiny_config, write_dataset

from satsr.errors import SatsrError
from satsr.training.config import CHANGEABLE_ON_RESUME, TrainConfig, make_config
from satsr.training.loop import Trainer, train
from satsr.training.rundir import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds(shared: Path, tmp_path_factory) -> Path:
    """6 train + 1 val chips of 32 px, 3 bands uint8."""
    return write_dataset(tmp_path_factory.mktemp("ds"), shared / "netherlands_aerial_0.25m.tif",
                         32, {"train": 6, "val": 1})


def cfg(ds: Path, out: Path, **kw) -> TrainConfig:
    return tiny_config(ds, out, **{"variant": "mse", "iterations": 1, **kw})


def log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


TINY = ["--hr-size", "32", "-b", "2", "-n", "1", "--n-blocks", "1", "--features", "8",
        "--val-every", "0", "--device", "cpu", "--variant", "mse"]


def _one_line_error(code: int, err: str) -> str:
    assert code != 0
    err = err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("satsr: error:"), err
    return err


# --------------------------------------------------------------------------- --resume


def test_resume_with_other_batch_lr_or_crop_is_refused_in_one_line_and_writes_nothing(
        ds, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, _ = run_cli(["train", str(ds), "-o", str(run), *TINY], capsys)
    assert code == 0
    saved = {n: (run / n).read_bytes() for n in ("config.yaml", "log.csv", "checkpoint.pt")}
    code, _, err = run_cli(["train", "-o", str(run), "--resume", "-n", "2", "-b", "3",
                            "--lr", "1e-3", "--hr-size", "16"], capsys)
    err = _one_line_error(code, err)
    assert "cannot change --batch-size, --hr-size, --lr of a resumed run" in err, err
    assert "--batch-size=2" in err and "--batch-size=3" in err and "--lr=0.001" in err
    # issue 19: no internal names (batch_size, channels_last) in what the user reads
    assert "_" not in err.split(" was trained")[1].split(";")[1], err
    assert "only --iterations, --device, --amp, --cpu-bf16, --channels-last" in err, err
    assert {n: (run / n).read_bytes() for n in saved} == saved  # config.yaml not rewritten


@pytest.mark.parametrize("key,value", [
    ("batch_size", 1), ("hr_size", 16), ("lr", 1e-3), ("beta1", 0.0), ("beta2", 0.99),
    ("lambda1", 2.0), ("lambda2", 1e-4), ("seed", 2), ("val_chips", 3), ("n_blocks", 2),
    ("upsample", "nearest"),
])
def test_every_option_outside_the_changeable_list_is_fixed_on_resume(ds, tmp_path, key, value):
    run = tmp_path / "run"
    train(cfg(ds, run))
    with pytest.raises(SatsrError, match=f"cannot change {key} of a resumed run"):
        Trainer(cfg(ds, run, iterations=2, **{key: value}), resume=True)


def test_changeable_list_is_what_the_help_says():
    import inspect

    from satsr.cli.cmd_train import command

    fixed = {f.name for f in fields(TrainConfig)} - set(CHANGEABLE_ON_RESUME)
    assert {"batch_size", "hr_size", "lr", "seed", "variant", "lambda2", "val_chips"} <= fixed
    assert {"iterations", "device", "workers", "log_every"} <= set(CHANGEABLE_ON_RESUME)
    text = " ".join(inspect.signature(command).parameters["resume"].default.help.split())
    for name in set(CHANGEABLE_ON_RESUME) - {"data", "out"}:
        assert f"--{name.replace('_', '-')}" in text, name
    assert "DATA" in text


def test_resume_may_train_longer_change_cadence_and_read_a_moved_copy_of_the_dataset(
        ds, tmp_path):
    run = tmp_path / "run"
    train(cfg(ds, run))
    moved = tmp_path / "moved"
    shutil.copytree(ds, moved)
    res = train(cfg(moved, run, iterations=3, log_every=2, checkpoint_every=2, workers=0),
                resume=True)
    assert res.start_iteration == 1 and res.iterations == 3
    assert [r["iteration"] for r in log_rows(run)] == ["1", "2", "3"]


def test_resume_on_another_dataset_is_refused(ds, shared, tmp_path):
    run = tmp_path / "run"
    train(cfg(ds, run))
    other = write_dataset(tmp_path / "other", shared / "colorado_aerial_0.15m.tif", 32,
                          {"train": 5, "val": 1})
    with pytest.raises(SatsrError, match="does not hold the train split"):
        Trainer(cfg(other, run, iterations=2), resume=True)


# --------------------------------------------------------------------------- option types


def _fields_of(kind: str) -> list[str]:
    """TrainConfig fields annotated `kind` or `kind | None`."""
    return [f.name for f in fields(TrainConfig) if f.type.split(" | ")[0] == kind]


INT_FIELDS, FLOAT_FIELDS = _fields_of("int"), _fields_of("float")
BOOL_FIELDS, STR_FIELDS = _fields_of("bool"), _fields_of("str")


@pytest.mark.parametrize("name,value", (
    [(n, v) for n in INT_FIELDS for v in (True, False, 2.5, "ten", [3])]
    + [(n, v) for n in FLOAT_FIELDS for v in (True, "fast", {"a": 1})]
    + [(n, v) for n in BOOL_FIELDS for v in (2, 0.5, "maybe", [True])]
    + [(n, v) for n in STR_FIELDS for v in (True, ["a"], {"k": "v"})]
))
def test_a_value_of_the_wrong_type_is_refused_naming_the_option(name, value):
    with pytest.raises(SatsrError, match=f"config option '{name}' must be") as exc:
        make_config({name: value})
    assert "\n" not in str(exc.value)


def test_every_typed_field_is_covered_and_sensible_spellings_are_accepted():
    assert len(INT_FIELDS + FLOAT_FIELDS + BOOL_FIELDS + STR_FIELDS) == len(fields(TrainConfig))
    c = make_config({"iterations": 5.0, "batch-size": "12", "lr": "2e-4", "lambda2": 0,
                     "amp": "off", "residual": 1, "out": 2024, "seed": -3})
    assert c.iterations == 5 and isinstance(c.iterations, int) and c.batch_size == 12
    assert c.lr == 2e-4 and c.lambda2 == 0.0 and isinstance(c.lambda2, float)
    assert c.amp is False and c.residual is True and c.out == "2024" and c.seed == -3


def test_iterations_true_in_a_config_file_is_a_one_line_error(ds, tmp_path, capsys):
    conf = tmp_path / "c.toml"
    conf.write_text("iterations = true\n")
    code, _, err = run_cli(["train", str(ds), "-o", str(tmp_path / "run"), "--config",
                            str(conf), "--hr-size", "32", "-b", "2", "--n-blocks", "1",
                            "--features", "8", "--val-every", "0", "--device", "cpu"], capsys)
    err = _one_line_error(code, err)
    assert "config option 'iterations' must be a whole number, not True" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags,match", [
    (["-b", "0"], "--batch-size must be at least 1"),
    (["-b", "-2"], "--batch-size must be at least 1"),
    (["-n", "0"], "--iterations must be at least 1"),
    (["--hr-size", "0"], "--hr-size must be at least 1"),
    (["--log-every", "0"], "--log-every must be at least 1"),
    (["--workers", "-2"], "--workers must be >= 0, or -1 for auto"),
    (["--lambda2", "-1"], "--lambda1 and --lambda2 must be >= 0"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lambda1", "inf"], "--lambda1 must be a finite number"),
])
def test_zero_negative_or_non_finite_values_are_refused_not_defaulted(ds, tmp_path, capsys,
                                                                     flags, match):
    code, _, err = run_cli(["train", str(ds), "-o", str(tmp_path / "run"), *TINY, *flags],
                           capsys)
    assert match in _one_line_error(code, err)
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- the run clock


def test_elapsed_s_continues_from_the_checkpoint_after_resume(ds, tmp_path):
    run = tmp_path / "run"
    train(cfg(ds, run, iterations=2))
    first = [float(r["elapsed_s"]) for r in log_rows(run)]
    at_ckpt = float(load_checkpoint(run / "checkpoint.pt")["elapsed_s"])
    assert at_ckpt >= first[-1] > 0
    train(cfg(ds, run, iterations=3), resume=True)
    rows = log_rows(run)
    assert [r["iteration"] for r in rows] == ["1", "2", "3"]
    assert float(rows[2]["elapsed_s"]) > at_ckpt  # not restarted at 0
    assert float(load_checkpoint(run / "checkpoint.pt")["elapsed_s"]) >= float(
        rows[2]["elapsed_s"])
