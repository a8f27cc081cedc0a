"""The degradation that makes LR from HR, and the classical upsampling baselines.

Training and evaluation call the very same `downscale`, so a model is judged on the
degradation it learned to invert.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Anti-aliased bicubic downscale of a (B, C, H, W) tensor by an integer factor.

    H and W must be multiples of `scale`. Values are not clamped (callers work in [-1, 1]
    and clamp where they need to).
    """
    b, c, h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not a multiple of the scale {scale}")
    return F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic",
                         align_corners=False, antialias=True)


def upsample(lr: torch.Tensor, scale: int, method: str = "bicubic") -> torch.Tensor:
    """Classical upsampling baselines: 'bicubic' (clamped to [-1, 1]) or 'nearest'."""
    if method == "nearest":
        return F.interpolate(lr, scale_factor=scale, mode="nearest")
    if method == "bicubic":
        out = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
        return out.clamp(-1.0, 1.0)
    raise ValueError(f"unknown upsampling method {method!r} (bicubic, nearest)")
