"""How the bundled model `satsr-rgb-x4` was made, with satsr's own verbs. Re-runnable.

    python examples/bundled_model.py data   WORK   # hold out the demo area, make-dataset
    python examples/bundled_model.py train  WORK   # satsr train (resumes if WORK/run exists)
    python examples/bundled_model.py export WORK   # fp16 model + card + eval into satsr/assets

Data: every 8-bit raster of ../shared/data (RGB bands of the NAIP file), 96-px chips, split
by 128-px blocks so each site has train, val and test areas (`--seed 3` is the split seed
that gave every site but the tiny Colorado file a test area; it was picked by looking at the
split map only, never at scores). A 512x512 area of the Manila raster is blanked (nodata)
before cutting chips: it is the demo sample (satsr/assets/sample_manila_0.1m.tif), so the
demo scores the model on pixels it never saw.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SATSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
SATSR = [sys.executable, "-m", "satsr"]
NAME = "satsr-rgb-x4"
DEMO_WINDOW = (1536, 320, 512, 512)  # col, row, width, height in manila_aerial_0.1m.tif
SOURCES = ["landsat7_bahamas_300m.tif", "naip_rgbn_5m.tif", "MANILA",
           "netherlands_aerial_0.25m.tif", "colorado_aerial_0.15m.tif",
           "bali_drone_rgba_0.35m.tif"] + [f"neon/{p.name}" for p in
                                           sorted((SHARED / "neon").glob("*.tif"))]
DATASET_ARGS = ["--bands", "1,2,3", "--nodata", "0", "--max-nodata", "0.01", "--size", "96",
                "--count", "4000", "--seed", "3", "--block", "128"]
#: λ2 = 1e-4, not the paper's 1e-3: with 1e-3 (run kept beside this one) the discriminator
#: won outright, the val PSNR fell from 22.0 to 21.1 dB over 1000 iterations and the output
#: grew periodic noise; the feature loss of a learned Φ has no fixed scale, so the balance
#: λ2/λ1 that suits it differs from SRGAN's.
#: --upsample nearest: with sub-pixel convolutions (the paper's), the correction grew a
#: period-4 checkerboard by iteration 250 that LPIPS vgg-l punished (and ICNR did not stop).
TRAIN_ARGS = ["--variant", "adv+rec", "--residual", "--upsample", "nearest",
              "--lambda2", "1e-4", "--hr-size", "96",
              "-b", "10", "-n", "3000", "--val-every", "250", "--checkpoint-every", "250",
              "--log-every", "50", "--seed", "0"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def step_data(work: Path) -> None:
    import rasterio
    from rasterio.windows import Window

    src = SHARED / "manila_aerial_0.1m.tif"
    held = work / "src" / "manila_aerial_0.1m_without_demo.tif"
    held.parent.mkdir(parents=True, exist_ok=True)
    c, r, w, h = DEMO_WINDOW
    with rasterio.open(src) as ds:
        pixels, profile = ds.read(), ds.profile
        demo = ds.read(window=Window(c, r, w, h))
        demo_transform = ds.window_transform(Window(c, r, w, h))
    pixels[:, r:r + h, c:c + w] = 0  # nodata under --nodata 0: no chip can touch it
    with rasterio.open(held, "w", driver="GTiff", width=profile["width"],
                       height=profile["height"], count=3, dtype="uint8", crs=profile["crs"],
                       transform=profile["transform"], tiled=True, compress="deflate") as out:
        out.write(pixels)
    with rasterio.open(work / "sample.tif", "w", driver="GTiff", width=w, height=h, count=3,
                       dtype="uint8", crs=profile["crs"], transform=demo_transform, tiled=True,
                       blockxsize=256, blockysize=256, compress="jpeg", photometric="ycbcr",
                       jpeg_quality=95) as out:
        out.write(demo)
    sources = [str(held) if s == "MANILA" else str(SHARED / s) for s in SOURCES]
    run([*SATSR, "make-dataset", *sources, *DATASET_ARGS, "-o", str(work / "ds"),
         "--overwrite"])


def step_train(work: Path) -> None:
    resume = ["--resume"] if (work / "run" / "checkpoint.pt").is_file() else []
    run([*SATSR, "train", str(work / "ds"), "-o", str(work / "run"), *TRAIN_ARGS, *resume])


def _hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{torch.get_num_threads()} threads of {cpu} (CPU only)"


def _training_time(run_dir: Path) -> float:
    """Seconds of training: the sum over sessions of each one's last elapsed_s in log.csv."""
    total, last, prev_it = 0.0, 0.0, -1
    for line in (run_dir / "log.csv").read_text().splitlines()[1:]:
        it, elapsed = int(line.split(",")[0]), float(line.split(",")[1])
        if it <= prev_it or elapsed < last:  # a resumed session restarts its clock
            total += last
        last, prev_it = elapsed, it
    return total + last


