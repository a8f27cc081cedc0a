"""Issue 19: silent wrong results, the hang and the tracebacks a hostile user found. Each case
ends in one `satsr: error:` line and a non-zero exit, with nothing half-made, or in the right
result. (The data-loss cases are in test_hostile_dataloss.py.)"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from helpers import real_crop, refused, run_cli, tiny_config, write_dataset
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from safetensors import safe_open
from safetensors.torch import save_file

from satsr.data.scaling import BandScaling
from satsr.data.splitfile import SplitFile
from satsr.errors import SatsrError, SatsrWarning
from satsr.inference.bundled import bundled_model
from satsr.inference.modelfile import load_model, read_metadata, save_model
from satsr.nn import Generator
from satsr.training.loop import Trainer, train

SRC = "netherlands_aerial_0.25m.tif"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def small(shared, tmp_path) -> Path:
    """48 px of real imagery (uint8 RGB, georeferenced)."""
    return real_crop(shared / SRC, tmp_path / "small.tif", 48)


# ------------------------------------------------------------------ model checksum


def test_bundled_models_carry_a_checksum_and_load_verified():
    for name in ("satsr-rgb-x4", "satsr-ms-x4"):
        m = bundled_model(name)
        assert m is not None
        assert len(read_metadata(m.path)["weights_sha256"]) == 64
        with warnings.catch_warnings():
            warnings.simplefilter("error", SatsrWarning)
            load_model(m.path)


def test_flipped_bytes_that_leave_weights_finite_are_refused(tmp_path):
    m = bundled_model("satsr-rgb-x4")
    assert m is not None
    data = bytearray(m.path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    start = 8 + header
    # 200 lowest mantissa bits of float16 weights: every weight stays finite
    for i in range(200):
        data[start + 2 * (i * 97 % ((len(data) - start) // 2))] ^= 0x01
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with safe_open(str(bad), framework="pt") as f:
        assert all(torch.isfinite(f.get_tensor(k)).all() for k in f.keys())
    with pytest.raises(SatsrError, match="do not match the checksum"):
        load_model(bad)


def test_a_model_file_without_checksum_loads_with_an_unverified_warning(tmp_path):
    m = bundled_model("satsr-rgb-x4")
    assert m is not None
    with safe_open(str(m.path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    satsr = json.loads(meta["satsr"])
    del satsr["weights_sha256"]
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**meta, "satsr": json.dumps(satsr)})
    with pytest.warns(SatsrWarning, match="unverified"):
        load_model(old)


# ------------------------------------------------------------------ output sanity


def test_a_model_that_makes_a_constant_raster_is_refused(small, tmp_path, capsys):
    torch.manual_seed(0)
    g = Generator(3, 4, n_blocks=1, features=8)
    with torch.no_grad():
        g.tail.bias.fill_(-1e4)  # finite, absurd: every pixel black
    model = save_model(tmp_path / "absurd.safetensors", g, {
        "variant": "mse", "scaling": BandScaling("uint8", (0.0,) * 3, (255.0,) * 3).to_dict()})
    code, _, err = run_cli(["upscale", str(small), "-o", str(tmp_path / "o.tif"), "-m",
                            str(model)], capsys)
    refused(code, err, "every output pixel")
    assert not (tmp_path / "o.tif").exists()


# ------------------------------------------------------------------ split files


@pytest.fixture()
def split_doc(shared, tmp_path, capsys):
    src = shared / SRC
    path = tmp_path / "split.json"
    code, _, err = run_cli(["make-dataset", str(src), "-o", str(tmp_path / "ds0"), "--size",
                            "32", "-n", "4", "--block", "64", "--write-split", str(path)],
                           capsys)
    assert code == 0, err
    return path, json.loads(path.read_text())


def test_a_split_file_with_one_block_in_two_splits_is_refused(split_doc, tmp_path):
    path, doc = split_doc
    blocks = doc["sources"][0]["blocks"]
    other = "test" if blocks[0][4] != "test" else "train"
    blocks.append([*blocks[0][:4], other])  # leakage: the same pixels in two splits
    path.write_text(json.dumps(doc))
    with pytest.raises(SatsrError, match="leaks"):
        SplitFile.read(path)


@pytest.mark.parametrize("value", [True, 64.5, "64"])
def test_a_split_file_block_must_be_a_whole_number(split_doc, value):
    path, doc = split_doc
    doc["block"] = value  # true used to be read as a 1 px block
    path.write_text(json.dumps(doc))
    with pytest.raises(SatsrError, match="malformed"):
        SplitFile.read(path)


def test_a_split_file_of_another_crs_is_refused(split_doc, shared, tmp_path, capsys):
    path, doc = split_doc
    doc["sources"][0]["crs"] = "EPSG:4326"
    path.write_text(json.dumps(doc))
    code, _, err = run_cli(["make-dataset", str(shared / SRC), "-o", str(tmp_path / "ds1"),
                            "--size", "32", "-n", "4", "--split-file", str(path)], capsys)
    refused(code, err, "CRS")
    assert not (tmp_path / "ds1").exists()


# ------------------------------------------------------------------ --resume


def test_resume_with_another_dataset_of_the_same_chip_names_is_refused(shared, tmp_path):
    a = write_dataset(tmp_path / "a", shared / SRC, 32, {"train": 4, "val": 1})
    b = write_dataset(tmp_path / "b", shared / "colorado_aerial_0.15m.tif", 32,
                      {"train": 4, "val": 1})
    run = tmp_path / "run"
    train(tiny_config(a, run, variant="mse", iterations=1))
    with pytest.raises(SatsrError, match="does not hold the train split"):
        Trainer(tiny_config(b, run, variant="mse", iterations=2), resume=True)


# ------------------------------------------------------------------ palettes, GCPs


def test_a_paletted_raster_is_refused_by_models_and_bicubic_and_kept_by_nearest(tmp_path,
                                                                                 capsys):
    pal = tmp_path / "classes.tif"
    data = (np.arange(32 * 32).reshape(1, 32, 32) // 100 % 4).astype("uint8")
    with rasterio.open(pal, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8",
                       crs="EPSG:32631", transform=Affine(1, 0, 0, 0, -1, 32)) as dst:
        dst.write(data)
        dst.write_colormap(1, {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)})
    code, _, err = run_cli(["upscale", str(pal), "-o", str(tmp_path / "o.tif"), "--method",
                            "bicubic"], capsys)
    refused(code, err, "paletted", "--method nearest")
    assert not (tmp_path / "o.tif").exists()
    code, _, err = run_cli(["upscale", str(pal), "-o", str(tmp_path / "n.tif"), "--method",
                            "nearest"], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "n.tif") as ds:
        assert set(np.unique(ds.read(1))) <= {0, 1, 2, 3}


def test_gcp_georeferenced_rasters_keep_their_control_points_scaled(small, tmp_path, capsys):
    src = tmp_path / "gcp.tif"
    gcps = [GroundControlPoint(row=0, col=0, x=5.0, y=52.0),
            GroundControlPoint(row=0, col=48, x=5.01, y=52.0),
            GroundControlPoint(row=48, col=0, x=5.0, y=51.99)]
    with rasterio.open(small) as ds:
        data = ds.read()
    with rasterio.open(src, "w", driver="GTiff", width=48, height=48, count=3,
                       dtype="uint8") as dst:
        dst.write(data)
        dst.gcps = (gcps, CRS.from_epsg(4326))
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "o.tif"), "--method",
                            "nearest"], capsys)
    assert code == 0, err
    assert "has no CRS" not in err
    with rasterio.open(tmp_path / "o.tif") as out:
        got, crs = out.gcps
    assert crs == CRS.from_epsg(4326)
    assert [(g.row, g.col, g.x, g.y) for g in got] == \
        [(g.row * 4, g.col * 4, g.x, g.y) for g in gcps]


# ------------------------------------------------------------------ options, at declaration


@pytest.mark.parametrize("args,needle", [
    (["--seed", "-1"], "--seed"),
    (["--seed", "123456789012345678901"], "--seed"),
    (["--features", "100000"], "--features"),
    (["--n-blocks", "100000"], "--n-blocks"),  # the model loader caps at 256: so does train
    (["--n-blocks", "256", "--features", "2048"], "--features"),  # a step of hours: the hang
])
def test_train_numeric_options_are_refused_before_any_run_folder(args, needle, shared,
                                                                 tmp_path, capsys):
    ds = write_dataset(tmp_path / "ds", shared / SRC, 32, {"train": 2, "val": 1})
    run = tmp_path / "run"
    code, _, err = run_cli(["train", str(ds), "-o", str(run), "--iterations", "1", *args],
                           capsys)
    refused(code, err, needle)
    assert not run.exists()


@pytest.mark.parametrize("args,needle", [
    (["--nodata", "300"], "--nodata"), (["--nodata", "-1"], "--nodata"),
    (["--nodata", "nan"], "--nodata"), (["--co", "BLOCKXSIZE=7"], "--co"),
    (["--co", "COMPRESS=FOO"], "--co"),
])
def test_upscale_options_gdal_or_the_dtype_refuse_are_one_line(args, needle, small, tmp_path,
                                                               capsys):
    code, _, err = run_cli(["upscale", str(small), "-o", str(tmp_path / "o.tif"), "--method",
                            "bicubic", *args], capsys)
    refused(code, err, needle)
    assert not [p for p in tmp_path.iterdir() if p.name == "o.tif" or ".part" in p.name]


def test_make_dataset_nodata_out_of_dtype_range_is_one_line(small, tmp_path, capsys):
    code, _, err = run_cli(["make-dataset", str(small), "-o", str(tmp_path / "ds"), "--size",
                            "16", "-n", "2", "--nodata", "999"], capsys)
    refused(code, err, "--nodata", "uint8")
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("args,needle", [
    (["--scale", "0"], "--scale"), (["--scale", "-2"], "--scale"), (["--seed", "-1"], "--seed"),
])
def test_eval_scale_and_seed_are_checked(args, needle, small, capsys):
    code, _, err = run_cli(["eval", str(small), "--metric", "l2", *args], capsys)
    refused(code, err, needle)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_place_is_one_line(small, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run_cli(["upscale", str(small), "-o", str(locked / "o.tif"),
                                "--method", "bicubic"], capsys)
        refused(code, err, "permission")
        code, _, err = run_cli(["make-dataset", str(small), "-o", str(locked / "ds"),
                                "--size", "16", "-n", "2"], capsys)
        refused(code, err, "permission")
    finally:
        locked.chmod(0o755)


def test_folder_outputs_get_their_missing_parents(small, tmp_path, capsys):
    """The README's `make-dataset ... -o data/l8` works in a fresh folder."""
    out = tmp_path / "fresh" / "data" / "l8"
    code, _, err = run_cli(["make-dataset", str(small), "-o", str(out), "--size", "16", "-n",
                            "2"], capsys)
    assert code == 0, err
    assert (out / "index.geojson").is_file()
    run = tmp_path / "fresh" / "runs" / "advrec"
    code, _, err = run_cli(["train", str(out), "-o", str(run), "--iterations", "1",
                            "--hr-size", "16", "-b", "1", "--n-blocks", "1", "--features", "8",
                            "--val-every", "0", "--variant", "mse", "--device", "cpu"], capsys)
    assert code == 0, err
    assert (run / "model.safetensors").is_file()
    shutil.rmtree(tmp_path / "fresh")


