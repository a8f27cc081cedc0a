"""One PSNR (satsr.evaluation.metrics.psnr_from_mse) for eval's uint8 `psnr`, eval's per-band
and consistency PSNR on the unit scale, and training's val.csv PSNR: each caller keeps its own
inputs and peak, and its numbers are those of the formula it used before."""

from __future__ import annotations

import math

import numpy as np
import torch

from satsr.evaluation.metrics import (
    UINT8_PEAK,
    UNIT_SCALE_PEAK,
    classical,
    psnr,
    psnr_from_mse,
    to_uint8,
)
from satsr.evaluation.msmetrics import band_psnr, consistency
from satsr.training.selection import psnr_unit


def _images(seed: int, shape: tuple[int, ...] = (3, 40, 36)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, shape).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.05 * (1 + seed % 4), shape), -1, 1).astype(np.float32)
    return a, b


def _old_eval_psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """satsr.evaluation.metrics.psnr before the merge, verbatim."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))


def _old_unit_psnr(mse: float) -> float:
    """satsr.evaluation.msmetrics._psnr before the merge, verbatim (math.log10)."""
    return math.inf if mse <= 0 else 10.0 * math.log10(4.0 / mse)


def _old_psnr_unit(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """satsr.training.selection.psnr_unit before the merge, verbatim."""
    mse = ((sr.float().clamp(-1, 1) - hr.float()) ** 2).flatten(1).mean(1).double()
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def test_eval_psnr_on_uint8_rgb_is_unchanged() -> None:
    for seed in range(12):
        a, b = _images(seed)
        pu8, ru8 = to_uint8(a), to_uint8(b)
        assert classical(a, b, ["psnr"])["psnr"] == _old_eval_psnr(pu8, ru8)
        assert psnr(pu8, ru8, peak=UINT8_PEAK) == _old_eval_psnr(pu8, ru8)
    same = to_uint8(_images(0)[0])
    assert psnr(same, same, peak=UINT8_PEAK) == math.inf


def test_band_psnr_and_consistency_keep_their_numbers() -> None:
    """Same MSEs as before; the log is numpy's now (it was math.log10), which SIMD builds may
    round one unit in the last place differently: equal to within 2 ulp, every one."""
    for seed in range(12):
        a, b = _images(seed, (5, 24, 20))
        diff = a.astype(np.float64) - b.astype(np.float64)
        old = [_old_unit_psnr(float(np.mean(d * d))) for d in diff]
        new = band_psnr(a, b)
        assert len(new) == 5
        for x, y in zip(new, old, strict=True):
            assert abs(x - y) <= 2 * math.ulp(y)
        back = a[:, ::4, ::4]
        lr = b[:, ::4, ::4]
        d = back.astype(np.float64) - lr.astype(np.float64)
        want = _old_unit_psnr(float(np.mean(d * d)))
        got = consistency(a, lr, lambda x: x[:, ::4, ::4])
        assert abs(got - want) <= 2 * math.ulp(want)
    assert band_psnr(a, a) == [math.inf] * 5


def test_val_psnr_is_unchanged_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(3)
    hr = torch.rand(6, 4, 16, 16, generator=g) * 2 - 1
    sr = hr + 0.1 * torch.randn(6, 4, 16, 16, generator=g)
    sr[2] = hr[2]  # an exact chip: clamped MSE, finite PSNR
    assert torch.equal(psnr_unit(sr, hr), _old_psnr_unit(sr, hr))
    assert psnr_unit(sr, hr).dtype == torch.float64 and math.isfinite(float(psnr_unit(sr, hr)[2]))


def test_one_formula_three_quantities() -> None:
    """The three PSNRs are one formula with different inputs and peaks, so different numbers."""
    a, b = _images(5)
    mse_unit = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    assert psnr_from_mse(mse_unit, UNIT_SCALE_PEAK) == psnr(a, b, peak=UNIT_SCALE_PEAK)
    val = float(psnr_unit(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0])
    assert abs(val - psnr(a, b, peak=UNIT_SCALE_PEAK)) < 1e-4  # float32 MSE vs float64
    eval_psnr = classical(a, b, ["psnr"])["psnr"]
    assert abs(eval_psnr - val) > 1e-3  # uint8 rounding makes eval's another quantity
    assert psnr_from_mse(0.0, UINT8_PEAK) == math.inf
    assert psnr_from_mse(1.0, 10.0) == 20.0
