"""Benchmark `satsr upscale` on a multispectral uint16 raster with the band-by-band model.

Builds a SIZE x SIZE 4-band uint16 GeoTIFF (R, G, B, NIR with their descriptions) by tiling
the shared Landsat 8 RGBN scene, then runs `satsr upscale` (x4, the bundled `satsr-ms-x4`
unless --model, band scaling estimated from the raster) in a child process per run and
reports, measured in the same run:

1. throughput: output MPix/s (per band-image pixel: width x height x bands of the output per
   second) of the model, next to `--method bicubic` on the same raster (ratio printed);
2. memory: peak RSS of the model on the SIZE^2 raster over the same on a smaller raster;
   target <= 1.2x (memory must stay flat in raster size: the engine streams tiles).

The engine spreads tiles evenly, so a raster's tiles are `tile` px or a little less (see
satsr.inference.tiling) and the model's activations, most of the peak, grow with the tile's
area: 1000 px gets 226 px tiles, 2000 px gets 251. Comparing those two measures the tile, not
the raster (1.219 in the first run). The smaller raster is therefore the largest one of at
most SIZE/2 px whose tiles are as big as SIZE's; both tile sides are printed. The default
SIZE, 2048, has full 256 px tiles on CPU; the smaller raster is then 928 px (4.9x fewer pixels).

    .venv/bin/python benchmarks/upscale_ms.py               # 2048^2 (and 928^2 for memory)
    .venv/bin/python benchmarks/upscale_ms.py --size 704    # a quick run (256^2 beside it)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SATSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
SOURCE = SHARED / "landsat8_rgbn_30m_cloudy_uint16.tif"


def make_input(path: Path, size: int) -> Path:
    """A size x size 4-band uint16 raster tiled (mirrored) from the Landsat RGBN scene."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(SOURCE) as src:
        data = src.read()
        descriptions = src.descriptions
        profile = {"driver": "GTiff", "width": size, "height": size, "count": src.count,
                   "dtype": src.dtypes[0], "crs": src.crs, "transform": src.transform,
                   "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
                   "nodata": src.nodata}
    h, w = data.shape[1:]
    with rasterio.open(path, "w", **profile) as dst:
        for i, d in enumerate(descriptions, 1):
            if d:
                dst.set_band_description(i, d)
        for r in range(0, size, h):
            for c in range(0, size, w):
                block = data
                if (r // h) % 2:
                    block = block[:, ::-1]
                if (c // w) % 2:
                    block = block[:, :, ::-1]
                hh, ww = min(h, size - r), min(w, size - c)
                dst.write(np.ascontiguousarray(block[:, :hh, :ww]), window=Window(c, r, ww, hh))
    return path


def grid_tile(size: int) -> int:
    """Tile side (input px) the engine's CPU grid uses on a size x size raster."""
    from satsr.inference.engine import DEFAULT_OVERLAP, DEFAULT_TILE
    from satsr.inference.tiling import axis_tiles

    return axis_tiles(size, DEFAULT_TILE["cpu"], DEFAULT_OVERLAP)[1]


def small_size(size: int) -> int:
    """The largest side <= size / 2 whose grid tiles are as big as those of `size`."""
    want = grid_tile(size)
    for n in range(size // 2, 0, -1):
        if grid_tile(n) == want:
            return n
    raise SystemExit(f"no raster side <= {size // 2} has {want} px tiles; raise --size")


def child(args: list[str]) -> None:
    """Child process: run `satsr upscale ARGS` in-process, print peak RSS and time as JSON."""
    from satsr.cli.app import main

    t = time.perf_counter()
    try:
        main(["upscale", *args])
    except SystemExit as exc:
        if exc.code:
            raise
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak, "seconds": secs}))


def run(src: Path, out: Path, how: list[str]) -> dict[str, float]:
    res = subprocess.run([sys.executable, __file__, "--child", str(src), "-o", str(out),
                          "--overwrite", *how], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"satsr upscale failed: {res.stderr.strip()[-2000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    import rasterio

    with rasterio.open(out) as ds:
        row["out"] = f"{ds.width}x{ds.height}x{ds.count}"
        row["mpix"] = ds.width * ds.height * ds.count / 1e6
    row["mpix_per_s"] = row["mpix"] / row["seconds"]
    out.unlink()
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="input side (pixels)")
    ap.add_argument("--model", default="satsr-ms-x4", help="model file or bundled name")
    a = ap.parse_args()
    lo = small_size(a.size)
    with tempfile.TemporaryDirectory() as tmp:
        big = make_input(Path(tmp) / f"in_{a.size}.tif", a.size)
        half = make_input(Path(tmp) / f"in_{lo}.tif", lo)
        out = Path(tmp) / "out.tif"
        bic = run(big, out, ["--method", "bicubic"])
        print(f"bicubic {a.size}^2: {bic}", flush=True)
        small = run(half, out, ["--model", a.model])
        print(f"model {lo}^2: {small}", flush=True)
        model = run(big, out, ["--model", a.model])
        print(f"model {a.size}^2: {model}", flush=True)
    print(json.dumps({
        "input": f"{a.size}x{a.size}x4 uint16", "model": a.model,
        "model_mpix_per_s": round(model["mpix_per_s"], 4),
        "bicubic_mpix_per_s": round(bic["mpix_per_s"], 4),
        "throughput_ratio_model_over_bicubic": round(model["mpix_per_s"] / bic["mpix_per_s"], 4),
        "tile_px": {str(lo): grid_tile(lo), str(a.size): grid_tile(a.size)},
        "peak_mib": {str(lo): round(small["peak_mib"]), str(a.size): round(
            model["peak_mib"])},
        "memory_ratio": round(model["peak_mib"] / small["peak_mib"], 3),
        "memory_target": "<= 1.2",
    }, indent=1))


if __name__ == "__main__":
    main()
