"""The inference tile grid and its blend weights (used by `satsr upscale` and eval).

Tiles
-----
Along each axis of length L (input pixels), `n = ceil((L - overlap) / (tile - overlap))`
tiles of one common size `size = ceil((L - overlap) / n) + overlap <= tile` are spread evenly
from 0 to L - size, so the first tile starts on the raster's first pixel, the last one ends on
its last pixel, every pair of neighbours shares at least `overlap` pixels, and all tiles of a
raster have the same shape (one batch can hold any of them). Spreading the slack over all
tiles, rather than squeezing a last tile against the edge, keeps the computed area at or
below the ideal `tile^2 / (tile - overlap)^2` times the raster's area. The stride
`tile - overlap` must be at least MIN_STRIDE (16) input pixels: a finer grid multiplies the
work (a 1 px stride runs one tile per input pixel) and gains nothing.

Blend weights
-------------
Weights live at output resolution and are separable: w(y, x) = wy(y) * wx(x). On each border
shared by two tiles (an overlap of `ov` input pixels) the left/top tile's weight falls and the
right/bottom tile's weight rises with complementary raised-cosine (Hann) ramps, so the weights
of every pixel sum to exactly 1 (a partition of unity) and the blend is smooth. Each side of the
shared strip first keeps a *dead margin* where the tile whose border it is has weight 0: those
output pixels saw the tile's zero padding and are the least trustworthy.

* `ov >= 2 r + 1` (r = the model's receptive radius, see `receptive_radius`): margin = r, so
  every pixel with non-zero weight is exactly what a whole-image forward pass computes: the
  tiled output equals the whole-image output up to float rounding.
* smaller overlaps: margin = ov // 4 and the ramp spans the middle half of the strip, a
  compromise between dropping the worst border pixels and a wide crossfade that hides seams.

There is no ramp (weight 1 up to the edge) on sides that lie on the raster's own edges: the
model saw the same zero padding there that a whole-image pass would.

Receptive field
---------------
`receptive_radius` walks a model's layers in order and adds each convolution's half-width in
input pixels (half-widths after a pixel shuffle count 1/f of an input pixel). For the SRResNet
generator at scale 4 that is 4 (9x9 head) + 2 per residual block + 1 (trunk tail) + 1 + 1/2
(the two 3x3 upsampling convs) + 1 (9x9 tail at 4x) = 2 n_blocks + 7.5, rounded up, plus one
pixel for the pixel-shuffle sub-pixel offsets: 29 input pixels for the default 10 blocks, 43 for
16 blocks, 13 for 2 blocks. `--overlap 2r+1` (59 for 10 blocks) thus makes tiling exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from satsr.errors import SatsrError


def receptive_radius(model: nn.Module) -> int:
    """Input pixels on each side of an output pixel's source pixel that can change it.

    Sums conv half-widths along the model's layers in registration order (true forward order
    for satsr's Generator; skip connections never widen the field), scaled by the resolution
    each conv runs at, rounded up, plus one input pixel for pixel-shuffle offsets.
    """
    radius = 0.0
    res = 1.0  # resolution of the current layer relative to the input
    shuffles = False
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            k, d = m.kernel_size[0], m.dilation[0]
            radius += (k // 2) * d / res
        elif isinstance(m, nn.PixelShuffle):
            res *= m.upscale_factor
            shuffles = True
        elif (isinstance(m, nn.Upsample) and m.mode == "nearest" and m.size is None
              and isinstance(m.scale_factor, int | float)
              and float(m.scale_factor).is_integer()):
            res *= float(m.scale_factor)
            shuffles = True  # the same sub-pixel offsets as a pixel shuffle
        elif isinstance(m, nn.Upsample | nn.ConvTranspose2d):
            raise ValueError(f"receptive_radius does not handle {type(m).__name__}")
    if getattr(model, "residual", False):
        radius = max(radius, 2.0)  # the bicubic base reads 2 input pixels on each side
    return int(math.ceil(radius)) + (1 if shuffles else 0)


#: Smallest tile stride (tile - overlap, input pixels) accepted: below it the tile count, and
#: the run time, explode (a 1 px stride runs a tile per input pixel) for no gain in quality.
MIN_STRIDE = 16


def check_tiling(tile: int, overlap: int, tile_name: str = "tile",
                 overlap_name: str = "overlap") -> None:
    """Refuse a tile size / overlap pair that is invalid or would tile absurdly finely.

    `tile_name` and `overlap_name` name the two values in the message (the CLI passes its flags).
    """
    if tile < 1:
        raise SatsrError(f"{tile_name} must be a positive number of pixels, not {tile}")
    if overlap < 0:
        raise SatsrError(f"{overlap_name} must be 0 or more pixels, not {overlap}")
    if tile - overlap < MIN_STRIDE:
        raise SatsrError(f"{tile_name} {tile} with {overlap_name} {overlap} leaves a tile "
                         f"stride of {tile - overlap} px (tile minus overlap); it must be at "
                         f"least {MIN_STRIDE} px: raise the tile or lower the overlap")


def axis_tiles(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """(starts, size) of the tiles along one axis of `length` input pixels (see module doc)."""
    check_tiling(tile, overlap)
    if length <= tile:
        return [0], length
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length - overlap) / n) + overlap
    starts = [round(i * (length - size) / (n - 1)) for i in range(n)]
    return starts, size


def dead_margin(overlap: int, radius: int) -> int:
    """Input pixels at a shared border where the border's own tile gets weight 0."""
    if overlap >= 2 * radius + 1:
        return radius
    return overlap // 4


