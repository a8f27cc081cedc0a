"""The trial's probe fit and its validation check (session 6, kept as it ran).

    python probe_fit.py NAME DATASETS LIMIT EPOCHS     # e.g. big rgb8,corpus-rgb8 2000 20

Fits an aliasing probe (satsr.training.train_probe) on up to LIMIT train chips of each of
WORK/data/DATASET (WORK = /work/gcn here), saves it as NAME.pt, then reports on the rgb8
validation split, per eval family, the mean share of the correction a tile keeps at three
adaptive thresholds (want ~1 under the clean families, ~0 under the nearest ones).
EPOCHS 0 reads NAME.pt instead of fitting.
"""

from __future__ import annotations

import collections
import sys
import time

import numpy as np
import torch

from satsr.data.degrade import Degradation
from satsr.data.index import DatasetIndex
from satsr.nn.aliasing import AliasingProbe, adaptive_weight
from satsr.training.probe import dataset_tiles, train_probe

WORK = "/work/gcn"
FAMILIES = ("bicubic", "jpeg", "blur-noise", "nearest", "nearest-reproject")


def main() -> None:
    torch.set_num_threads(1)
    name, sources = sys.argv[1], sys.argv[2].split(",")
    limit, epochs = int(sys.argv[3]), int(sys.argv[4])
    t0 = time.time()
    if epochs == 0:
        saved = torch.load(f"{name}.pt", weights_only=True)
        probe = AliasingProbe()
        probe.load_state_dict(saved["state"])
        probe.eval()
        acc = saved["accuracy"]
    else:
        tiles = [t for s in sources for t in dataset_tiles(f"{WORK}/data/{s}", "train", limit)]
        probe, acc = train_probe(tiles, 4, epochs=epochs)
        torch.save({"state": probe.state_dict(), "accuracy": acc}, f"{name}.pt")
    print(name, "fit", f"{time.time() - t0:.0f}s", "acc", [round(a, 3) for a in acc])
    chips = DatasetIndex.read(f"{WORK}/data/rgb8").split("val")
    val = dataset_tiles(f"{WORK}/data/rgb8", "val", 100000)
    for lo, hi in [(0.1, 0.3), (0.2, 0.4), (0.3, 0.6)]:
        out = {}
        for fam in FAMILIES:
            d = Degradation.resolve(fam, 4)
            by = collections.defaultdict(list)
            with torch.no_grad():
                for i, (c, t) in enumerate(zip(chips, val, strict=True)):
                    lr = d(t, np.random.default_rng([0, i])).clamp(-1, 1)
                    share = float(adaptive_weight(probe(lr), lo, hi))
                    by[c.source.split("/")[-1][:12]].append(share)
            out[fam] = {s: float(np.mean(v)) for s, v in by.items()}
        pooled = {f: round(float(np.mean(list(v.values()))), 3) for f, v in out.items()}
        print(name, f"adaptive {lo}-{hi}", pooled,
              "worst nearest source", max(out["nearest"].items(), key=lambda kv: kv[1]),
              "worst clean source", min(out["bicubic"].items(), key=lambda kv: kv[1]))


if __name__ == "__main__":
    main()
