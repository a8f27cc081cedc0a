"""Seconds per `adv+rec` training step on the CPU: float32 (the default) vs `--cpu-bf16`
(bf16 autocast and channels_last memory), in the same process.

Both models are satsr's real step (`satsr.training.gcn.GCNModel.step`: degradation, G forward,
Φ step, G step) with the same configuration, seed and HR batches; they run alternately over
several rounds and the median round counts, which tames a noisy shared machine. The ratio is
float32's time over bf16's: above 1, `--cpu-bf16` is faster here. It pays on CPUs with native
bf16 instructions (AVX-512 BF16 or AMX; the line `native bf16` says what this CPU has); on
others oneDNN emulates bf16 and the ratio falls below 1. Target on a native-bf16 CPU:
ratio >= 1.3.

    .venv/bin/python benchmarks/cpu_bf16.py                  # HR 64, batch 10, 2 threads
    .venv/bin/python benchmarks/cpu_bf16.py --hr-size 96 --threads 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from satsr.nn.device import cpu_has_native_bf16  # noqa: E402
from satsr.training.config import TrainConfig  # noqa: E402
from satsr.training.gcn import GCNModel  # noqa: E402


def timed_round(model: GCNModel, batches: list[torch.Tensor]) -> float:
    """Seconds per step over `batches`."""
    start = time.perf_counter()
    for hr in batches:
        losses = model.step(hr)
        if not torch.isfinite(losses).all():
            raise SystemExit(f"non-finite losses: {losses}")
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hr-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--steps", type=int, default=4, help="Steps per round.")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    base = dict(variant="adv+rec", residual=True, upsample="nearest", lambda2=1e-4,
                hr_size=a.hr_size, batch_size=a.batch_size, device="cpu", seed=0)
    models = {"fp32": GCNModel(TrainConfig(**base), bands=3),
              "bf16": GCNModel(TrainConfig(**base, cpu_bf16=True), bands=3)}
    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(a.batch_size, 3, a.hr_size, a.hr_size, generator=gen) * 2 - 1
               for _ in range(a.steps)]
    for m in models.values():
        timed_round(m, batches[:2])  # warm-up: oneDNN picks and caches its kernels
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(a.rounds):
        for k, m in models.items():
            times[k].append(timed_round(m, batches))
    fp32, bf16 = (statistics.median(times[k]) for k in ("fp32", "bf16"))
    native = {True: "yes", False: "no", None: "unknown"}[cpu_has_native_bf16()]
    print(f"adv+rec step, HR {a.hr_size}, batch {a.batch_size}, {a.threads} threads; "
          f"native bf16: {native}")
    print(f"float32:     {fp32:.3f} s/it")
    print(f"--cpu-bf16:  {bf16:.3f} s/it")
    print(f"ratio (float32 / bf16): {fp32 / bf16:.2f}  (target on a native-bf16 CPU: >= 1.3)")


if __name__ == "__main__":
    main()