# ------------------------------------------------------------------ messages


def test_messages_name_flags_and_leave_counted_words_alone():
    from satsr.cli.options import cli_message

    exc = SatsrError("batch_size must be >= 1, chip_size >= 8, figure_crop >= 4",
                     option=("batch_size", "chip_size", "figure_crop"))
    assert cli_message(exc) == "--batch-size must be >= 1, --chip-size >= 8, --figure-crop >= 4"
    exc = SatsrError("the rasters have 3 float64 bands (RGB); give bands 1,2,3", option="bands")
    assert cli_message(exc) == "the rasters have 3 float64 bands (RGB); give --bands 1,2,3"
    exc = SatsrError("no band scaling of its own (give scaling input)", option="scaling")
    assert cli_message(exc) == "no band scaling of its own (give --scaling input)"


def test_demo_with_the_multispectral_model_is_refused_before_writing(tmp_path, capsys):
    out = tmp_path / "demo"
    code, _, err = run_cli(["demo", "-m", "satsr-ms-x4", "-o", str(out)], capsys)
    refused(code, err, "band-by-band", "satsr upscale")
    assert not out.exists()


def test_a_run_killed_before_its_first_checkpoint_points_to_overwrite_only(shared, tmp_path,
                                                                          capsys):
    ds = write_dataset(tmp_path / "ds", shared / SRC, 32, {"train": 2, "val": 1})
    run = tmp_path / "run"
    train(tiny_config(ds, run, variant="mse", iterations=1))
    (run / "checkpoint.pt").unlink()  # as kill -9 before the first checkpoint leaves it
    (run / "model.safetensors").unlink()
    code, _, err = run_cli(["train", "-o", str(run), "--resume"], capsys)
    line = refused(code, err, "--overwrite")
    assert "--resume" not in line.split("nothing to resume")[-1]
    code, _, err = run_cli(["train", str(ds), "-o", str(run), "--iterations", "1"], capsys)
    line = refused(code, err, "--overwrite")
    assert "use --resume" not in line


