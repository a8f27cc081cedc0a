"""`satsr eval --degradation`: methods scored under several degradations in one table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, write_dataset

from satsr.data.degrade import Degradation
from satsr.evaluation import scoring as ev


@pytest.fixture(scope="module")
def ds(shared: Path, tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"), shared / "netherlands_aerial_0.25m.tif",
                         64, {"train": 1, "test": 4})


def _run(ds: Path, degs: list[Degradation] | None, seed: int = 0) -> ev.EvalResult:
    samples, total, scaling, info = ev.dataset_samples(ds)
    return ev.score_samples(samples, [ev.classical_method("bicubic", 4)], ["psnr", "l2"], scaling,
                            4, [0, 1, 2], total=total, progress=False, degradations=degs, seed=seed)


def test_rows_per_degradation_and_bicubic_row_equals_a_plain_eval(ds: Path) -> None:
    plain = _run(ds, None)
    both = _run(ds, [Degradation.resolve("bicubic", 4), Degradation.resolve("jpeg", 4)])
    assert plain.methods == ["bicubic"]
    assert both.methods == ["bicubic [bicubic]", "bicubic [jpeg]"]
    assert both.values["bicubic [bicubic]"]["psnr"] == plain.values["bicubic"]["psnr"]
    assert np.mean(both.values["bicubic [jpeg]"]["psnr"]) < np.mean(plain.values["bicubic"]["psnr"])
    assert both.info["degradations"]["jpeg"]["steps"][1]["jpeg"]["quality"] == [50.0, 90.0]


def test_random_degradations_are_drawn_per_image_from_the_seed(ds: Path) -> None:
    deg = [Degradation.resolve("blur-noise", 4)]
    a, b, c = _run(ds, deg, 0), _run(ds, deg, 0), _run(ds, deg, 1)
    key = "bicubic [blur-noise]"
    assert a.values[key]["psnr"] == b.values[key]["psnr"]
    assert a.values[key]["psnr"] != c.values[key]["psnr"]
    # an image's LR does not depend on the batch it falls in
    samples, total, scaling, _ = ev.dataset_samples(ds)
    one = ev.score_samples(samples, [ev.classical_method("bicubic", 4)], ["psnr"], scaling, 4,
                           [0, 1, 2], total=total, progress=False, degradations=deg, batch_size=1)
    assert one.values[key]["psnr"] == a.values[key]["psnr"]


def test_cli_families_in_one_table_and_json(ds: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "e.json"
    code, stdout, err = run_cli(["eval", str(ds), "--degradation", "families", "--metric",
                                 "psnr", "--no-progress", "--json", str(out)], capsys)
    assert code == 0, err
    names = list(json.loads(out.read_text())["results"])
    assert names == [f"bicubic [{f}]" for f in ("bicubic", "jpeg", "blur-noise", "nearest",
                                                "nearest-reproject")]
    assert "nearest-reproject" in stdout


@pytest.mark.parametrize("args, msg", [
    (["--degradation", "sharp"], "unknown degradation 'sharp'"),
    (["--degradation", "FILE"], "unknown step 'sharpen'"),
])
def test_bad_degradation_is_one_line(ds: Path, tmp_path: Path, capsys, args, msg) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [{sharpen: {}}, {downscale: {}}]\n")
    args = [str(bad) if a == "FILE" else a for a in args]
    code, _, err = run_cli(["eval", str(ds), *args, "--no-progress"], capsys)
    assert code != 0 and msg in err and err.count("\n") == 1


def test_pairs_take_no_degradation(ds: Path, capsys) -> None:
    chip = next((ds / "chips" / "test").glob("*.tif"))
    code, _, err = run_cli(["eval", "--pred", str(chip), "--ref", str(chip), "--degradation",
                            "jpeg"], capsys)
    assert code != 0 and "--degradation" in err