def _table(rows: dict[str, dict[str, float]], metrics: list[str]) -> list[str]:
    lines = ["| method | " + " | ".join(metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for name, vals in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals[m]:.4g}" for m in metrics) + " |")
    return lines


def step_export(work: Path, hardware: str | None) -> None:
    import numpy as np
    import yaml

    from satsr import load_model
    from satsr.data.index import DatasetIndex
    from satsr.evaluation import scoring as ev
    from satsr.inference.bundled import MODELS_DIR
    from satsr.inference.modelfile import save_model

    gen, meta = load_model(work / "run")
    cfg = yaml.safe_load((work / "run" / "config.yaml").read_text())
    index = DatasetIndex.read(work / "ds")
    test = index.split("test")
    meta["name"] = NAME
    meta["data"]["dataset"] = ("every 8-bit raster of satsr's shared test imagery (see "
                               "examples/bundled_model.py), demo area held out")
    meta["data"]["sources"] = [Path(s).name for s in meta["data"]["sources"]]
    meta["training"] = {"hardware": hardware or _hardware(),
                        "seconds": round(_training_time(work / "run")),
                        **{k: cfg[k] for k in ("batch_size", "hr_size", "lr", "lambda1",
                                               "lambda2", "upsample", "residual", "seed")}}
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    model_path = save_model(MODELS_DIR / f"{NAME}.safetensors", gen, meta, half=True)
    chips = [{"source": Path(c.source).name.replace("_without_demo", ""), "window": c.window}
             for c in test]
    (MODELS_DIR / f"{NAME}.test-chips.json").write_text(json.dumps(chips) + "\n")

    # eval of the shipped (fp16) file on the whole test split, per source too
    samples, total, scaling, info = ev.dataset_samples(work / "ds")
    methods = [ev.model_method(model_path, scaling, 4, name="satsr"),
               ev.classical_method("bicubic", 4)]
    metrics = ["l2", "dssim", "psnr", "alex", "alex-l", "vgg", "vgg-l"]
    t0 = time.time()
    res = ev.score_samples(samples, methods, metrics, scaling, 4, [0, 1, 2], total=total,
                           progress=False)
    print(f"eval of {total} test chips: {time.time() - t0:.0f} s")
    src_of = [Path(c.source).name.replace("_without_demo", "").split("_")[0] for c in test]
    overall = {m: {k: float(np.mean(res.values[m][k])) for k in metrics} for m in res.methods}
    per_source: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for src in sorted(set(src_of)):
        idx = [i for i, s in enumerate(src_of) if s == src]
        for m in res.methods:
            vals = {k: float(np.mean([res.values[m][k][i] for i in idx])) for k in metrics}
            per_source[f"{src} ({len(idx)})"][m] = vals
    losses = []
    for src, rows in per_source.items():
        for k in metrics:
            a, b = rows["satsr"][k], rows["bicubic"][k]
            if (a < b) if k == "psnr" else (a > b):
                losses.append(f"{src.split(' ')[0]} {k} ({a:.4g} vs {b:.4g})")
    (MODELS_DIR / f"{NAME}.eval.json").write_text(json.dumps(
        {"overall": overall, "per_source": per_source, "chips": total}, indent=1) + "\n")

    lines = [f"# {NAME}", "",
             f"The default model of `satsr upscale`: x4, 3 bands (RGB), uint8 band scaling, "
             f"GCN variant `{meta['variant']}` with the residual generator (a learned "
             f"correction added to bicubic), {meta['iterations']} iterations on "
             f"{meta['data']['train_chips']} chips of satsr's shared 8-bit imagery "
             f"(0.1 m to 300 m).", "",
             "## Training", "",
             f"- data: {meta['data']['dataset']}; sources: "
             f"{', '.join(meta['data']['sources'])}",
             f"- chips: {meta['data']['train_chips']} train / {meta['data']['val_chips']} val /"
             f" {total} test, 96 px, split by 128-px blocks (no test pixel in training)",
             f"- variant: {meta['variant']} (Φ = first discriminator block shared with the "
             f"auto-encoder), residual generator (starts as bicubic), "
             f"{cfg['upsample']}-neighbour resize-convolution upsampling, "
             f"{cfg['n_blocks']} blocks, {cfg['features']} maps",
             f"- iterations: {meta['iterations']}, batch {cfg['batch_size']}, HR crop "
             f"{cfg['hr_size']} px, Adam lr {cfg['lr']:g}, λ1 = {cfg['lambda1']:g}, "
             f"λ2 = {cfg['lambda2']:g} (the paper: 1e-3; see examples/bundled_model.py)",
             f"- hardware: {meta['training']['hardware']}",
             f"- time: {meta['training']['seconds'] / 60:.0f} min",
             "- reproduce: `python examples/bundled_model.py data|train|export WORK`", "",
             f"## Eval on the test split ({total} chips, `satsr eval`, lab colour space)", "",
             *_table(overall, metrics), "",
             "Where it does not beat bicubic (per-source means, lower is better except "
             "psnr): " + (", ".join(losses) or "nowhere"), "",
             "## Per source (mean over its test chips)", ""]
    for src, rows in per_source.items():
        lines += [f"### {src}", "", *_table(rows, metrics), ""]
    card = MODELS_DIR / f"{NAME}.md"
    card.write_text("\n".join(lines))
    print(card.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["data", "train", "export"])
    ap.add_argument("work", type=Path)
    ap.add_argument("--hardware", help="Hardware line for the card (default: this machine).")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    {"data": lambda: step_data(a.work), "train": lambda: step_train(a.work),
     "export": lambda: step_export(a.work, a.hardware)}[a.step]()


if __name__ == "__main__":
    main()
