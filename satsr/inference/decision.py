"""One correction share per raster: what a residual model with an aliasing probe decides from
samples of the whole input before it upscales any tile.

A raster's history is a property of the raster, not of a tile: a reprojection with nearest
resampling, or JPEG compression, touched all of it. Deciding per tile (satsr.nn.aliasing)
misreads some tiles either way: a decimated tile with little texture looks anti-aliased and
is sharpened (outlines drawn), a sharp clean tile looks aliased and is left at bicubic, and
the output becomes a patchwork of corrected and uncorrected tiles. Pooling the evidence of
many tiles is steadier:

- aliasing: the median of the probe's p over the sampled tiles that are not flat; the share
  is `adaptive_weight(median, lo, hi)` with the model's thresholds;
- JPEG: the mean absolute step across the 8-pixel block boundaries of the JPEG grid (the
  grid starts at the raster's origin, so the sampled tiles start at multiples of 8) over the
  mean step everywhere else, pooled over all the sampled tiles, in 8-bit units of the grey
  (mean of the bands). Clean and resampled rasters read about 1 (0.94-1.05 on the shared
  sources); JPEG-coded ones (quality 50-90) 1.10-1.31. Above JPEG_GRID_RATIO the model's
  `jpeg_share` is kept instead. The ratio is read only when the sample holds at least
  JPEG_MIN_BOUNDARY boundary pixels: a single small image is not evidence enough. Many
  deliveries are JPEG-coded at their native resolution (the Manila and Netherlands
  orthophotos read 1.21 and 1.25): a `jpeg_share` below 1 takes the correction from all of
  them, which is why the bundled satsr-rgb-x4 does not set one.

A model file opts in with `adaptive_scope: "raster"` (and optionally `jpeg_share`); the
decision is recorded in the output's tags. `satsr eval` runs each image through the model
whole, so there the probe reads each image as one tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from satsr.nn.aliasing import adaptive_weight, flat_tiles

#: Block side of the JPEG grid, in input pixels.
JPEG_BLOCK = 8
#: Grid-boundary step over the other steps above which a raster is read as JPEG-coded.
JPEG_GRID_RATIO = 1.07
#: Boundary pixels (both axes) the sample must hold before the JPEG ratio is read: about 31
#: tiles of 64 x 64 input pixels (896 boundary pixels each), which `satsr upscale` samples
#: from rasters of about 384 x 384 px and more.
#: On the train split of the shared 8-bit sources, 32 tiles drawn at random read 0.90-1.08
#: clean or resampled, and 1.02-1.31 JPEG-coded (quality 50-90); 1.07 separates them except
#: on the smoothest (Landsat 7 at 300 m, Colorado): there a JPEG raster may be missed, or,
#: rarely, a clean one read as JPEG.
JPEG_MIN_BOUNDARY = 28_000
#: Tiles sampled from a raster for the decision, and their side in input pixels.
SAMPLE_TILES = 64
SAMPLE_SIDE = 64
SCOPES = ("raster", "tile", "off")


@dataclass(frozen=True)
class Decision:
    """A raster's correction share and the evidence behind it."""

    share: float
    p_median: float | None  # None: every sampled tile was flat
    jpeg_ratio: float | None  # None: too few boundary pixels in the sample
    reason: str  # "clean", "aliased", "partly aliased", "jpeg", "flat"

    def tag(self) -> str:
        """The decision as recorded in an output's tags."""
        p = "n/a" if self.p_median is None else f"{self.p_median:.3f}"
        j = "n/a" if self.jpeg_ratio is None else f"{self.jpeg_ratio:.3f}"
        return f"{self.reason}; share {self.share:g}; probe median {p}; jpeg grid {j}"


def jpeg_grid_ratio(tiles: torch.Tensor) -> tuple[float, int]:
    """(grid-boundary step / other steps, boundary pixels counted) for (N, C, H, W) tiles in
    [-1, 1] whose origins sit on the JPEG grid (multiples of JPEG_BLOCK from the raster's
    origin). Steps are absolute differences of neighbouring grey values in 8-bit units."""
    g = torch.round((tiles.float().clamp(-1.0, 1.0) + 1.0) * 127.5).mean(dim=1)
    boundary = other = 0.0
    n_boundary = n_other = 0
    for d in ((g[..., :, 1:] - g[..., :, :-1]).abs(),
              (g[..., 1:, :] - g[..., :-1, :]).abs().transpose(-1, -2)):
        on = torch.arange(d.shape[-1]) % JPEG_BLOCK == JPEG_BLOCK - 1
        boundary += float(d[..., on].sum())
        other += float(d[..., ~on].sum())
        n_boundary += int(d[..., on].numel())
        n_other += int(d[..., ~on].numel())
    if n_boundary == 0 or other == 0.0:  # no steps off the grid: all on it, or none at all
        return (math.inf if boundary > 0.0 else 1.0), n_boundary
    return (boundary / n_boundary) / (other / n_other), n_boundary


def decide(probe: torch.nn.Module, tiles: torch.Tensor, adaptive: tuple[float, float],
           jpeg_share: float | None) -> Decision:
    """The share for a raster sampled as `tiles` (N, C, H, W in [-1, 1], origins on the JPEG
    grid), from the aliasing `probe` with thresholds `adaptive` and, when `jpeg_share` is not
    None, the JPEG grid check (the ratio is measured and returned in any case)."""
    r, n = jpeg_grid_ratio(tiles)  # recorded either way; acted on with a jpeg_share
    ratio = r if n >= JPEG_MIN_BOUNDARY else None
    busy = ~flat_tiles(tiles)
    p_median = None
    if bool(busy.any()):
        with torch.no_grad():
            p = probe(tiles[busy].float())
        p_median = float(p.median())
    if ratio is not None and jpeg_share is not None and ratio >= JPEG_GRID_RATIO:
        return Decision(float(jpeg_share), p_median, ratio, "jpeg")
    if p_median is None:
        return Decision(1.0, None, ratio, "flat")
    share = float(adaptive_weight(torch.tensor(p_median), *adaptive))
    reason = "clean" if share == 1.0 else "aliased" if share == 0.0 else "partly aliased"
    return Decision(share, p_median, ratio, reason)


def check_scope(value: object) -> str:
    """A model file's `adaptive_scope` record."""
    if value in ("raster", "tile"):
        return str(value)
    raise ValueError(f"adaptive_scope = {value!r}, expected 'raster' or 'tile'")


def check_share(value: object, what: str = "jpeg_share") -> float:
    """A share of the correction: a number in [0, 1]."""
    if type(value) in (int, float) and 0.0 <= float(value) <= 1.0:  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    raise ValueError(f"{what} = {value!r}, expected a number in [0, 1]")
