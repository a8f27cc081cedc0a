"""upscale: band scaling from the input (--scaling), and no saturation beyond the range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import run_cli
from rasterio.windows import Window

from satsr.data.scaling import BandScaling
from satsr.inference.engine import Engine
from satsr.inference.modelfile import save_model
from satsr.inference.writer import upscale_raster
from satsr.nn import Generator


def _crop(src: Path, dst: Path, win: Window) -> Path:
    with rasterio.open(src) as ds:
        data = ds.read(window=win)
        profile = ds.profile | {"width": int(win.width), "height": int(win.height),
                                "transform": ds.window_transform(win), "tiled": False}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def _residual(bands: int = 3, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(bands, 4, n_blocks=1, features=8, residual=True, upsample="nearest")
    with torch.no_grad():  # a non-zero correction, as a trained model has
        g.tail.weight.normal_(0, 0.01)
    return g.eval()


def test_values_beyond_the_scaling_range_are_not_saturated(shared: Path, tmp_path: Path
                                                           ) -> None:
    src = _crop(shared / "landsat8_rgb16_60m.tif", tmp_path / "l8.tif", Window(0, 0, 96, 96))
    with rasterio.open(src) as ds:
        data = ds.read().astype(np.float64)
    lo = tuple(float(np.percentile(b, 1)) for b in data)
    hi = tuple(float(np.percentile(b, 90)) for b in data)  # 10 % of pixels lie above
    scaling = BandScaling("uint16", lo, hi)
    engine = Engine.from_generator(_residual(), scaling, "cpu", name="residual")
    upscale_raster(src, tmp_path / "o.tif", engine, overlap=16, tile=96)
    with rasterio.open(tmp_path / "o.tif") as ds:
        out = ds.read().astype(np.float64)
    for b in range(3):
        span = hi[b] - lo[b]
        assert out[b].max() > hi[b] + 0.5 * span  # saturation would cap it at hi
        assert abs(out[b].max() - data[b].max()) <= 0.02 * span
        assert abs(out[b].min() - data[b].min()) <= 0.02 * span


def test_scaling_input_measures_the_raster_and_tags_the_output(shared: Path, tmp_path: Path,
                                                               capsys) -> None:
    src = _crop(shared / "landsat8_rgb16_60m.tif", tmp_path / "l8.tif", Window(0, 0, 160, 160))
    model = save_model(tmp_path / "m.safetensors", _residual(),
                       {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict()})
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "o.tif"), "-m",
                            str(model), "--overlap", "8"], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "o.tif") as ds:
        tags = ds.tags()
        assert ds.dtypes[0] == "uint16"
    assert tags["SATSR_SCALING"] == "input"
    with rasterio.open(src) as ds:
        p = np.percentile(ds.read(1).astype(np.float64), [0.1, 99.9])
    assert float(tags["SATSR_SCALING_LO"].split(",")[0]) == pytest.approx(p[0], rel=1e-4)
    assert float(tags["SATSR_SCALING_HI"].split(",")[0]) == pytest.approx(p[1], rel=1e-4)
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "m.tif"), "-m",
                            str(model), "--scaling", "model"], capsys)
    assert code == 2 and "uint16" in err and "uint8" in err
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "b.tif"), "-m",
                            str(model), "--scaling", "both"], capsys)
    assert code == 2 and "--scaling" in err and err.count("\n") == 1
    assert not (tmp_path / "m.tif").exists() and not (tmp_path / "b.tif").exists()
