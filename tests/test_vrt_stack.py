"""Separate single-band files (how Sentinel-2 and Landsat are delivered), stacked as a VRT."""

from __future__ import annotations

from pathlib import Path

import rasterio
from helpers import run_cli
from rasterio.windows import Window


def _band_file(src: Path, band: int, dst: Path, name: str) -> Path:
    with rasterio.open(src) as ds:
        win = Window(0, 0, 64, 64)
        data = ds.read(band, window=win)
        profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1,
                   "dtype": data.dtype.name, "crs": ds.crs,
                   "transform": ds.window_transform(win)}
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data, 1)
        out.set_band_description(1, name)
    return dst


def test_a_vrt_of_single_band_files_upscales_with_every_band(shared: Path, tmp_path: Path,
                                                              capsys) -> None:
    src = shared / "naip_rgbn_5m.tif"
    names = ["B04", "B03", "B02", "B08"]
    files = [_band_file(src, i + 1, tmp_path / f"{n}.tif", n) for i, n in enumerate(names)]
    with rasterio.open(files[0]) as ds:
        t, crs = ds.transform, ds.crs.to_wkt()
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{i + 1}"><Description>{n}</Description>'
        f'<SimpleSource><SourceFilename relativeToVRT="1">{f.name}</SourceFilename>'
        f'<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>'
        for i, (n, f) in enumerate(zip(names, files, strict=True)))
    vrt = tmp_path / "stack.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>{crs}</SRS>'
                   f'<GeoTransform>{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}</GeoTransform>'
                   f'{bands}</VRTDataset>')
    out = tmp_path / "x4.tif"
    code, _, err = run_cli(["upscale", str(vrt), "-o", str(out), "--method", "bicubic"], capsys)
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.count == 4 and ds.driver == "GTiff" and ds.width == 256
        assert list(ds.descriptions) == names
