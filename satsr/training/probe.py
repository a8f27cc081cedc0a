"""Fitting the aliasing probe (satsr.nn.aliasing) on a dataset's training chips.

Positives are chips decimated without a low-pass filter, negatives chips downscaled with
one, each drawn from the resampling branches of the `realistic` training preset (never the
evaluation families), with that preset's optional blur, noise and JPEG:

- clean: PSF blur (p 0.6), then bicubic, area, or area at 0.625-1.5x the scale resized
  bilinearly to the LR grid;
- aliased: nearest decimation by the scale, or by 0.625-1.5x the scale then nearest
  resampling to the LR grid.

Both take noise (p 0.5) and JPEG 30-95 (p 0.4) afterwards. Fresh draws every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from satsr.data.degrade import Degradation
from satsr.data.index import DatasetIndex
from satsr.data.raster import open_raster, read_window
from satsr.nn.aliasing import AliasingProbe

_AFTER = [{"noise": {"read": [0.0, 0.015], "shot": [0.0, 0.025], "p": 0.5}},
          {"jpeg": {"quality": [30, 95], "p": 0.4}}]
CLEAN = {"order": "fixed", "steps": [
    {"blur": {"mtf": [0.15, 0.7], "p": 0.6}},
    {"one_of": [
        {"weight": 1, "steps": [{"downscale": {"method": "bicubic"}}]},
        {"weight": 1, "steps": [{"downscale": {"method": "area"}}]},
        {"weight": 1, "steps": [{"downscale": {"method": "area", "ratio": [0.625, 1.5]}},
                                {"resize": {"method": "bilinear"}}]}]},
    *_AFTER]}
ALIASED = {"order": "fixed", "steps": [
    {"one_of": [
        {"weight": 1, "steps": [{"downscale": {"method": "nearest"}}]},
        {"weight": 1, "steps": [{"downscale": {"method": "nearest", "ratio": [0.625, 1.5]}},
                                {"resize": {"method": "nearest"}}]}]},
    *_AFTER]}


def pipelines(scale: int) -> tuple[Degradation, Degradation]:
    """(clean, aliased) degradations of the probe's training data."""
    return (Degradation.from_dict(CLEAN, scale, source="probe clean", name="probe-clean"),
            Degradation.from_dict(ALIASED, scale, source="probe aliased", name="probe-aliased"))


def train_probe(hr: Sequence[torch.Tensor], scale: int, epochs: int = 8, batch: int = 64,
                lr: float = 3e-3, seed: int = 0) -> tuple[AliasingProbe, list[float]]:
    """Fit a probe on HR tiles (each (1, C, H, W) in [-1, 1]; tiles of several sizes, e.g.
    from datasets of several chip sizes, are cropped at their centre to the smallest, a
    multiple of the scale): every epoch degrades each tile once each way. Returns the probe
    (eval mode) and the training accuracy of every epoch."""
    hr = common_size(hr, scale)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clean, aliased = pipelines(scale)
    probe = AliasingProbe()
    opt = torch.optim.Adam(probe.parameters(), lr)
    accuracy = []
    for _ in range(epochs):
        x = torch.cat([clean(t, rng) for t in hr] + [aliased(t, rng) for t in hr])
        y = torch.cat([torch.zeros(len(hr)), torch.ones(len(hr))])
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(
            int(rng.integers(2 ** 31))))
        probe.train()
        for i in range(0, len(x), batch):
            j = order[i:i + batch]
            loss = F.binary_cross_entropy_with_logits(probe.logits(x[j]), y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
        probe.eval()
        with torch.no_grad():
            accuracy.append(float(((probe.logits(x) > 0).float() == y).float().mean()))
    return probe, accuracy


def common_size(tiles: Sequence[torch.Tensor], scale: int) -> list[torch.Tensor]:
    """`tiles` cropped at their centre to the smallest height and width among them, rounded
    down to a multiple of `scale` (unchanged when they all have that size)."""
    h = min(t.shape[-2] for t in tiles) // scale * scale
    w = min(t.shape[-1] for t in tiles) // scale * scale
    if h < scale or w < scale:
        raise ValueError(f"tiles of {h}x{w} px are smaller than the scale {scale}")
    out = []
    for t in tiles:
        top, left = (t.shape[-2] - h) // 2, (t.shape[-1] - w) // 2
        out.append(t[..., top:top + h, left:left + w])
    return out


def dataset_tiles(dataset: str | Path, split: str = "train", limit: int = 1500
                  ) -> list[torch.Tensor]:
    """Up to `limit` chips of a make-dataset folder's split (evenly spaced), in [-1, 1]."""
    index = DatasetIndex.read(dataset)
    chips = index.split(split)
    if len(chips) > limit:
        chips = [chips[int(i * len(chips) / limit)] for i in range(limit)]
    out = []
    for c in chips:
        with open_raster(c.path) as ds:
            pixels = read_window(ds, None, None, c.path)
        out.append(torch.from_numpy(index.scaling.to_unit(pixels).astype(np.float32))[None])
    return out