def test_on_a_non_terminal_long_runs_print_progress_lines(small, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.setenv("SATSR_PROGRESS_EVERY", "0.001")  # every update, for the test
    code, _, err = run_cli(["upscale", str(small), "-o", str(tmp_path / "o.tif"), "--method",
                            "bicubic", "--tile", "18", "--overlap", "2"], capsys)
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("satsr: progress: ")]
    assert lines and all("/" in ln and " s" in ln for ln in lines), err


# ------------------------------------------------------------------ README, versions


ROOT = Path(__file__).resolve().parents[1]


def test_readme_has_quick_start_and_limitations_near_the_top_and_its_commands_first():
    lines = (ROOT / "README.md").read_text().splitlines()
    heads = {ln: i for i, ln in enumerate(lines) if ln.startswith("## ")}
    assert heads["## Quick start"] < 60 and heads["## Limitations"] < 100
    assert lines[10] == "bash setup.sh && .venv/bin/satsr demo -o satsr-demo"
    assert lines[13] == "bash setup.sh && .venv/bin/python -m pytest"


def test_version_changelog_and_readme_agree(capsys):
    import re

    import satsr

    major_minor = ".".join(satsr.__version__.split(".")[:2])
    assert satsr.__version__ == "0.6.0"
    assert 'attr = "satsr.__version__"' in (ROOT / "pyproject.toml").read_text()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(satsr.__version__)}\] - \d{{4}}-\d\d-\d\d$", changelog,
                     re.M)
    assert f"in {major_minor}" in (ROOT / "README.md").read_text()
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"satsr {satsr.__version__}"


