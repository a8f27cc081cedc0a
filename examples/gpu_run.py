"""One prepared GPU session (issue 13): CUDA tests, the paper's training setting, a bare-loop
speed reference and a test-split eval, in well under 8 minutes of an H100/H200-class GPU.

On the CPU machine, first cut the data it needs (256-px chips of the sub-metre sources through
the committed split, sized to travel with the working tree):

    python examples/gpu_run.py data WORK          # WORK/gpu-data (train / val), ~40 MB

then, on the GPU machine (the `device` tool, carrying WORK/gpu-data and the eval dataset):

    python examples/gpu_run.py run --data WORK/gpu-data --eval-data WORK/aerial --out $OUT

Steps of `run`, each reported as one JSON line and together in OUT/gpu_run.json:
1. `pytest tests/test_cuda.py` (bf16 steps, the engine on CUDA, `satsr train --device cuda`);
2. `satsr train` in the paper's setting: adv+rec, 5000 iterations, batch 10, HR 256, bf16
   autocast, Adam 2e-4, lambda2 1e-3, with the realistic degradation and pe-l selection;
   samples/s from its log;
3. the minimal hand-written loop of benchmarks/train_step.py over the same networks and
   losses (random HR crops, bicubic LR, no data loading, no logging): samples/s, and the
   ratio satsr / bare;
4. `examples/model_eval.py rgb` on the eval dataset's test split: the GPU model, the bundled
   `satsr-aerial-x4` and bicubic. Keep the GPU model (copy OUT/run/model.safetensors) only if
   it beats the bundled one on issue 13's targets.

`--quick` shrinks every step (20 iterations, HR 64, 4 bare steps, 2 chips per source) so the
whole script can be checked on a CPU (`--device cpu`); its numbers mean nothing.
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
SPLIT = ROOT / "examples" / "splits" / "shared.json"
SATSR = [sys.executable, "-m", "satsr"]


def step_data(work: Path, count: int) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    import bundled_models as bm

    manila = bm._held_out_manila(work)
    sources = [str(manila) if s == "MANILA" else str(SHARED / s) for s in bm.AERIAL]
    subprocess.run([*SATSR, "make-dataset", *sources, "--bands", "1,2,3", "--nodata", "0",
                    "--max-nodata", "0.01", "--size", "256", "--count", str(count),
                    "--split", "0.9,0.1,0", "--seed", "0", "--split-file", str(SPLIT),
                    "-o", str(work / "gpu-data"), "--overwrite"], check=True)


def _report(out: Path, key: str, value: object, log: dict) -> None:
    log[key] = value
    print(json.dumps({key: value}), flush=True)
    (out / "gpu_run.json").write_text(json.dumps(log, indent=1) + "\n")


def _train_seconds(run_dir: Path) -> tuple[int, float]:
    last = (run_dir / "log.csv").read_text().strip().splitlines()[-1].split(",")
    return int(last[0]), float(last[1])


def bare_loop(device: str, steps: int, batch: int, hr: int) -> float:
    """Samples/s of benchmarks/train_step.py's minimal hand-written adv+rec loop over the same
    networks and losses (bf16 and channels_last on CUDA), on random HR crops."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_step import minimal_round

    from satsr.nn.device import resolve_device
    from satsr.training.config import TrainConfig

    cfg = TrainConfig(data="", out="", variant="adv+rec", hr_size=hr, batch_size=batch,
                      upsample="nearest", device=device)
    crops = torch.rand(4 * batch, 3, hr, hr, generator=torch.Generator().manual_seed(0)) * 2 - 1
    seconds = minimal_round(crops, cfg, resolve_device(device), max(2, steps // 10), steps)
    return batch / seconds


def step_run(a: argparse.Namespace) -> None:
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    log: dict = {"quick": a.quick, "device": a.device}
    its, hr, bare, cap, vchips = (20, 64, 4, 2, 4) if a.quick else (5000, 256, 200, 24, 48)

    t = time.time()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_cuda.py"],
                           cwd=ROOT, capture_output=True, text=True)
    _report(out, "cuda_tests", {"rc": tests.returncode, "seconds": round(time.time() - t),
                                "tail": tests.stdout.strip().splitlines()[-1:]}, log)

    run_dir = out / "run"
    t = time.time()
    train = subprocess.run(
        [*SATSR, "train", str(a.data), "-o", str(run_dir), "--device", a.device,
         "--variant", "adv+rec", "--upsample", "nearest", "--lambda2", "1e-3",
         "--degradation", "realistic", "--select", "pe-l", "--psnr-floor", "1.5",
         "--hr-size", str(hr), "-b", "10", "-n", str(its), "--amp",
         "--val-every", str(its // 10), "--val-chips", str(vchips), "--checkpoint-every",
         str(its // 5), "--log-every", str(max(1, its // 100)), "--seed", "0"],
        capture_output=True, text=True)
    if train.returncode:
        _report(out, "train", {"rc": train.returncode,
                               "stderr": train.stderr.strip()[-1500:]}, log)
        raise SystemExit(1)
    done, secs = _train_seconds(run_dir)
    _report(out, "train", {"iterations": done, "train_seconds": round(secs, 1),
                           "wall_seconds": round(time.time() - t),
                           "samples_per_s": round(done * 10 / secs, 2),
                           "val": (run_dir / "val.csv").read_text().strip().splitlines()},
            log)

    bare_sps = bare_loop(a.device, bare, 10, hr)
    _report(out, "bare_loop", {"samples_per_s": round(bare_sps, 2),
                               "satsr_over_bare": round(done * 10 / secs / bare_sps, 3)}, log)

    t = time.time()
    models = [f"gpu={run_dir / 'model.safetensors'}"]
    bundled = ROOT / "satsr" / "assets" / "models" / "satsr-aerial-x4.safetensors"
    if bundled.is_file():
        models.append(f"satsr-aerial-x4={bundled}")
    ev = subprocess.run([sys.executable, str(ROOT / "examples" / "model_eval.py"), "rgb",
                         str(a.eval_data), *[f"--model={m}" for m in models], "--split",
                         "test", "--cap", str(cap), "--json", str(out / "eval.json"), "--md",
                         str(out / "eval.md")], capture_output=True, text=True)
    _report(out, "eval", {"rc": ev.returncode, "seconds": round(time.time() - t),
                          "table": ev.stdout.strip().splitlines()[:8] if not ev.returncode
                          else ev.stderr.strip()[-1500:]}, log)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    d = sub.add_parser("data")
    d.add_argument("work", type=Path)
    d.add_argument("--count", type=int, default=330, help="chips (train + val)")
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True, help="dataset of >= 256-px chips")
    r.add_argument("--eval-data", type=Path, required=True, help="dataset with a test split")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--quick", action="store_true", help="tiny sizes (check it on a CPU)")
    a = ap.parse_args()
    if a.step == "data":
        step_data(a.work, a.count)
    else:
        step_run(a)


if __name__ == "__main__":
    main()
