"""The auto-encoder: the discriminator's trunk as encoder and a symmetric decoder."""

from __future__ import annotations

import torch
from torch import nn

from satsr.nn.discriminator import TRUNK_SPEC, Trunk


class Decoder(nn.Module):
    """Mirror of the trunk: blocks in reverse order, stride-2 convs become x2 transposed convs.

    Ends in a conv to `bands` maps and tanh (targets live in [-1, 1]).
    """

    def __init__(self, bands: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        spec = list(TRUNK_SPEC)
        for i in range(len(spec) - 1, -1, -1):
            cin, stride = spec[i]
            cout = spec[i - 1][0] if i > 0 else spec[0][0]
            if stride == 2:
                layers.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            else:
                layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            layers += [nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(spec[0][0], bands, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class AutoEncoder(nn.Module):
    """encoder (a Trunk, possibly shared with a Discriminator) + Decoder."""

    def __init__(self, bands: int = 3, trunk: Trunk | None = None) -> None:
        super().__init__()
        self.trunk = trunk if trunk is not None else Trunk(bands)
        self.decoder = Decoder(bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.trunk(x))
