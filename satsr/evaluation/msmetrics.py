"""Metrics for multispectral super-resolution: per-band PSNR, spectral angle, consistency.

- `band_psnr`: PSNR of each band on the unit scale of the band scaling (peak-to-peak 2, so
  the band's [p0.1, p99.9] range is the peak), over every band, not only the three LPIPS sees.
- `spectral_angle`: the mean spectral angle mapper (SAM, degrees) between the per-pixel band
  vectors of SR and HR in raster units (radiance / reflectance / DN): 0 when SR keeps every
  pixel's spectral shape, whatever its brightness. Pixels whose vector is zero are skipped.
- `consistency`: how well SR, degraded back to LR by the model's own degradation, matches the
  LR it was made from, as a PSNR on the unit scale (higher is better): the "consistency" that
  Sentinel-2 SR benchmarks such as opensr-test report. A super-resolved image should explain
  its input; detail invented against the input lowers it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from satsr.evaluation.metrics import UNIT_SCALE_PEAK, psnr


def band_psnr(pred: np.ndarray, ref: np.ndarray) -> list[float]:
    """PSNR (dB) per band of (C, H, W) images on the unit scale [-1, 1] (peak 2)."""
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {ref.shape}")
    return [psnr(p, r, peak=UNIT_SCALE_PEAK) for p, r in zip(pred, ref, strict=True)]


def spectral_angle(pred: np.ndarray, ref: np.ndarray, eps: float = 1e-12) -> float:
    """Mean spectral angle (degrees) between the band vectors of (C, H, W) raster values."""
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {ref.shape}")
    if pred.shape[0] < 2:
        return math.nan  # one band has no spectral shape
    a = pred.reshape(pred.shape[0], -1).astype(np.float64)
    b = ref.reshape(ref.shape[0], -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    ok = (na > eps) & (nb > eps)
    if not ok.any():
        return math.nan
    cos = np.clip((a[:, ok] * b[:, ok]).sum(0) / (na[ok] * nb[ok]), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def consistency(sr: np.ndarray, lr: np.ndarray,
                degrade: Callable[[np.ndarray], np.ndarray]) -> float:
    """PSNR (dB, unit scale [-1, 1], peak 2, every band) between `degrade(sr)` and `lr`, both
    (C, h, w)."""
    back = degrade(sr)
    if back.shape != lr.shape:
        raise ValueError(f"degraded SR is {back.shape}, LR is {lr.shape}")
    return psnr(back, lr, peak=UNIT_SCALE_PEAK)
