"""The model choice table: which bundled model `satsr upscale` takes without --model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import run_cli
from rasterio.transform import from_origin

from satsr.errors import SatsrError
from satsr.inference.choice import TABLE, choose_model, gsd_metres, read_table


def _raster(path: Path, bands: int, dtype: str, crs: str | None, res: float) -> Path:
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": bands, "dtype": dtype,
               "transform": from_origin(10.0 if crs == "EPSG:4326" else 500000, 50.0 if crs ==
                                        "EPSG:4326" else 4000000, res, res)}
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.ones((bands, 64, 64), dtype=dtype))
    return path


def test_gsd_in_metres_from_projected_geographic_and_no_crs(shared: Path, tmp_path: Path
                                                            ) -> None:
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        assert gsd_metres(ds) == pytest.approx(0.25, rel=1e-3)
    geo = _raster(tmp_path / "g.tif", 3, "uint8", "EPSG:4326", 1e-5)  # ~1.11 m x 0.72 m at 50°
    with rasterio.open(geo) as ds:
        expected = (1e-5 * 111_320 * np.cos(np.radians(50 - 32e-5)) + 1e-5 * 110_574) / 2
        assert gsd_metres(ds) == pytest.approx(expected, rel=1e-3)
    with rasterio.open(_raster(tmp_path / "n.tif", 3, "uint8", None, 1.0)) as ds:
        assert gsd_metres(ds) is None


def test_gsd_unknown_only_for_a_crs_without_linear_units() -> None:
    """An engineering CRS has no linear-unit factor: unknown GSD; any other error surfaces."""
    from types import SimpleNamespace

    from rasterio.crs import CRS

    eng = CRS.from_wkt('ENGCRS["local",EDATUM["d"],CS[Cartesian,2],'
                       'AXIS["easting",east,LENGTHUNIT["metre",1]],'
                       'AXIS["northing",north,LENGTHUNIT["metre",1]]]')
    ds = SimpleNamespace(crs=eng, transform=from_origin(0, 0, 2.0, 2.0))
    assert gsd_metres(ds) is None

    class Broken:
        is_geographic = False

        @property
        def linear_units_factor(self) -> tuple[str, float]:
            raise RuntimeError("not a CRS problem")

    with pytest.raises(RuntimeError, match="not a CRS problem"):
        gsd_metres(SimpleNamespace(crs=Broken(), transform=from_origin(0, 0, 2.0, 2.0)))


def test_first_fitting_row_wins_and_says_why(shared: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"rows": [
        {"model": "not-bundled", "bands": "any", "dtypes": ["uint8"], "unknown_gsd": True},
        {"model": "satsr-rgb-x4", "bands": "rgb", "dtypes": ["uint8"], "gsd_max_m": 2,
         "unknown_gsd": True, "note": "fine RGB"},
        {"model": "satsr-rgb-x4", "bands": "any", "dtypes": ["uint16"], "gsd_min_m": 10,
         "unknown_gsd": False}]}))
    c = choose_model(shared / "netherlands_aerial_0.25m.tif", table=table)
    assert c.model == "satsr-rgb-x4" and c.reason == "3 uint8 bands (RGB) at 0.25 m: fine RGB"
    coarse = _raster(tmp_path / "c.tif", 4, "uint16", "EPSG:32618", 30.0)
    assert "any band count, uint16, GSD 10-any" in choose_model(coarse, table=table).reason
    fine16 = _raster(tmp_path / "f.tif", 4, "uint16", "EPSG:32618", 5.0)
    with pytest.raises(SatsrError, match=r"no bundled model fits .*4 uint16 bands at 5 m "
                                         r"\(choose 3 with bands"):
        choose_model(fine16, table=table)
    with pytest.raises(SatsrError, match="unreadable"):
        bad = tmp_path / "bad.json"
        bad.write_text('{"rows": [{"model": "x", "bands": "two", "dtypes": []}]}')
        read_table(bad)


def test_committed_table_names_bundled_models_and_upscale_says_its_choice(
        shared: Path, tmp_path: Path, capsys) -> None:
    rows = read_table(TABLE)
    assert rows and all((TABLE.parent / f"{r.model}.safetensors").is_file() for r in rows)
    src = tmp_path / "small.tif"
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        profile = ds.profile | {"width": 48, "height": 48, "tiled": False,
                                "transform": ds.window_transform(((0, 48), (0, 48)))}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        data = ds.read(window=((0, 48), (0, 48)))
    with rasterio.open(src, "w", **profile) as out:
        out.write(data)
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "o.tif")], capsys)
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"satsr: small.tif: using {rows[0].model}: 3 uint8 bands (RGB) at "
                     f"0.25 m: {rows[0].note}"]
    code, out, _ = run_cli(["models"], capsys)
    assert "takes the first row that fits" in out and rows[0].model in out
