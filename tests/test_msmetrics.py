"""Multispectral metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from satsr.data.degrade import downscale, upsample
from satsr.evaluation.msmetrics import band_psnr, consistency, spectral_angle


def test_band_psnr_per_band_on_the_unit_scale() -> None:
    ref = np.zeros((3, 4, 4))
    pred = ref.copy()
    pred[0] += 0.2  # mse 0.04 -> 10 log10(4 / 0.04) = 20 dB
    pred[1, 0, 0] = 2.0  # mse 4 / 16 = 0.25 -> 10 log10(16) = 12.04 dB
    got = band_psnr(pred, ref)
    assert got[0] == pytest.approx(20.0)
    assert got[1] == pytest.approx(10 * math.log10(16))
    assert got[2] == math.inf


def test_spectral_angle_ignores_brightness_and_measures_shape() -> None:
    ref = np.ones((2, 3, 3))
    assert spectral_angle(ref * 5, ref) == pytest.approx(0.0, abs=1e-5)
    pred = np.stack([np.ones((3, 3)), np.zeros((3, 3))])  # (1, 0) vs (1, 1): 45 degrees
    assert spectral_angle(pred, ref) == pytest.approx(45.0)
    zero = ref.copy()
    zero[:, 0, 0] = 0  # skipped pixel
    assert spectral_angle(pred, zero) == pytest.approx(45.0)
    assert math.isnan(spectral_angle(ref[:1], ref[:1]))


def test_consistency_of_bicubic_and_of_noise() -> None:
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    lr = downscale(hr, 4)[0].numpy()

    def deg(x: np.ndarray) -> np.ndarray:
        return downscale(torch.from_numpy(x)[None], 4)[0].numpy()

    up = upsample(torch.from_numpy(lr)[None], 4)[0].numpy()
    noisy = up + np.random.default_rng(0).normal(0, 0.3, up.shape)
    assert consistency(hr[0].numpy(), lr, deg) == math.inf
    assert consistency(up, lr, deg) > consistency(noisy, lr, deg) + 3
