"""The README's native-resolution picture: real rasters upscaled x4 as delivered (no synthetic
degradation), bicubic beside the bundled model that `satsr upscale` chooses for them.

    python examples/native_picture.py examples/results/native_x4.png

Rows: the demo sample (0.1 m aerial, held out of every model's training) and a window of the
Landsat 8 30 m uint16 scene's test area (committed split). Columns: the input enlarged by
nearest (its true pixels), bicubic, and satsr (`satsr upscale`, model chosen by the table).
Each column shows the same crop; uint16 bands are stretched by the input's p1 / p99 for
display only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SATSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
SATSR = [sys.executable, "-m", "satsr"]
#: (raster, window col, row, width, height of the input, crop of it to show)
ROWS = [
    (ROOT / "satsr" / "assets" / "sample_manila_0.1m.tif", (128, 160, 96, 96)),
    (SHARED / "landsat8_rgb_30m_uint16.tif", None),  # window: the first test-split block
]


def test_window(raster: Path, side: int) -> tuple[int, int, int, int]:
    """A side x side window at the centre of the committed split's first test block of
    `raster` that holds no nodata."""
    import json

    import rasterio
    from rasterio.windows import Window

    doc = json.loads((ROOT / "examples" / "splits" / "shared.json").read_text())
    src = next((s for s in doc["sources"] if s["name"] == raster.name), None)
    if src is None:
        raise SystemExit(f"{raster.name} is not in the committed split")
    with rasterio.open(raster) as ds:
        for c, r, w, h, split in src["blocks"]:
            if split != "test" or min(w, h) < side:
                continue
            win = (c + (w - side) // 2, r + (h - side) // 2, side, side)
            if ds.read_masks(1, window=Window(*win)).all():
                return win
    raise SystemExit(f"{raster.name}: no test block without nodata in the committed split")


def _rgb(path: Path, window: tuple[int, int, int, int] | None) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    from satsr.data.bands import band_names, rgb_bands

    with rasterio.open(path) as ds:
        idx = rgb_bands(band_names(ds), list(range(1, ds.count + 1))) or [0, 1, 2]
        w = Window(*window) if window else None
        return ds.read([i + 1 for i in idx], window=w).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from rasterio.windows import Window

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (raster, crop) in enumerate(ROWS):
            src = Path(tmp) / f"in{k}.tif"
            win = crop if raster.name.startswith("sample") else test_window(raster, 96)
            with rasterio.open(raster) as ds:
                w = Window(*win)
                prof = ds.profile | {"width": win[2], "height": win[3],
                                     "transform": ds.window_transform(w), "tiled": False}
                prof.pop("blockxsize", None), prof.pop("blockysize", None)
                with rasterio.open(src, "w", **prof) as dst:
                    dst.write(ds.read(window=w))
                    dst.descriptions = ds.descriptions
                    dst.colorinterp = ds.colorinterp
            outs = {}
            for label, how in (("bicubic", ["--method", "bicubic"]), ("satsr", [])):
                dst = Path(tmp) / f"{label}{k}.tif"
                res = subprocess.run([*SATSR, "upscale", str(src), "-o", str(dst), *how],
                                     capture_output=True, text=True, check=True)
                outs[label] = dst
                if label == "satsr":
                    chosen = (res.stdout + res.stderr).strip().splitlines()
            lr = _rgb(src, None)
            lo, hi = np.percentile(lr, 1, axis=(1, 2)), np.percentile(lr, 99, axis=(1, 2))

            def show(x: np.ndarray, lo: np.ndarray = lo, hi: np.ndarray = hi) -> np.ndarray:
                y = (x - lo[:, None, None]) / (hi - lo)[:, None, None]
                return np.clip(y, 0, 1).transpose(1, 2, 0)

            near = np.repeat(np.repeat(lr, 4, axis=1), 4, axis=2)
            model = next((line for line in chosen if "model" in line.lower()), "")
            rows.append((raster.name, [("input (nearest x4)", show(near)),
                                       ("bicubic", show(_rgb(outs["bicubic"], None))),
                                       ("satsr", show(_rgb(outs["satsr"], None)))], model))
    fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 3.7 * len(rows)), squeeze=False)
    for r, (name, panels, model) in enumerate(rows):
        for c, (title, img) in enumerate(panels):
            axes[r][c].imshow(img, interpolation="nearest")
            axes[r][c].set_title(f"{name}\n{title}" if c == 0 else title, fontsize=9)
            axes[r][c].set_axis_off()
        print(f"{name}: {model}")
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
