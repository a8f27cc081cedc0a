"""Benchmark `satsr upscale`: tiled throughput vs one whole-image pass, and peak memory.

1. Throughput (CPU): output MPix/s of the tiled engine (`super_resolve`, default tile and
   overlap) next to one whole-image forward pass of the same generator on the same real image,
   in the same run. Tiling recomputes the overlaps by design, so the ideal ratio is the tile
   area over the padded tile area, (tile - overlap)^2 / tile^2; target: >= 0.9x that ideal.
2. Peak RSS of `upscale_raster` on a 1024^2 and a 4096^2 input (tiled real imagery), each in
   its own child process; target: within 1.2x of each other (memory must not grow with size).

    .venv/bin/python benchmarks/upscale.py            # 512^2 throughput, 1024^2 vs 4096^2 RSS
    .venv/bin/python benchmarks/upscale.py --quick    # 384^2 throughput, 512^2 vs 2048^2 RSS
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SATSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
SOURCE = SHARED / "netherlands_aerial_0.25m.tif"


def _image(size: int) -> np.ndarray:
    """A size x size window of real imagery in [-1, 1] (3, size, size)."""
    import rasterio
    from rasterio.windows import Window

    from satsr.data.scaling import BandScaling

    with rasterio.open(SOURCE) as ds:
        data = ds.read([1, 2, 3], window=Window(0, 0, size, size), boundless=True)
    return BandScaling.for_uint8(3).to_unit(data)


def throughput(size: int, blocks: int, repeats: int) -> dict[str, float]:
    """Tiled vs whole-image output MPix/s of the default generator on a real image."""
    import torch

    from satsr.inference.engine import DEFAULT_OVERLAP, DEFAULT_TILE, super_resolve
    from satsr.inference.tiling import TileGrid, receptive_radius
    from satsr.nn.generator import Generator

    torch.manual_seed(0)
    gen = Generator(3, 4, n_blocks=blocks).eval()
    x = _image(size)
    tile, overlap = DEFAULT_TILE["cpu"], DEFAULT_OVERLAP
    out_mpix = (size * 4) ** 2 / 1e6
    whole_t, tiled_t = [], []
    whole = tiled = None
    for _ in range(repeats):  # interleaved, best of: the machine is shared and noisy
        t = time.perf_counter()
        with torch.inference_mode():
            whole = gen(torch.from_numpy(x)[None])[0].numpy()
        whole_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        tiled = super_resolve(x, gen, tile=tile, overlap=overlap)
        tiled_t.append(time.perf_counter() - t)
    grid = TileGrid.build(size, size, 4, tile, overlap, receptive_radius(gen))
    ideal = (tile - overlap) ** 2 / tile ** 2
    w, ti = out_mpix / min(whole_t), out_mpix / min(tiled_t)
    return {"size": size, "tile": tile, "overlap": overlap, "blocks": blocks,
            "receptive_radius": receptive_radius(gen), "tiles": grid.count,
            "whole_mpix_s": w, "tiled_mpix_s": ti, "ratio": ti / w, "ideal": ideal,
            "ratio_vs_ideal": ti / w / ideal,
            "grid_ideal": size * size / grid.computed_pixels,
            "max_abs_diff": float(np.abs(tiled - whole).max())}


def make_input(path: Path, size: int) -> Path:
    """A size x size tiled GeoTIFF mosaicked from the real source raster, window by window."""
    import rasterio
    from mosaic import write_mosaic

    with rasterio.open(SOURCE) as src:
        data = src.read()
        profile = {"driver": "GTiff", "count": src.count,
                   "dtype": src.dtypes[0], "crs": src.crs, "transform": src.transform,
                   "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    return write_mosaic(path, data, size, profile)


def child_rss(src: str, method: str) -> None:
    """Child process: upscale `src` and print peak RSS (MiB) and time as JSON."""
    import torch

    from satsr.inference.engine import Engine
    from satsr.inference.writer import upscale_raster
    from satsr.nn.generator import Generator

    if method == "bicubic":
        engine = Engine.baseline("bicubic", 4)
    else:
        torch.manual_seed(0)
        engine = Engine.from_generator(Generator(3, 4, n_blocks=2, features=16),
                                       device="cpu")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(dir=Path(src).parent) as tmp:
        t = time.perf_counter()
        res = upscale_raster(src, Path(tmp) / "out.tif", engine)
        secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak, "after_import_mib": base, "seconds": secs,
                      "out": f"{res.width}x{res.height}"}))


def rss(sizes: list[int], method: str) -> list[dict[str, float]]:
    """Peak RSS of each input size, each in a separate child process."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            src = make_input(Path(tmp) / f"in_{size}.tif", size)
            out = subprocess.run([sys.executable, __file__, "--child-rss", str(src),
                                  "--rss-method", method], capture_output=True, text=True,
                                 check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["size"] = size
            print(f"  {size}^2: {row}", flush=True)
            rows.append(row)
            src.unlink()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    ap.add_argument("--blocks", type=int, default=10, help="generator residual blocks")
    ap.add_argument("--rss-method", default="bicubic", choices=["bicubic", "model"],
                    help="engine for the memory runs (model: a 2-block, 16-feature generator)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-sizes", default="", help="two input sides for the memory runs, "
                                                   "e.g. 256,1024 (default 1024,4096; quick "
                                                   "512,2048)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--child-rss", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child_rss:
        child_rss(args.child_rss, args.rss_method)
        return
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if not args.skip_throughput:
        t = throughput(384 if args.quick else 512, args.blocks, 1 if args.quick else 3)
        tab = Table(title=f"tiled vs whole-image forward, CPU, {t['size']}^2 input, "
                          f"{t['blocks']} blocks (receptive radius {t['receptive_radius']} px)")
        for col in ("mode", "output MPix/s"):
            tab.add_column(col)
        tab.add_row("whole image (1 pass)", f"{t['whole_mpix_s']:.3f}")
        tab.add_row(f"tiled ({t['tiles']} tiles, tile {t['tile']}, overlap {t['overlap']})",
                    f"{t['tiled_mpix_s']:.3f}")
        con.print(tab)
        con.print(f"ratio tiled/whole {t['ratio']:.3f}; ideal (tile area / padded area) "
                  f"{t['ideal']:.3f} -> {t['ratio_vs_ideal']:.2f}x of ideal (target >= 0.9); "
                  f"this grid's own area ratio {t['grid_ideal']:.3f}; "
                  f"max |tiled - whole| {t['max_abs_diff']:.2e} ([-1, 1] units)")
    if not args.skip_rss:
        sizes = [512, 2048] if args.quick else [1024, 4096]
        if args.rss_sizes:
            sizes = [int(v) for v in args.rss_sizes.split(",")]
        rows = rss(sizes, args.rss_method)
        tab = Table(title=f"peak RSS of upscale_raster ({args.rss_method}), separate processes")
        for col in ("input", "output", "after imports MiB", "peak MiB", "seconds"):
            tab.add_column(col, justify="right")
        for r in rows:
            tab.add_row(f"{r['size']}^2", r["out"], f"{r['after_import_mib']:.0f}",
                        f"{r['peak_mib']:.0f}", f"{r['seconds']:.1f}")
        con.print(tab)
        con.print(f"peak RSS ratio {rows[1]['peak_mib'] / rows[0]['peak_mib']:.2f}x "
                  f"(target <= 1.2)")


if __name__ == "__main__":
    main()
