"""What a degradation pipeline costs per training step, against the step itself.

For each preset, times `Degradation(hr, rng)` on one training batch and the real training
step (`satsr.training.gcn.GCNModel.step`, which calls it) of `adv+rec` with that preset,
alternately over several rounds (the median counts), on real crops of the shipped fixture.
Prints the degradation's share of the step. Target: below 10 % for every preset.

    .venv/bin/python benchmarks/degradation.py                 # HR 96, batch 10, CPU
    .venv/bin/python benchmarks/degradation.py --rounds 5 --steps 5
    .venv/bin/python benchmarks/degradation.py --breakdown --hr-size 256   # ms per step kind
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from satsr.data.degrade import PRESETS, Degradation
from satsr.training.config import TrainConfig
from satsr.training.gcn import GCNModel

ROOT = Path(__file__).resolve().parents[1]


def crops(hr: int, batch: int) -> torch.Tensor:
    """`batch` real HR crops in [-1, 1] from the shipped Netherlands fixture."""
    with rasterio.open(ROOT / "tests" / "data" / "netherlands_aerial_0.25m.tif") as ds:
        a = ds.read(window=((0, 960), (0, 960))).astype(np.float32) / 127.5 - 1
    tiles = [a[:, r:r + hr, c:c + hr] for r in range(0, 960 - hr + 1, hr)
             for c in range(0, 960 - hr + 1, hr)]
    return torch.from_numpy(np.stack(tiles[:batch]))


def breakdown(name: str, hr: torch.Tensor, batches: int = 10) -> tuple[float, dict[str, float]]:
    """(ms per batch of `Degradation(hr, rng)`, {step kind[:method]: ms per batch}): where a
    preset's time goes, on one thread of the CPU (as in one loader worker)."""
    deg = Degradation.resolve(name, 4)
    acc: collections.Counter[str] = collections.Counter()
    apply = deg._apply

    def timed(step, x, rng, lr_size):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        y = apply(step, x, rng, lr_size)
        if step.kind != "one_of":  # its chosen steps are timed themselves
            acc[step.kind + (f":{step.method}" if step.method else "")] += \
                time.perf_counter() - t
        return y

    deg._apply = timed  # type: ignore[method-assign]
    t = time.perf_counter()
    for k in range(batches):
        deg(hr, np.random.default_rng([0, k]))
    total = (time.perf_counter() - t) / batches * 1000
    return total, {k: v / batches * 1000 for k, v in acc.most_common()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hr-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="Training steps timed per round.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="*", default=["bicubic", "sensor", "realistic", "jpeg",
                                                     "blur-noise", "nearest-reproject"])
    ap.add_argument("--breakdown", action="store_true",
                    help="Only the degradation, one thread: ms per batch and per step kind.")
    a = ap.parse_args()
    torch.set_num_threads(1 if a.breakdown else a.threads)
    hr = crops(a.hr_size, a.batch_size)
    if a.breakdown:
        print(f"HR {a.hr_size}, batch {hr.shape[0]}, 1 thread (as one loader worker), CPU")
        for name in a.presets:
            total, parts = breakdown(name, hr)
            print(f"{name:<18} {total:7.1f} ms/batch: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
        return
    print(f"HR {a.hr_size}, batch {a.batch_size}, {a.threads} threads, adv+rec, CPU; "
          f"median of {a.rounds} rounds")
    print(f"{'preset':<18} {'degradation ms':>15} {'step ms':>9} {'share':>7}")
    for name in a.presets:
        if name not in PRESETS:
            raise SystemExit(f"unknown preset {name}")
        deg = Degradation.resolve(name, 4)
        cfg = TrainConfig(data="-", out="-", variant="adv+rec", hr_size=a.hr_size,
                          batch_size=a.batch_size, degradation=name, device="cpu")
        model = GCNModel(cfg, 3, "cpu")
        model.train()
        model.step(hr)  # warm-up
        d_times, s_times = [], []
        for r in range(a.rounds):
            t0 = time.perf_counter()
            for k in range(a.steps):
                deg(hr, np.random.default_rng([r, k]))
            d_times.append((time.perf_counter() - t0) / a.steps)
            t0 = time.perf_counter()
            for _ in range(a.steps):
                model.step(hr)
            s_times.append((time.perf_counter() - t0) / a.steps)
        d, s = statistics.median(d_times), statistics.median(s_times)
        print(f"{name:<18} {d * 1000:>15.1f} {s * 1000:>9.0f} {d / s:>7.1%}")


if __name__ == "__main__":
    main()
