"""Regenerate the test fixtures of tests/data from the full rasters of ../shared/data.

The default test suite must run from a fresh clone, so it reads small real rasters shipped in
tests/data under the same names as the full files of ../shared/data. This script records
exactly which part of which file each fixture is, so the choice is reproducible:

    .venv/bin/python tests/data/make_fixtures.py            # rewrite tests/data
    .venv/bin/python tests/data/make_fixtures.py --check    # compare, write nothing

A crop keeps its source's CRS, window transform, dtype, nodata, colour interpretation, band
descriptions and dataset tags (not per-band statistics, which would be stale, nor
overviews or the source's internal tiling). Lossless crops
hold the source's pixels exactly; the manila crop is JPEG like its source, re-encoded at the
source's quality, so its pixels are the source's up to that re-encoding (the black corner
stays exactly 0). The bundled models' test-split chips (tests/test_bundled.py; the lists
`satsr/assets/models/*.test-chips.json` written by examples/bundled_models.py export) are
copied pixel for pixel with every band of their source, each into its own small GeoTIFF.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_SHARED = ROOT.parent / "shared" / "data"
CHIP_LISTS = sorted((ROOT / "satsr" / "assets" / "models").glob("*.test-chips.json"))
#: Test-split chips per source that tests/test_bundled.py reads (its `per_source`).
CHIPS_PER_SOURCE = 3
CHIP_DIR = "bundled_chips"

LOSSLESS = {"compress": "deflate", "predictor": 2, "zlevel": 9}


@dataclass(frozen=True)
class Crop:
    """A window of a source raster written as a fixture under the same relative path."""

    name: str  # path relative to the data folder
    window: Window
    why: str  # what the tests need from it
    options: dict = field(default_factory=lambda: dict(LOSSLESS))


#: Files shipped whole (byte for byte): they are small.
WHOLE = ["netherlands_aerial_0.25m.tif", "colorado_aerial_0.15m.tif"]

#: Files shipped as a window. Windows start at (0, 0) so that the hard-coded windows of the
#: tests keep their pixel coordinates.
CROPS = [
    Crop("landsat7_bahamas_300m.tif", Window(0, 0, 384, 352),
         "nodata=0 collar along the rotated scene's top and left edges, and enough scene for "
         "30 chips of 48 px in three splits; holds test_upscale's Window(64, 250, 64, 48)"),
    Crop("naip_rgbn_5m.tif", Window(0, 0, 288, 224),
         "R, G, B, NIR with nodata=0 declared; holds test_upscale's Window(200, 150, 72, 56)"),
    Crop("bali_drone_rgba_0.35m.tif", Window(0, 0, 272, 352),
         "alpha band with a transparent top and left border; holds test_upscale's "
         "Window(0, 300, 48, 40), which straddles it"),
    Crop("landsat8_rgb16_60m.tif", Window(0, 0, 300, 300),
         "uint16; holds test_upscale's Window(100, 100, 48, 40); 300 px (not a multiple of "
         "64) leaves several chip positions per 64-px block"),
    Crop("manila_aerial_0.1m.tif", Window(0, 0, 1024, 1024),
         "JPEG (YCbCr, quality 75, 16-row strips, as the source) with the undeclared black "
         "top-left corner; about 12 times colorado's area",
         {"compress": "jpeg", "photometric": "ycbcr", "jpeg_quality": 75, "tiled": False,
          "blockysize": 16}),
    Crop("neon/HARV_001.tif", Window(0, 0, 200, 200), "nodata=255 declared; same size as the "
         "OSBS_005 crop"),
    Crop("neon/OSBS_005.tif", Window(0, 0, 200, 200), "nodata=255 declared; same size as the "
         "HARV_001 crop"),
]


def bundled_chip_windows(per_source: int = CHIPS_PER_SOURCE,
                         lists: list[Path] | None = None) -> dict[str, list[list[int]]]:
    """The test-split chips tests/test_bundled.py measures: of each chip list, every
    len // per_source-th window of each source, at most `per_source` of them (a window two
    lists share is one fixture)."""
    out: dict[str, list[list[int]]] = {}
    for chip_list in CHIP_LISTS if lists is None else lists:
        by_source: dict[str, list[list[int]]] = {}
        for c in json.loads(chip_list.read_text()):
            by_source.setdefault(c["source"], []).append(c["window"])
        for name, windows in sorted(by_source.items()):
            step = max(1, len(windows) // per_source)
            for w in windows[::step][:per_source]:
                if w not in out.setdefault(name, []):
                    out[name].append(w)
    return dict(sorted(out.items()))


def chip_name(source: str, window: list[int]) -> str:
    """The fixture file of one bundled-model test chip."""
    return f"{CHIP_DIR}/{Path(source).stem}_x{window[0]}_y{window[1]}.tif"


def source_path(shared: Path, name: str) -> Path:
    """A chip list names a file without its folder: the NEON plots live in neon/."""
    for p in (shared / name, shared / "neon" / name):
        if p.is_file():
            return p
    raise FileNotFoundError(f"{name} is not in {shared}")


def write_window(src: Path, window: Window, dst: Path, options: dict,
                 bands: list[int] | None = None) -> None:
    """Write `window` of `src` (all bands, or `bands`) keeping its georeferencing and meta."""
    with rasterio.open(src) as ds:
        idx = bands or list(range(1, ds.count + 1))
        data = ds.read(idx, window=window)
        interp = [ds.colorinterp[i - 1] for i in idx]
        profile = {"driver": "GTiff", "width": int(window.width), "height": int(window.height),
                   "count": len(idx), "dtype": ds.dtypes[0], "crs": ds.crs,
                   "transform": ds.window_transform(window), "nodata": ds.nodata, **options}
        if ColorInterp.alpha in interp:
            profile |= {"photometric": "RGB", "alpha": "YES"}
        if profile.get("tiled", True) is not False and "blockxsize" not in profile:
            profile |= {"tiled": True, "blockxsize": 256, "blockysize": 256}
        dst.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
            if profile.get("photometric") != "ycbcr":
                out.colorinterp = interp
            for k, i in enumerate(idx, start=1):
                if ds.descriptions[i - 1]:
                    out.set_band_description(k, ds.descriptions[i - 1])
            # dataset tags, less one about overviews that a crop does not have
            out.update_tags(**{k: v for k, v in ds.tags().items() if k != "OVR_RESAMPLING_ALG"})


def build(shared: Path, out: Path) -> list[str]:
    """Write every fixture into `out`; returns their relative paths."""
    written = []
    for name in WHOLE:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / name, out / name)
        written.append(name)
    for crop in CROPS:
        write_window(shared / crop.name, crop.window, out / crop.name, crop.options)
        written.append(crop.name)
    for source, windows in bundled_chip_windows().items():
        for w in windows:
            name = chip_name(source, w)
            write_window(source_path(shared, source), Window(*w), out / name, LOSSLESS)
            written.append(name)
    return written


def _describe(path: Path) -> tuple:
    with rasterio.open(path) as ds:
        return (ds.read().tobytes(), ds.crs, ds.transform, ds.dtypes, ds.nodata, ds.colorinterp,
                ds.descriptions, ds.width, ds.height)


def check(shared: Path) -> int:
    """Regenerate into a temporary folder and compare with tests/data (pixels and meta)."""
    with tempfile.TemporaryDirectory() as tmp:
        names = build(shared, Path(tmp))
        bad = [n for n in names if not (HERE / n).is_file()
               or _describe(HERE / n) != _describe(Path(tmp) / n)]
        extra = sorted(str(p.relative_to(HERE)) for p in (HERE / CHIP_DIR).glob("*.tif")
                       if str(p.relative_to(HERE)) not in names)
    for n in bad:
        print(f"differs or missing: {n}")
    for n in extra:
        print(f"not made by this script: {n}")
    print(f"{len(names) - len(bad)} of {len(names)} fixtures match")
    return 1 if bad or extra else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                   help="the folder of full rasters (default: ../shared/data)")
    p.add_argument("--check", action="store_true",
                   help="compare the shipped fixtures with a fresh build, write nothing")
    args = p.parse_args(argv)
    if args.check:
        return check(args.shared)
    if (HERE / CHIP_DIR).is_dir():
        shutil.rmtree(HERE / CHIP_DIR)
    names = build(args.shared, HERE)
    print(f"wrote {len(names)} fixtures into {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
