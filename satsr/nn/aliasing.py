"""How aliased an input tile looks: the measure behind a residual model's adaptive strength.

A model trained on clean (anti-aliased) low-resolution input sharpens what it sees; on input
that was decimated without a low-pass filter (nearest-neighbour resampling, as many
reprojections do) it sharpens the aliasing too and draws outlines. `AliasingProbe` is a small
convolutional classifier (three 3x3 convolutions of 16 channels, global average, one linear
unit: 4.9 k weights) that reads the grey of a tile (mean of its bands, less its own mean) and
gives p = the probability that the tile was decimated without a low-pass filter. A residual
generator carrying a probe scales its correction per tile by `adaptive_weight(p, lo, hi)`:
the whole correction below `lo`, none above `hi`, linear between (satsr.nn.generator).

The probe is fitted on the training split (satsr.training.probe) and saved with the
generator's weights; `lo` and `hi` are chosen on the validation split and recorded in the
model file's metadata (`adaptive`).
"""

from __future__ import annotations

import torch
from torch import nn

#: Tiles whose grey varies less than this (variance on the [-1, 1] scale) are flat: their
#: spectrum is only noise, and the probe calls them clean (p = 0).
FLAT_VARIANCE = 1e-5
#: The grey is multiplied by this before the convolutions (unit-range tiles have small
#: differences; this puts them near the scale the default initialisation expects).
INPUT_GAIN = 10.0


class AliasingProbe(nn.Module):
    """p(decimated without low-pass filter) per tile, for (N, C, H, W) tiles in [-1, 1]."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3), nn.ReLU(),
            nn.Conv2d(channels, channels, 3), nn.ReLU(),
            nn.Conv2d(channels, channels, 3), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) logits; the tiles' grey, less its mean, is what the network reads."""
        g = x.float().mean(dim=1, keepdim=True)
        g = g - g.mean(dim=(-2, -1), keepdim=True)
        first = self.net[0]
        assert isinstance(first, nn.Conv2d)
        return self.net((g * INPUT_GAIN).to(first.weight.dtype))[:, 0].float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.logits(x))
        return torch.where(flat_tiles(x), torch.zeros_like(p), p)


def flat_tiles(x: torch.Tensor) -> torch.Tensor:
    """(N,) True for the tiles of (N, C, H, W) whose grey varies less than FLAT_VARIANCE."""
    return x.float().mean(dim=1).var(dim=(-2, -1)) < FLAT_VARIANCE


def adaptive_weight(p: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """1 where p <= lo, 0 where p >= hi, linear between (the share of the correction kept)."""
    return ((hi - p) / (hi - lo)).clamp(0.0, 1.0)


def check_adaptive(value: object) -> tuple[float, float]:
    """A model file's `adaptive` record: [lo, hi] with 0 <= lo < hi <= 1."""
    if (isinstance(value, list | tuple) and len(value) == 2
            and all(type(v) in (int, float) for v in value)
            and 0.0 <= float(value[0]) < float(value[1]) <= 1.0):
        return float(value[0]), float(value[1])
    raise ValueError(f"adaptive = {value!r}, expected [lo, hi] with 0 <= lo < hi <= 1")
