"""The shipped test rasters (tests/data) and the absolute georeferencing check of helpers.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import FIXTURES, assert_same_georef
from rasterio.enums import ColorInterp
from rasterio.windows import Window


def _make_fixtures():
    """tests/data/make_fixtures.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ the georef check


def test_assert_same_georef_is_absolute_and_catches_half_a_pixel():
    # a NEON plot: 10 cm pixels on UTM coordinates in the millions of metres
    t = Affine(0.1, 0.0, 725535.6, 0.0, -0.1, 4700544.5)
    assert_same_georef(t, t, 400, 400)
    assert_same_georef(t @ Affine.translation(0.005, -0.005), t, 400, 400)
    for bad in (t @ Affine.translation(0.5, 0), t @ Affine.translation(0, -0.5),
                t @ Affine.scale(1 + 1e-4)):  # the last: 0.04 px off at the far corner
        with pytest.raises(AssertionError, match="px"):
            assert_same_georef(bad, t, 400, 400)
    # what it replaces: a relative tolerance lets the half-pixel shift through
    shifted = t @ Affine.translation(0.5, 0)
    assert np.allclose(tuple(shifted)[:6], tuple(t)[:6])


# ----------------------------------------------------------------------- the fixtures


def test_shared_is_the_shipped_folder_unless_overridden(shared: Path):
    if not os.environ.get("SATSR_SHARED_DATA"):
        assert shared == FIXTURES


def test_every_fixture_is_shipped_and_described():
    mf = _make_fixtures()
    names = [*mf.WHOLE, *(c.name for c in mf.CROPS)]
    chips = [mf.chip_name(s, w) for s, ws in mf.bundled_chip_windows().items() for w in ws]
    assert len(chips) == 66  # 3 per source of satsr-rgb-x4 (16 sources) and satsr-ms-x4 (6)
    readme = (FIXTURES / "README.md").read_text()
    for name in names + chips:
        assert (FIXTURES / name).is_file(), f"{name}: run tests/data/make_fixtures.py"
    for name in names:
        assert f"`{name}`" in readme, name
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 6 * 2**20


def test_fixtures_keep_what_the_tests_rely_on():
    with rasterio.open(FIXTURES / "landsat7_bahamas_300m.tif") as ds:  # collar, rotated scene
        assert ds.nodata == 0 and 0.2 < (ds.dataset_mask() == 0).mean() < 0.8
        assert ds.res == pytest.approx((300.0379266750948, 300.041782729805), abs=1e-9)
    with rasterio.open(FIXTURES / "manila_aerial_0.1m.tif") as ds:  # undeclared black corner
        assert ds.nodata is None and ds.compression.name == "jpeg"
        assert (ds.read(window=Window(0, 0, 64, 64)) == 0).all()
        assert (ds.read(window=Window(960, 960, 64, 64)) > 0).any(axis=0).all()
    with rasterio.open(FIXTURES / "bali_drone_rgba_0.35m.tif") as ds:  # alpha, not a band
        assert ds.colorinterp[3] == ColorInterp.alpha
        alpha = ds.read(4)
        assert (alpha == 0).any() and (alpha == 255).mean() > 0.5
    with rasterio.open(FIXTURES / "naip_rgbn_5m.tif") as ds:  # RGBN, nodata=0
        assert ds.count == 4 and ds.nodata == 0 and ds.compression.name == "deflate"
    with rasterio.open(FIXTURES / "colorado_aerial_0.15m.tif") as ds:
        assert (ds.width, ds.height) == (383, 232)
    with rasterio.open(FIXTURES / "landsat8_rgb16_60m.tif") as ds:
        assert ds.dtypes[0] == "uint16" and ds.read().max() > 255
    for plot in ("HARV_001", "OSBS_005"):
        with rasterio.open(FIXTURES / "neon" / f"{plot}.tif") as ds:
            assert ds.nodata == 255 and (ds.width, ds.height) == (200, 200)
