"""Benchmark `satsr make-dataset` against a bare loop of rasterio windowed reads + writes.

    python benchmarks/make_dataset.py [--quick] [--count N] [--size 256] [--keep DIR]

Builds an 8192x8192 tiled, DEFLATE-compressed 3-band GeoTIFF (and a 2048x2048 one) by tiling
the real 0.1 m aerial image of ../shared/data with flips, then, each in its own child process
so peaks are not shared:

  1. satsr make-dataset: `--count` random crops from the 8192 source;
  2. the bare loop: rasterio windowed reads of the very same windows, in the same order, each
     written as a GeoTIFF with the same CRS, window transform and creation options;
  3. satsr make-dataset on the 2048 source (same count), for the peak-RSS comparison.

Prints crops/s for both, their ratio (target >= 0.9), and the peak RSS of the make-dataset
runs on 2048 vs 8192 sources (target ratio <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SATSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
CO = {"compress": "deflate", "predictor": 2}


def build_source(path: Path, side: int) -> None:
    """A side x side tiled, compressed GeoTIFF made of flipped copies of the manila image."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(SHARED / "manila_aerial_0.1m.tif") as src:
        tile = src.read()
        profile = {"driver": "GTiff", "width": side, "height": side, "count": src.count,
                   "dtype": src.dtypes[0], "crs": src.crs, "transform": src.transform,
                   "tiled": True, "blockxsize": 512, "blockysize": 512,
                   "compress": "deflate", "predictor": 2, "zlevel": 1}
    n = tile.shape[1]
    with rasterio.open(path, "w", **profile) as dst:
        for i in range(0, side, n):
            for j in range(0, side, n):
                t = tile[:, ::-1] if (i // n) % 2 else tile
                t = t[:, :, ::-1] if (j // n) % 2 else t
                h, w = min(n, side - i), min(n, side - j)
                dst.write(np.ascontiguousarray(t[:, :h, :w]), window=Window(j, i, w, h))


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_ours(src: Path, out: Path, count: int, size: int) -> dict:
    """Run make_dataset (library call, no progress bar)."""
    from satsr.data.make_dataset import make_dataset

    t0, c0 = time.perf_counter(), cpu_seconds()
    s = make_dataset([src], out, size=size, count=count, seed=0, creation_options=None)
    return {"seconds": time.perf_counter() - t0, "cpu": cpu_seconds() - c0,
            "chips": sum(s.counts.values())}


def child_bare(src: Path, out: Path, index: Path) -> dict:
    """Windowed reads + GeoTIFF writes of the windows listed in a make-dataset index."""
    import rasterio
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    wins = [f["properties"]["window"] for f in json.loads(index.read_text())["features"]]
    out.mkdir(parents=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    with rasterio.Env(GDAL_CACHEMAX=64 * 1024 * 1024), rasterio.open(src) as ds:
        for i, (c, r, w, h) in enumerate(wins):
            win = Window(c, r, w, h)
            data = ds.read(window=win)
            with rasterio.open(out / f"{i:06d}.tif", "w", driver="GTiff", width=w, height=h,
                               count=ds.count, dtype=ds.dtypes[0], crs=ds.crs,
                               transform=window_transform(win, ds.transform), **CO) as dst:
                dst.write(data)
    return {"seconds": time.perf_counter() - t0, "cpu": cpu_seconds() - c0, "chips": len(wins)}


def run_child(*args: str) -> dict:
    """Run this script as a child; it prints one JSON line with its result and peak RSS."""
    proc = subprocess.run([sys.executable, __file__, "--child", *args],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"child {args[0]} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 crops instead of 10,000")
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child:
        kind, rest = a.child[0], a.child[1:]
        if kind == "ours":
            res = child_ours(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]))
        else:
            res = child_bare(Path(rest[0]), Path(rest[1]), Path(rest[2]))
        res["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return

    count = a.count or (1000 if a.quick else 10_000)
    work = a.keep or Path(tempfile.mkdtemp(prefix="satsr-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        big, small = work / "big8192.tif", work / "small2048.tif"
        t0 = time.perf_counter()
        if not big.exists():
            build_source(big, 8192)
        if not small.exists():
            build_source(small, 2048)
        print(f"sources built in {time.perf_counter() - t0:.1f} s "
              f"({big.stat().st_size / 2**20:.0f} MiB and {small.stat().st_size / 2**20:.0f} MiB)",
              flush=True)
        for d in ("ours8192", "bare8192", "ours2048"):
            shutil.rmtree(work / d, ignore_errors=True)
        ours = run_child("ours", str(big), str(work / "ours8192"), str(count), str(a.size))
        bare = run_child("bare", str(big), str(work / "bare8192"),
                         str(work / "ours8192" / "index.geojson"))
        small_run = run_child("ours", str(small), str(work / "ours2048"), str(count), str(a.size))
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    from rich.console import Console
    from rich.table import Table

    runs = [("satsr make-dataset", "8192^2", ours), ("bare read+write loop", "8192^2", bare),
            ("satsr make-dataset", "2048^2", small_run)]
    t = Table(title=f"make-dataset: {count} crops of {a.size} px, 3 x uint8, "
                    f"{os.cpu_count()} CPUs")
    for col in ("run", "source", "crops", "wall s", "crops/s (wall)", "CPU ms/crop",
                "peak RSS MiB"):
        t.add_column(col, justify="right" if col != "run" else "left")
    for name, src, r in runs:
        t.add_row(name, src, str(r["chips"]), f"{r['seconds']:.1f}",
                  f"{r['chips'] / r['seconds']:.1f}", f"{1000 * r['cpu'] / r['chips']:.1f}",
                  f"{r['max_rss_mb']:.0f}")
    Console(width=120).print(t)
    wall = (ours["chips"] / ours["seconds"]) / (bare["chips"] / bare["seconds"])
    cpu = (bare["cpu"] / bare["chips"]) / (ours["cpu"] / ours["chips"])
    rss = ours["max_rss_mb"] / small_run["max_rss_mb"]
    print(f"speed ratio make-dataset / bare loop (8192 source): {wall:.2f}x by wall clock, "
          f"{cpu:.2f}x by CPU time  (target >= 0.9; CPU time is the fairer one on a busy machine)")
    print(f"peak RSS ratio (8192 / 2048 source): {rss:.2f}x  (target <= 1.2)")


if __name__ == "__main__":
    main()
