"""satsr.data.bands: band meaning from GDAL metadata, and value ranges measured on the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window

from satsr.data.bands import band_names, estimate_scaling, name_from_description, rgb_bands
from satsr.errors import SatsrError


@pytest.mark.parametrize("text, sensor, name", [
    ("B4", None, "red"), ("B2", None, "blue"), ("b03", None, "green"), ("B8", None, "nir"),
    ("B8A", None, "nir"), ("B11", None, "swir1"), ("B5", None, None), ("B5", "landsat", "nir"),
    ("B5", "sentinel2", "rededge"), ("SR_B5", "landsat", "nir"), ("Red", None, "red"),
    ("NIR", None, "nir"), ("near-infrared", None, "nir"), ("Band 4 (Red)", None, "red"),
    ("elevation", None, None), (None, None, None),
])
def test_band_descriptions_map_to_canonical_names(text, sensor, name) -> None:
    assert name_from_description(text, sensor) == name


def _write(path: Path, data: np.ndarray, **kw) -> Path:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "crs": "EPSG:32618",
               "transform": rasterio.transform.from_origin(500000, 4000000, 30, 30)} | kw
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def test_names_come_from_descriptions_then_colour_interpretation(shared: Path,
                                                                 tmp_path: Path) -> None:
    with rasterio.open(shared / "naip_rgbn_5m.tif") as src:
        data = src.read(window=Window(0, 0, 64, 64))
    p = _write(tmp_path / "bgrn.tif", data[[2, 1, 0, 3]])
    with rasterio.open(p, "r+") as ds:
        ds.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red,
                          ColorInterp.undefined]
        ds.set_band_description(4, "NIR")
    with rasterio.open(p) as ds:
        names = band_names(ds)
    assert names == ["blue", "green", "red", "nir"]
    assert rgb_bands(names, [1, 2, 3, 4]) == [2, 1, 0]
    assert rgb_bands(names, [4, 3]) is None
    assert rgb_bands([None] * 4, [1, 2, 3, 4]) == [0, 1, 2]  # the documented default order


def test_range_from_windows_matches_percentiles_of_the_whole_small_raster(shared: Path,
                                                                          tmp_path: Path) -> None:
    with rasterio.open(shared / "landsat8_rgb16_60m.tif") as src:
        data = src.read(window=Window(0, 0, 200, 180))
    p = _write(tmp_path / "l8.tif", data)
    with rasterio.open(p) as ds:
        est = estimate_scaling(ds, [1, 2, 3], windows=64, side=256)  # one window: everything
    for b in range(3):
        lo, hi = np.percentile(data[b].astype(np.float64), [0.1, 99.9])
        assert est.scaling.lo[b] == pytest.approx(lo)
        assert est.scaling.hi[b] == pytest.approx(hi)
    assert est.scaling.dtype == "uint16" and est.empty == []
    assert est.tags()["SATSR_SCALING"] == "input"


def test_range_uses_an_overview_when_there_is_one(shared: Path, tmp_path: Path) -> None:
    with rasterio.open(shared / "landsat8_rgb16_60m.tif") as src:
        data = src.read()
    big = np.tile(data, (1, 4, 4))[:, :1200, :1100]
    p = _write(tmp_path / "ov.tif", big, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(p, "r+") as ds:
        ds.build_overviews([2, 4], Resampling.nearest)
    with rasterio.open(p) as ds:
        est = estimate_scaling(ds, [1, 2, 3])
    f = max(f for f in (2, 4) if min(big.shape[1:]) // f >= 256)
    h, w = big.shape[1] // f, big.shape[2] // f
    assert est.method == f"overview {w}x{h}"
    lo, hi = np.percentile(big[0, ::f, ::f].astype(np.float64), [0.1, 99.9])
    assert est.scaling.lo[0] == pytest.approx(lo, rel=0.02)
    assert est.scaling.hi[0] == pytest.approx(hi, rel=0.02)


def test_nodata_constant_and_empty_bands_are_handled(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(100, 5000, size=(3, 96, 96)).astype(np.uint16)
    data[1] = 777  # constant
    data[2] = 0  # all nodata
    data[0, :10] = 0  # some nodata in band 1
    p = _write(tmp_path / "c.tif", data, nodata=0)
    with rasterio.open(p) as ds:
        est = estimate_scaling(ds, [1, 2, 3], min_pixels=1000)
    assert est.scaling.lo[0] >= 100
    assert (est.scaling.lo[1], est.scaling.hi[1]) == (776.5, 777.5)
    assert est.empty == [2]


def test_a_raster_too_small_for_a_range_is_one_clear_error(tmp_path: Path) -> None:
    data = np.arange(3 * 20 * 20, dtype=np.uint16).reshape(3, 20, 20)
    p = _write(tmp_path / "tiny.tif", data)
    with rasterio.open(p) as ds, pytest.raises(SatsrError, match="too small to estimate"):
        estimate_scaling(ds, [1, 2, 3], path=p)


def test_windows_never_read_the_whole_raster(shared: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with rasterio.open(shared / "landsat8_rgb16_60m.tif") as src:
        data = np.tile(src.read(), (1, 6, 6))
    p = _write(tmp_path / "big.tif", data, tiled=True, blockxsize=256, blockysize=256)
    import satsr.data.bands as bands_mod

    seen: list[int] = []
    real = bands_mod.read_window

    def spy(ds, b, window, path=None, **kw):
        out = real(ds, b, window, path, **kw)
        seen.append(out[0].size)
        return out

    monkeypatch.setattr(bands_mod, "read_window", spy)
    with rasterio.open(p) as ds:
        estimate_scaling(ds, [1, 2, 3], windows=16, side=128)
        total = ds.width * ds.height
    assert len(seen) == 16 and max(seen) == 128 * 128 and sum(seen) < total / 10