def _rise(n: int) -> np.ndarray:
    """Raised-cosine ramp of n samples strictly inside (0, 1); rise + reversed rise == 1."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.sin(0.5 * np.pi * t) ** 2


def axis_weights(starts: list[int], size: int, scale: int, radius: int) -> list[np.ndarray]:
    """Per-tile 1-D blend weights at output resolution (float32, `size * scale` samples each)."""
    n_out = size * scale
    weights = [np.ones(n_out, np.float64) for _ in starts]
    for i in range(len(starts) - 1):
        a, b = starts[i + 1], starts[i] + size  # shared strip [a, b) in input pixels
        ov = b - a
        m = dead_margin(ov, radius)
        ramp = _rise((ov - 2 * m) * scale)
        lo, hi = (a + m) * scale, (b - m) * scale  # ramp span, output pixels
        left, right = weights[i], weights[i + 1]
        off_l, off_r = starts[i] * scale, starts[i + 1] * scale
        left[lo - off_l:hi - off_l] *= ramp[::-1]
        left[hi - off_l:] = 0.0
        right[lo - off_r:hi - off_r] *= ramp
        right[:lo - off_r] = 0.0
    return [w.astype(np.float32) for w in weights]


@dataclass(frozen=True)
class TileGrid:
    """Overlapping inference tiles over a (height, width) input and their blend weights."""

    height: int
    width: int
    scale: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    tile_h: int
    tile_w: int
    wy: tuple[np.ndarray, ...]
    wx: tuple[np.ndarray, ...]
    sum_y: np.ndarray
    sum_x: np.ndarray

    @classmethod
    def build(cls, height: int, width: int, scale: int, tile: int, overlap: int,
              radius: int) -> TileGrid:
        """The grid for an input of height x width pixels (see the module docstring)."""
        ys, th = axis_tiles(height, tile, overlap)
        xs, tw = axis_tiles(width, tile, overlap)
        wy = axis_weights(ys, th, scale, radius)
        wx = axis_weights(xs, tw, scale, radius)
        return cls(height, width, scale, tuple(ys), tuple(xs), th, tw, tuple(wy), tuple(wx),
                   _axis_sum(ys, th, scale, wy, height), _axis_sum(xs, tw, scale, wx, width))

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def computed_pixels(self) -> int:
        """Input pixels the model processes (tiles included their overlaps)."""
        return self.count * self.tile_h * self.tile_w


def _axis_sum(starts: list[int], size: int, scale: int, weights: list[np.ndarray],
              length: int) -> np.ndarray:
    """Sum of every tile's weight at each output sample of an axis (1 up to rounding)."""
    total = np.zeros(length * scale, np.float32)
    for s, w in zip(starts, weights, strict=True):
        total[s * scale:(s + size) * scale] += w
    return total
