"""`satsr eval --pred/--ref`: same-grid check, NaN rasters, and what a pair's numbers are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from helpers import run_cli
from rasterio.crs import CRS
from rasterio.windows import Window

from satsr.evaluation import scoring as ev
from satsr.evaluation.metrics import LPIPSMetric, classical


@pytest.fixture(autouse=True)
def _isolated_torch_cache(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.setenv("COLUMNS", "250")


def _read(shared: Path, x: int, y: int, size: int) -> tuple[np.ndarray, dict]:
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        win = Window(x, y, size, size)
        prof = {"driver": "GTiff", "width": size, "height": size, "count": 3,
                "dtype": "uint8", "crs": ds.crs, "transform": ds.window_transform(win)}
        return ds.read(window=win), prof


def _write(path: Path, data: np.ndarray, prof: dict, **changes: object) -> Path:
    with rasterio.open(path, "w", **{**prof, "dtype": data.dtype.name, **changes}) as out:
        out.write(data)
    return path


def _blurred(data: np.ndarray) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(data.astype(np.float64), size=(1, 3, 3)).round().astype(data.dtype)


def _one_line_error(code: int, err: str, *needles: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("satsr: error:")]
    assert code == 2 and len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------- the same ground grid


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("case", ["crs", "origin", "pixel size", "half georeferenced"])
def test_pred_and_ref_on_different_grids_are_refused(
        shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    """Same pixels, different ground: EPSG:4326 vs 32618, a shifted origin, 7 m vs 1 m."""
    data, prof = _read(shared, 100, 100, 64)
    utm = {"crs": CRS.from_epsg(32618), "transform": Affine(1, 0, 500000, 0, -1, 4000000)}
    ref = _write(tmp_path / "ref.tif", data, prof, **utm)
    other = {
        "crs": {"crs": CRS.from_epsg(4326), "transform": Affine(1e-5, 0, -75, 0, -1e-5, 36)},
        "origin": {**utm, "transform": Affine(1, 0, 500003, 0, -1, 4000000)},
        "pixel size": {**utm, "transform": Affine(7, 0, 500000, 0, -7, 4000000)},
        "half georeferenced": {"crs": None, "transform": Affine.identity()},
    }[case]
    pred = _write(tmp_path / "pred.tif", _blurred(data), prof, **other)
    code, _, err = run_cli(["eval", "--pred", str(pred), "--ref", str(ref), "--metric", "psnr",
                            "--no-progress"], capsys)
    line = _one_line_error(code, err, str(pred), str(ref))
    assert {"crs": "different CRSs", "origin": "same pixel grid",
            "pixel size": "same pixel grid",
            "half georeferenced": "is not"}[case] in line


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_pred_and_ref_on_the_same_grid_within_a_hundredth_of_a_pixel_are_scored(
        shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 0.005-px origin difference (float noise in a transform) is the same grid; neither
    georeferenced (plain images) is taken as aligned."""
    data, prof = _read(shared, 100, 100, 64)
    ref = _write(tmp_path / "ref.tif", data, prof)
    t = prof["transform"]
    near = Affine(t.a, t.b, t.c + 0.005 * t.a, t.d, t.e, t.f)
    pred = _write(tmp_path / "pred.tif", _blurred(data), prof, transform=near)
    code, _, err = run_cli(["eval", "--pred", str(pred), "--ref", str(ref), "--metric", "psnr",
                            "--no-progress"], capsys)
    assert code == 0, err
    plain = {"crs": None, "transform": Affine.identity()}
    a = _write(tmp_path / "a.tif", data, prof, **plain)
    b = _write(tmp_path / "b.tif", _blurred(data), prof, **plain)
    code, _, err = run_cli(["eval", "--pred", str(b), "--ref", str(a), "--metric", "psnr",
                            "--no-progress"], capsys)
    assert code == 0, err


# ------------------------------------------------------------------------------ NaN


