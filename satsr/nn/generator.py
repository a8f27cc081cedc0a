"""SRResNet generator (Ledig et al.), as used by the GCN paper."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from satsr.nn.aliasing import AliasingProbe, adaptive_weight

SCALES = (2, 4, 8)
#: "shuffle": conv + PixelShuffle (SRResNet, the paper); "nearest": nearest-neighbour x2 then
#: conv (resize-convolution, Odena et al. 2016; as in ESRGAN), which cannot make the periodic
#: checkerboard that sub-pixel convolutions drift into under adversarial training.
UPSAMPLERS = ("shuffle", "nearest")


def icnr_(conv: nn.Conv2d, r: int = 2) -> None:
    """ICNR initialisation (Aitken et al. 2017) of a conv feeding PixelShuffle(r).

    The r*r output channels that become one channel's sub-pixels start as copies of one
    filter, so the shuffled output starts free of checkerboard patterns.
    """
    out = conv.out_channels // (r * r)
    base = torch.empty(out, conv.in_channels, *conv.kernel_size)
    nn.init.kaiming_uniform_(base, a=math.sqrt(5))  # torch's default Conv2d init
    with torch.no_grad():
        conv.weight.copy_(base.repeat_interleave(r * r, dim=0))
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[::r * r].repeat_interleave(r * r))


class ResidualBlock(nn.Module):
    """conv3x3 - BN - PReLU - conv3x3 - BN, plus the identity."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.BatchNorm2d(features),
            nn.PReLU(features),  # one slope per channel: any input size
            nn.Conv2d(features, features, 3, padding=1),
            nn.BatchNorm2d(features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """SRResNet: 9x9 conv, residual blocks, long skip, x2 pixel-shuffle stages, 9x9 conv, tanh.

    Fully convolutional: an (B, bands, h, w) input gives (B, bands, h*scale, w*scale) in [-1, 1].

    With `residual=True` (not in the paper) the network predicts a correction that is added to
    the bicubic upsampling of its input, and the sum is clipped to [-1, 1] instead of passing
    through tanh. Its last convolution starts at zero, so an untrained residual generator *is*
    bicubic (satsr.data.degrade.upsample) and training only moves it away where that pays off.
    """

    def __init__(self, bands: int = 3, scale: int = 4, n_blocks: int = 10,
                 features: int = 64, residual: bool = False, upsample: str = "shuffle",
                 probe: bool = False) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, not {scale}")
        if upsample not in UPSAMPLERS:
            raise ValueError(f"upsample must be one of {UPSAMPLERS}, not {upsample!r}")
        self.bands, self.scale, self.n_blocks, self.features = bands, scale, n_blocks, features
        self.residual = bool(residual)
        self.upsample_mode = upsample
        self.head = nn.Sequential(nn.Conv2d(bands, features, 9, padding=4), nn.PReLU(features))
        self.blocks = nn.Sequential(*[ResidualBlock(features) for _ in range(n_blocks)])
        self.trunk_tail = nn.Sequential(nn.Conv2d(features, features, 3, padding=1),
                                        nn.BatchNorm2d(features))
        ups: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            if upsample == "nearest":  # resize-convolution: no checkerboard by construction
                ups += [nn.Upsample(scale_factor=2, mode="nearest"),
                        nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features)]
                continue
            conv = nn.Conv2d(features, features * 4, 3, padding=1)
            icnr_(conv)
            ups += [conv, nn.PixelShuffle(2), nn.PReLU(features)]
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Conv2d(features, bands, 9, padding=4)
        #: A residual generator's output is bicubic + strength x its learned correction:
        #: 1 as trained, 0 is bicubic. Not a weight: model files record it in their metadata.
        self.strength = 1.0
        #: Inference options of a residual generator, from its model file's metadata (not
        #: weights): `adaptive` = (lo, hi) scales the correction per tile by how aliased the
        #: probe finds the tile (satsr.nn.aliasing); `zero_mean` removes each tile's mean
        #: correction per band, so the correction adds detail and never shifts a band's level.
        self.probe = AliasingProbe() if probe else None
        self.adaptive: tuple[float, float] | None = None
        #: One share of the correction for every tile, decided for a whole raster before it is
        #: upscaled (satsr.inference.decision); when set it replaces the per-tile probe.
        self.fixed_share: float | None = None
        self.zero_mean = False
        if probe and not self.residual:
            raise ValueError("an aliasing probe scales a residual generator's correction")
        if self.residual:
            nn.init.zeros_(self.tail.weight)
            assert self.tail.bias is not None
            nn.init.zeros_(self.tail.bias)

    def arch(self) -> dict[str, int | str]:
        """Constructor arguments, stored in model files to rebuild the network."""
        arch: dict[str, int | str] = {
            "bands": self.bands, "scale": self.scale, "n_blocks": self.n_blocks,
            "features": self.features, "residual": int(self.residual),
            "upsample": self.upsample_mode}
        if self.probe is not None:
            arch["probe"] = 1
        return arch

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.trunk_tail(self.blocks(h))
        return self.tail(self.upsample(h))

    def _bicubic(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._body(x)
        if not self.residual:
            return torch.tanh(out)
        return (self._bicubic(x).to(out.dtype) + self._correction(x, out)).clamp(-1.0, 1.0)

    def _correction(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The learned correction as the inference options shape it (as trained when none)."""
        if self.zero_mean:
            out = out - out.mean(dim=(-2, -1), keepdim=True)
        if self.fixed_share is not None:
            return out * (self.fixed_share * self.strength)
        if self.probe is not None and self.adaptive is not None:
            share = adaptive_weight(self.probe(x), *self.adaptive) * self.strength
            return out * share.view(-1, 1, 1, 1).to(out.dtype)
        if self.strength != 1.0:
            out = out * self.strength
        return out

    def forward_unclipped(self, x: torch.Tensor) -> torch.Tensor:
        """Inference on inputs that may leave [-1, 1] (values beyond the band scaling range).

        A residual generator upscales the input clipped to the range it was trained on
        (`forward`, exactly), then adds what the clipping removed, upsampled without
        overshoot, and the sum is not clipped: bright clouds and deep shadows keep their
        values (no saturation) and no peak grows past the input's. A plain generator's tanh
        output cannot leave [-1, 1]: it sees the clipped input.
        """
        inside = x.clamp(-1.0, 1.0)
        if not self.residual:
            return self.forward(inside)
        # The range's part is `forward`, as trained (training clamps the sum to [-1, 1], so a
        # correction past the range never met the loss: over a clipped plateau it is free
        # and grew bright halos). What lies beyond the range is added back, upsampled by
        # bicubic and held within the input's own excess (bicubic's ringing alone lifted
        # peaks by up to 8.6 % of the range on satsr-ms-x4's test chips), so no peak grows
        # past the input's.
        over = x - inside
        excess = self._bicubic(over).clamp(over.amin(dim=(-2, -1), keepdim=True),
                                           over.amax(dim=(-2, -1), keepdim=True))
        out = self.forward(inside)
        return out + excess.to(out.dtype)
