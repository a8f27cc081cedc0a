"""Test utilities: a tiny hand-made dataset in the make-dataset index format (satsr/index.py).

Used by train / upscale / eval tests so they do not depend on make-dataset's sampler.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from satsr.scaling import BandScaling


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run `satsr ARGS` in-process: (exit code, stdout, stderr)."""
    from satsr.cli import main

    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


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