def test_nan_raster_errors_name_the_file(shared: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A float raster holding NaN: NaN is nodata, and when nothing is left the error names
    the file (pair mode and DATA mode)."""
    data, prof = _read(shared, 300, 300, 64)
    good = data.astype(np.float32)
    bad = good.copy()
    bad[:, 10, 10] = np.nan
    clean = _write(tmp_path / "clean.tif", good, prof)
    holed = _write(tmp_path / "holed.tif", bad, prof)
    code, _, err = run_cli(["eval", "--pred", str(holed), "--ref", str(clean), "--metric",
                            "psnr", "--no-progress"], capsys)
    line = _one_line_error(code, err, str(holed), "NaN")
    assert str(clean) not in line
    code, _, err = run_cli(["eval", str(holed), "--metric", "psnr", "--no-progress"], capsys)
    _one_line_error(code, err, str(holed), "NaN")
    allnan = _write(tmp_path / "allnan.tif", np.full_like(good, np.nan), prof)
    code, _, err = run_cli(["eval", str(allnan), "--metric", "psnr", "--no-progress"], capsys)
    _one_line_error(code, err, str(allnan))


# ------------------------------------------------------------- what a pair's number is


def test_pair_is_scored_as_one_whole_image(shared: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A 384-px pair: every metric equals the metric of the whole image, not a mean of pieces
    (the old 256-px pieces gave a 4% lower LPIPS)."""
    data, prof = _read(shared, 300, 200, 384)
    ref = _write(tmp_path / "ref.tif", data, prof)
    pred = _write(tmp_path / "pred.tif", _blurred(data), prof)
    j = tmp_path / "r.json"
    code, out, err = run_cli(["eval", "--pred", str(pred), "--ref", str(ref), "--metric",
                              "l2,dssim,psnr,alex,alex-l", "--json", str(j), "--no-progress"],
                             capsys)
    assert code == 0, err
    doc = json.loads(j.read_text())
    res = doc["results"]["pred"]
    a = torch.from_numpy(_blurred(data).astype(np.float32))[None] / 127.5 - 1
    b = torch.from_numpy(data.astype(np.float32))[None] / 127.5 - 1
    for k in ("alex", "alex-l"):
        assert res[k]["mean"] == pytest.approx(float(LPIPSMetric(k)(a, b)[0]), rel=1e-6), k
    for k, v in classical(a[0].numpy(), b[0].numpy(), ["l2", "dssim", "psnr"]).items():
        assert res[k]["mean"] == pytest.approx(v, rel=1e-9), k
    assert doc["scored"] == "whole image" and doc["samples"] == 1 and "whole image" in out


def test_pair_above_the_pixel_budget_is_the_mean_of_its_pieces(shared: Path,
                                                               tmp_path: Path) -> None:
    """Above --max-pixels the pair is cut into near-equal pieces and the pieces averaged."""
    data, prof = _read(shared, 300, 200, 96)
    ref = _write(tmp_path / "ref.tif", data, prof)
    pred = _write(tmp_path / "pred.tif", _blurred(data), prof)
    samples, total, scaling, label, info = ev.pair_samples(pred, ref, chip=48,
                                                           max_pixels=96 * 96 - 1)
    res = ev.score_samples(samples, [ev.Method(label, lambda x: x)], ["psnr", "alex"], scaling,
                           1, [0, 1, 2], progress=False, info=info)
    assert total == 4 and res.info["samples"] == 4 and "pieces" in res.info["scored"]
    a = torch.from_numpy(_blurred(data).astype(np.float32))[None] / 127.5 - 1
    b = torch.from_numpy(data.astype(np.float32))[None] / 127.5 - 1
    lp = LPIPSMetric("alex")
    pieces = [float(lp(a[..., y:y + 48, x:x + 48], b[..., y:y + 48, x:x + 48])[0])
              for y in (0, 48) for x in (0, 48)]
    assert res.summary()["pred"]["alex"][0] == pytest.approx(np.mean(pieces), rel=1e-6)
