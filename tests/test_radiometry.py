"""Radiometric honesty measures (satsr.evaluation.radiometry)."""

from __future__ import annotations

import numpy as np

from satsr.evaluation.radiometry import BLOCK, FLAT_STD, band_bias, flat_grain, flat_mask


def test_band_bias_is_the_level_shift_in_fractions_of_the_range() -> None:
    rng = np.random.default_rng(0)
    lr = rng.uniform(-0.5, 0.5, (3, 16, 16))
    sr = np.repeat(np.repeat(lr, 4, axis=1), 4, axis=2) + np.array([0.1, 0.0, -0.02])[:, None,
                                                                                       None]
    bias = band_bias(lr, sr)
    # float64 means of 256 and 4096 terms: error far below 1e-12 at these magnitudes
    assert np.allclose(bias, [0.05, 0.0, -0.01], atol=1e-12, rtol=0)


def test_flat_blocks_are_those_under_the_threshold() -> None:
    hr = np.zeros((3, 2 * BLOCK, 2 * BLOCK))
    hr[:, :BLOCK, :BLOCK] = np.random.default_rng(1).normal(0, 5 * FLAT_STD, (3, BLOCK, BLOCK))
    mask = flat_mask(hr)
    assert mask.tolist() == [[False, True], [True, True]]


def test_grain_added_on_flat_ground_shows_as_more_high_frequency_energy() -> None:
    rng = np.random.default_rng(2)
    hr = rng.normal(0, 0.002, (3, 64, 64))  # a smooth, faintly noisy surface: all flat
    same = flat_grain(hr, hr)
    assert same[0] == same[1] and same[2] == 64
    grainy = flat_grain(hr, hr + rng.normal(0, 0.02, hr.shape))  # ~30x the energy
    assert grainy[0] > 10 * grainy[1]


def test_an_image_without_flat_blocks_has_no_grain_measure() -> None:
    hr = np.random.default_rng(3).uniform(-1, 1, (3, 16, 16))
    g_sr, g_hr, n = flat_grain(hr, hr)
    assert n == 0 and np.isnan(g_sr) and np.isnan(g_hr)
