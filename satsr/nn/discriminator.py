"""DCGAN-style discriminator of SRGAN / GCN; its trunk doubles as the auto-encoder's encoder."""

from __future__ import annotations

import torch
from torch import nn

#: (out channels, stride) of the 8 trunk blocks: 64 -> 512 maps, stride 2 every second block.
TRUNK_SPEC: tuple[tuple[int, int], ...] = (
    (64, 1), (64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2),
)
#: Total downsampling of the trunk.
TRUNK_STRIDE = 16


class Trunk(nn.Module):
    """8 blocks of conv3x3 (+ BN from the third block on) + LeakyReLU(0.2).

    `features(x, depth)` is Φ: the output of the first `depth` blocks (depth 1 in the paper).
    """

    def __init__(self, bands: int = 3) -> None:
        super().__init__()
        blocks = []
        cin = bands
        for i, (cout, stride) in enumerate(TRUNK_SPEC):
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1)]
            if i >= 2:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2))
            blocks.append(nn.Sequential(*layers))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.bands = bands

    def features(self, x: torch.Tensor, depth: int = 1) -> torch.Tensor:
        """Φ(x): the output of the first `depth` blocks."""
        if not 1 <= depth <= len(self.blocks):
            raise ValueError(f"phi depth must be in 1..{len(self.blocks)}, not {depth}")
        for block in self.blocks[:depth]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Discriminator(nn.Module):
    """Trunk + the two dense layers (1024, LeakyReLU, 1) applied per position as 1x1 convs.

    Returns a patch of logits (B, 1, H/16, W/16); use BCE-with-logits on it.
    """

    def __init__(self, bands: int = 3, trunk: Trunk | None = None) -> None:
        super().__init__()
        self.trunk = trunk if trunk is not None else Trunk(bands)
        self.head = nn.Sequential(nn.Conv2d(512, 1024, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(1024, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