def test_models_shows_each_models_strength(capsys):
    code, out, _ = run_cli(["models", "--json"], capsys)
    assert code == 0
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and "strength" in out and "0.75" in out  # satsr-ms-x4's (0.6)
    assert "adaptive 0.2-0.4" in out  # satsr-rgb-x4's per-tile share (issue 20)
    assert out.count("zero-mean") == 2  # both remove each tile's mean correction (0.6)


def test_a_stop_request_does_not_wait_for_a_step_of_minutes(shared, tmp_path, monkeypatch):
    """SIGTERM / Ctrl-C finishes the step and saves; a step still running STOP_GRACE_S after
    the request is aborted (the hang: a huge run ignored SIGTERM for minutes)."""
    import signal
    import time

    import satsr.training.signals as signals

    monkeypatch.setattr(signals, "STOP_GRACE_S", 0.5)
    ds = write_dataset(tmp_path / "ds", shared / SRC, 32, {"train": 2, "val": 1})

    def slow_step(trainer, it):  # the request comes, then a step of "minutes"
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(60)

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(ds, tmp_path / "run", variant="mse", iterations=3), on_step=slow_step)
    assert time.monotonic() - t0 < 30


def test_eval_warnings_are_satsr_lines(small, capsys, monkeypatch):
    import satsr.evaluation.evaluate as ev_mod
    from satsr.errors import MetricUnavailableWarning

    real = ev_mod.evaluate

    def warn_once(*args, **kwargs):  # a metric without weights, as on a bare machine
        warnings.warn("squeeze is unavailable: weights not found", MetricUnavailableWarning,
                      stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(ev_mod, "evaluate", warn_once)
    code, _, err = run_cli(["eval", "--pred", str(small), "--ref", str(small), "--metric",
                            "l2"], capsys)
    assert code == 0, err
    assert "satsr: warning: squeeze is unavailable: weights not found" in err.splitlines(), err


def test_a_small_raster_for_the_band_by_band_model_gets_advice_that_works(tmp_path, capsys):
    """The loop: 'use the model's scaling instead', then --scaling model: 'a band-by-band
    model has no band --scaling of its own'. Now the advice is a flag that works."""
    src = tmp_path / "u16.tif"
    data = np.random.default_rng(0).integers(0, 4000, (3, 20, 20)).astype("uint16")
    with rasterio.open(src, "w", driver="GTiff", width=20, height=20, count=3, dtype="uint16",
                       crs="EPSG:32631", transform=Affine(1, 0, 0, 0, -1, 20)) as dst:
        dst.write(data)
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "o.tif"), "-m",
                            "satsr-ms-x4"], capsys)
    line = refused(code, err, "--method bicubic")
    assert "scaling model" not in line and "model's scaling" not in line
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "o.tif"), "--method",
                            "bicubic"], capsys)
    assert code == 0, err
