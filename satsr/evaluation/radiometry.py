"""Radiometric honesty of a super-resolved image: band levels kept, no grain added.

Both measures take images on the band scaling's unit scale ([-1, 1] spans a band's range, so
one unit is half the range) as (C, H, W) arrays:

- `band_bias`: per band, mean(SR) - mean(LR), as a fraction of the band's range. An SR image
  averaged back by the scale should give the LR image; its band means are then the LR's (an
  area average keeps the mean), so this is the level shift the method adds. For 8-bit bands,
  x 255 gives DN.
- `flat_grain`: the high-frequency energy (image less its Gaussian blur, sigma 1 px) of SR
  over HR's, on HR's flat blocks (8x8 px whose standard deviation is under FLAT_STD of the
  range): above 1 the method adds texture where the scene is smooth; bicubic stays below.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: A block is flat when its standard deviation (on the unit scale) is under this: 1 % of
#: the band's range (2.5 DN for 8-bit bands).
FLAT_STD = 0.02
BLOCK = 8


def band_bias(lr: np.ndarray, sr: np.ndarray) -> np.ndarray:
    """Per band: mean(SR) - mean(LR), in fractions of the band's range."""
    return (sr.astype(np.float64).mean(axis=(1, 2)) - lr.astype(np.float64).mean(axis=(1, 2))) / 2


def flat_mask(hr: np.ndarray) -> np.ndarray:
    """(H // BLOCK, W // BLOCK) True where HR's grey is flat within every block."""
    g = hr.astype(np.float64).mean(axis=0)
    h, w = (g.shape[0] // BLOCK) * BLOCK, (g.shape[1] // BLOCK) * BLOCK
    blocks = g[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    return blocks.std(axis=(1, 3)) < FLAT_STD


def _hf_energy(img: np.ndarray, mask: np.ndarray) -> float:
    g = img.astype(np.float64).mean(axis=0)
    hf = (g - ndimage.gaussian_filter(g, 1.0, mode="reflect")) ** 2
    h, w = mask.shape[0] * BLOCK, mask.shape[1] * BLOCK
    blocks = hf[:h, :w].reshape(mask.shape[0], BLOCK, mask.shape[1], BLOCK).mean(axis=(1, 3))
    return float(blocks[mask].mean())


def flat_grain(hr: np.ndarray, sr: np.ndarray) -> tuple[float, float, int]:
    """(SR's high-frequency energy on HR's flat blocks, HR's, number of flat blocks);
    (nan, nan, 0) without flat blocks."""
    mask = flat_mask(hr)
    n = int(mask.sum())
    if n == 0:
        return float("nan"), float("nan"), 0
    return _hf_energy(sr, mask), _hf_energy(hr, mask), n
