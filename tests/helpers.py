"""Test utilities: a tiny hand-made dataset in the make-dataset index format (satsr/index.py),
an in-process CLI runner and an absolute georeferencing check.

The dataset is used by train / upscale / eval tests so they do not depend on make-dataset's
sampler.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from satsr.data.scaling import BandScaling
from satsr.training.config import TrainConfig

#: Small real rasters shipped with the repository, named as the full files of ../shared/data
#: (tests/data/README.md says what each is cut from; tests/data/make_fixtures.py remakes them).
FIXTURES = Path(__file__).resolve().parent / "data"


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run `satsr ARGS` in-process: (exit code, stdout, stderr)."""
    from satsr.cli.app import main

    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_same_georef(actual: Affine, expected: Affine, width: int, height: int,
                       tol: float = 0.01) -> None:
    """Assert that `actual` places a `width` x `height` raster where `expected` does.

    Absolute, in pixels of the raster checked: every transform coefficient and every corner
    of the footprint (so every bound) within `tol` of its pixel size, in CRS units. A relative
    tolerance would not do: on a UTM northing of 5e6 m, `np.allclose`'s rtol=1e-5 lets 50 m
    through, many pixels of a 0.1 m raster.
    """
    px = min(math.hypot(expected.a, expected.d), math.hypot(expected.b, expected.e))
    limit = tol * px
    for name, a, e in zip("abcdef", tuple(actual)[:6], tuple(expected)[:6], strict=True):
        assert abs(a - e) <= limit, (
            f"transform.{name} is {a!r}, expected {e!r}: off by {abs(a - e) / px:.3g} px "
            f"(at most {tol} px)")
    for col, row in ((0, 0), (width, 0), (0, height), (width, height)):
        (ax, ay), (ex, ey) = actual @ (col, row), expected @ (col, row)
        off = max(abs(ax - ex), abs(ay - ey))
        assert off <= limit, (f"corner ({col}, {row}) is at ({ax!r}, {ay!r}), expected "
                              f"({ex!r}, {ey!r}): off by {off / px:.3g} px (at most {tol} px)")


def write_dataset(root: Path, source: Path, size: int, splits: dict[str, int],
                  bands: list[int] | None = None) -> Path:
    """Cut non-overlapping `size` chips from `source` on a grid, `splits[name]` per split."""
    root.mkdir(parents=True, exist_ok=True)
    feats, train_pixels, all_pixels = [], [], []
    with rasterio.open(source) as ds:
        bands = bands or list(range(1, min(ds.count, 3) + 1))
        cells = [(r, c) for r in range(ds.height // size) for c in range(ds.width // size)]
        need = sum(splits.values())
        assert len(cells) >= need, "source too small for the requested chips"
        i = 0
        for split, n in splits.items():
            for _ in range(n):
                r, c = cells[i]
                i += 1
                win = Window(c * size, r * size, size, size)
                data = ds.read(bands, window=win)
                rel = f"chips/{split}/{i:06d}.tif"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                profile = {"driver": "GTiff", "width": size, "height": size, "count": len(bands),
                           "dtype": data.dtype.name, "crs": ds.crs,
                           "transform": window_transform(win, ds.transform)}
                with rasterio.open(root / rel, "w", **profile) as out:
                    out.write(data)
                all_pixels.append(data.reshape(len(bands), -1))
                if split == "train":
                    train_pixels.append(all_pixels[-1])
                feats.append({"type": "Feature", "geometry": None, "properties": {
                    "path": rel, "split": split, "source": str(source),
                    "crs": ds.crs.to_string() if ds.crs else None,
                    "window": [c * size, r * size, size, size],
                    "gsd": [abs(ds.transform.a), abs(ds.transform.e)], "georeferenced": True}})
        dtype = ds.dtypes[bands[0] - 1]
        gsd = abs(ds.transform.a)
    # Statistics come from the train chips; a dataset without any (used to test the error
    # for it) records those of its other chips so that the index stays well formed.
    px = np.concatenate(train_pixels or all_pixels, axis=1).astype(np.float64)
    stats = [{"band": b, "min": float(p.min()), "max": float(p.max()), "mean": float(p.mean()),
              "std": float(p.std()), "p0.1": float(np.percentile(p, 0.1)),
              "p99.9": float(np.percentile(p, 99.9))} for b, p in zip(bands, px, strict=True)]
    meta = {"format": 1, "size": size, "band_count": len(bands), "bands": bands, "dtype": dtype,
            "stats": stats, "scaling": BandScaling.from_stats(dtype, stats).to_dict(),
            "counts": dict(splits), "gsd_range": [gsd, gsd]}
    (root / "index.geojson").write_text(json.dumps(
        {"type": "FeatureCollection", "satsr": meta, "features": feats}))
    return root


def tiny_config(ds: Path, out: Path, **kw: Any) -> TrainConfig:
    """A tiny, fast training configuration on CPU (1 block of 8 maps, HR 32, batch 2, no
    validation or checkpoints unless asked); keyword arguments override."""
    base: dict[str, Any] = dict(data=str(ds), out=str(out), hr_size=32, batch_size=2,
                                   iterations=2, n_blocks=1, features=8, val_every=0,
                                   checkpoint_every=0, log_every=1, device="cpu", seed=1)
    base.update(kw)
    return TrainConfig(**base)


def assert_clean_failure(code: int, err: str, folder: Path, *needles: str) -> str:
    """A clean CLI failure: exit 2, one `satsr: error:` line holding `needles`, and neither
    the output `o.tif` nor a staging part left in `folder`. Returns the line."""
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("satsr: error:"), err
    for n in needles:
        assert n in lines[0], err
    assert not [p for p in folder.iterdir() if p.name == "o.tif" or ".part" in p.name]
    return lines[0]


def upscale_cli(args: list[Any], capsys: Any) -> tuple[int, str]:
    """Run `satsr upscale ARGS` in-process: (exit code, stderr)."""
    code, _, err = run_cli(["upscale", *map(str, args)], capsys)
    return code, err


def refused(code: int, err: str, *needles: str) -> str:
    """One `satsr: error:` line (no traceback) holding `needles`, a non-zero exit; the line
    (warnings aside)."""
    lines = [ln for ln in err.strip().splitlines() if ln and not ln.startswith("satsr: warn")]
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith("satsr: error:"), err
    for n in needles:
        assert n in lines[0], err
    return lines[0]


def real_crop(source: Path, out: Path, size: int) -> Path:
    """The top-left `size` px of `source`'s RGB bands as a georeferenced uint8 GeoTIFF."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(source) as ds:
        win = Window(0, 0, size, size)
        prof = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
                "crs": ds.crs, "transform": ds.window_transform(win)}
        with rasterio.open(out, "w", **prof) as dst:
            dst.write(ds.read([1, 2, 3], window=win))
    return out
