"""Band-by-band models: any band count and dtype, every band kept, no band mixing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import run_cli
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from satsr.data.bandsamples import band_samples
from satsr.data.make_dataset import make_dataset
from satsr.data.scaling import BandScaling
from satsr.inference.modelfile import read_metadata, save_model
from satsr.nn import Generator
from satsr.training.config import TrainConfig
from satsr.training.loop import Trainer


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    g = Generator(1, 4, n_blocks=1, features=8, residual=True, upsample="nearest")
    with torch.no_grad():
        g.tail.weight.normal_(0, 0.01)
    path = tmp_path_factory.mktemp("bw") / "bw.safetensors"
    return save_model(path, g, {"variant": "mse", "bandwise": True,
                                "scaling": BandScaling("float32", (-1.0,), (1.0,)).to_dict()})


def _stack(shared: Path, n: int, dtype: str, path: Path) -> Path:
    """An n-band raster made of real bands (Landsat 8 and NAIP fixtures, 96 x 96)."""
    win = Window(0, 0, 96, 96)
    with rasterio.open(shared / "landsat8_rgb16_60m.tif") as a:
        l8, profile = a.read(window=win).astype(np.float64), a.profile
        transform = a.window_transform(win)
    with rasterio.open(shared / "naip_rgbn_5m.tif") as b:
        naip = b.read(window=win).astype(np.float64) * 40
    pool = np.concatenate([l8, naip])
    data = np.stack([pool[i % len(pool)] + 7 * (i // len(pool)) for i in range(n)])
    if dtype == "int16":
        data = data - 9000
    if dtype == "float32":
        data = data / 10000.0
    out = {"driver": "GTiff", "width": 96, "height": 96, "count": n, "dtype": dtype,
           "crs": profile["crs"], "transform": transform}
    with rasterio.open(path, "w", **out) as ds:
        ds.write(data.astype(dtype))
        for i in range(n):
            ds.set_band_description(i + 1, f"B{i + 1}")
        if n >= 3:
            ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue] + \
                [ColorInterp.undefined] * (n - 3)
    return path


@pytest.mark.parametrize("n, dtype", [(1, "uint16"), (3, "uint16"), (4, "uint8"),
                                      (6, "int16"), (8, "float32"), (13, "uint16")])
def test_any_band_count_and_dtype_keeps_every_band(model: Path, shared: Path, tmp_path: Path,
                                                   capsys, n: int, dtype: str) -> None:
    src = _stack(shared, n, dtype, tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    code, _, err = run_cli(["upscale", str(src), "-o", str(out), "-m", str(model),
                            "--overlap", "16"], capsys)
    assert code == 0, err
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert (b.count, b.dtypes[0], b.width, b.height) == (n, dtype, 384, 384)
        assert b.descriptions == a.descriptions
        assert b.colorinterp[:min(n, 3)] == a.colorinterp[:min(n, 3)]
        assert b.tags()["SATSR_SCALING"] == "input"
        x, y = a.read().astype(np.float64), b.read().astype(np.float64)
    for i in range(n):  # each band stays near its own values (no band mixing)
        assert abs(y[i].mean() - x[i].mean()) < 0.05 * (x[i].max() - x[i].min() + 1e-9)


def test_bands_are_processed_independently(model: Path, shared: Path, tmp_path: Path) -> None:
    from satsr.inference.writer import upscale_raster

    src = _stack(shared, 4, "uint16", tmp_path / "a.tif")
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    swapped = tmp_path / "b.tif"
    with rasterio.open(swapped, "w", **profile) as ds:
        ds.write(data[[3, 2, 1, 0]])
    upscale_raster(src, tmp_path / "a4.tif", model, overlap=16)
    upscale_raster(swapped, tmp_path / "b4.tif", model, overlap=16)
    with rasterio.open(tmp_path / "a4.tif") as a, rasterio.open(tmp_path / "b4.tif") as b:
        np.testing.assert_array_equal(a.read()[[3, 2, 1, 0]], b.read())


def test_scaling_model_is_refused_for_a_band_by_band_model(model: Path, shared: Path,
                                                           tmp_path: Path, capsys) -> None:
    src = _stack(shared, 4, "uint16", tmp_path / "in.tif")
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "o.tif"), "-m",
                            str(model), "--scaling", "model"], capsys)
    assert code == 2 and "band-by-band" in err and "--scaling" in err


def test_training_on_band_samples_makes_a_band_by_band_model(shared: Path,
                                                             tmp_path: Path) -> None:
    a = make_dataset([shared / "naip_rgbn_5m.tif"], tmp_path / "naip", size=32, count=10,
                     seed=1, split=(0.7, 0.3, 0.0)).out
    band_samples([a], tmp_path / "bs")
    cfg = TrainConfig(data=str(tmp_path / "bs"), out=str(tmp_path / "run"), hr_size=32,
                      batch_size=2, iterations=2, n_blocks=1, features=8, val_every=1,
                      checkpoint_every=0, log_every=1, device="cpu", seed=1, variant="adv+rec",
                      residual=True, select="pe-l")
    Trainer(cfg).run()
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert meta["bandwise"] is True and meta["arch"]["bands"] == 1
    with (tmp_path / "run" / "val.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["vgg-l"] and r["alex-l"] for r in rows)  # grey LPIPS of one band


def test_constant_and_all_nodata_bands_are_handled(model: Path, shared: Path, tmp_path: Path,
                                                   capsys) -> None:
    src = _stack(shared, 3, "uint16", tmp_path / "in.tif")
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    data[1] = 777  # a constant band
    data[2] = 0  # a band holding only nodata
    data[0][data[0] == 0] = 1
    odd = tmp_path / "odd.tif"
    with rasterio.open(odd, "w", **(profile | {"nodata": 0})) as ds:
        ds.write(data)
    code, _, err = run_cli(["upscale", str(odd), "-o", str(tmp_path / "o.tif"), "-m",
                            str(model), "--overlap", "16"], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "o.tif") as ds:
        out = ds.read()
    assert np.all(np.abs(out[1].astype(np.int64) - 777) <= 1)
    assert np.all(out[2] == 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_infinite_values_are_one_line_and_float64_works(model: Path, shared: Path,
                                                        tmp_path: Path, capsys,
                                                        dtype: str) -> None:
    src = _stack(shared, 3, "float32", tmp_path / "in.tif")
    with rasterio.open(src) as ds:
        data, profile = ds.read().astype(dtype), ds.profile | {"dtype": dtype}
    ok = tmp_path / "ok.tif"
    with rasterio.open(ok, "w", **profile) as ds:
        ds.write(data)
    code, _, err = run_cli(["upscale", str(ok), "-o", str(tmp_path / "ok4.tif"), "-m",
                            str(model), "--overlap", "16"], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "ok4.tif") as ds:
        assert ds.dtypes[0] == dtype
    data[0, 5, 5] = np.inf  # NaN is nodata; inf is not a value
    bad = tmp_path / "bad.tif"
    with rasterio.open(bad, "w", **profile) as ds:
        ds.write(data)
    code, _, err = run_cli(["upscale", str(bad), "-o", str(tmp_path / "o.tif"), "-m",
                            str(model), "--overlap", "16"], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("satsr: error:"), err
    assert "non-finite" in lines[0] and not (tmp_path / "o.tif").exists()
