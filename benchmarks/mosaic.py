"""The benchmarks' test rasters: a size x size GeoTIFF tiled with copies of a real image.

Shared by benchmarks/upscale.py and benchmarks/upscale_pipeline.py (run as scripts, or with
benchmarks/ on sys.path as examples/gpu_run.py and gpu_scale.py do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_mosaic(path: Path, data: np.ndarray, size: int, profile: dict[str, Any]) -> Path:
    """Write `data` (bands, h, w) repeated over a size x size raster at `path`, window by
    window (copies clipped at the right and bottom edges); `profile` is rasterio's creation
    profile less width and height."""
    import rasterio
    from rasterio.windows import Window

    h, w = data.shape[1:]
    with rasterio.open(path, "w", **{**profile, "width": size, "height": size}) as dst:
        for r in range(0, size, h):
            for c in range(0, size, w):
                hh, ww = min(h, size - r), min(w, size - c)
                dst.write(data[:, :hh, :ww], window=Window(c, r, ww, hh))
    return path
