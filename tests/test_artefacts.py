"""The periodic-artefact and saturation measures of the bundled models' cards
(satsr.evaluation.artefacts), called directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch

from satsr.data.degrade import Degradation, downscale
from satsr.data.scaling import BandScaling
from satsr.evaluation.artefacts import (
    bicubic_unclipped,
    lattice_energy,
    periodic_ratios,
    saturation,
)
from satsr.evaluation.scoring import Method, Sample, classical_method


def _hr(shared: Path) -> np.ndarray:
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        return BandScaling.for_uint8(3).to_unit(ds.read([1, 2, 3], window=((0, 128), (0, 128))))


def test_periodic_measure_flags_a_checkerboard_and_not_bicubic(shared: Path) -> None:
    hr = _hr(shared)
    bic = classical_method("bicubic", 4)
    period4 = torch.tensor([1.0, -1.0, 1.0, -1.0])[:, None] * torch.tensor(
        [1.0, 1.0, -1.0, -1.0])[None, :]
    board = period4.repeat(32, 32) * 0.05

    def checker(lr: torch.Tensor) -> torch.Tensor:
        return bic.run(lr) + board

    res = periodic_ratios([Sample("a", hr)], [bic, Method("checker", checker)], [0, 1, 2],
                          Degradation.resolve("bicubic", 4), 0)
    assert res["bicubic"]["period2"] < 1.5 and res["bicubic"]["period4"] < 1.5
    assert res["checker"]["period2"] > 1.5 or res["checker"]["period4"] > 1.5
    assert np.isfinite([v for r in res.values() for v in r.values()]).all()


def test_lattice_energy_sees_the_lattice_frequencies() -> None:
    y, x = np.mgrid[0:64, 0:64]
    smooth = np.sin(x / 9.0) + np.cos(y / 7.0)
    p2, p4 = lattice_energy(smooth)
    q2, _ = lattice_energy(smooth + 0.5 * (-1.0) ** (x + y))  # period-2 checkerboard
    _, r4 = lattice_energy(smooth + 0.5 * np.cos(np.pi * x / 2))  # period 4 along x
    assert q2 > 100 * p2 and r4 > 100 * p4


def test_saturation_of_a_clipping_upscaler_and_of_one_that_keeps_peaks() -> None:
    rng = np.random.default_rng(0)
    chips = [rng.uniform(-0.5, 0.5, (2, 32, 32)).astype(np.float32) for _ in range(3)]
    chips[0][0, 8:16, 8:16] = 1.8  # a bright patch beyond the range in band 1 of chip 0
    chips[2][1, :8, :8] = 1.4

    def nearest(x: torch.Tensor) -> torch.Tensor:  # keeps every LR value: no error
        return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")

    def clipping(x: torch.Tensor) -> torch.Tensor:
        return nearest(x).clamp(-1, 1)

    kept = saturation(chips, nearest, 4)
    assert kept == {"band_chips_above_range": 2, "worst": 0.0, "over_0.02": 0}
    clipped = saturation(chips, clipping, 4)
    assert clipped["band_chips_above_range"] == 2 and clipped["over_0.02"] == 2
    lr_max = float(downscale(torch.from_numpy(chips[0][None]), 4)[0, 0].max())
    assert lr_max > 1.2
    assert abs(clipped["worst"] - (lr_max - 1) / 2) < 1e-6  # the unit scale spans 2
    bic = saturation(chips, lambda x: bicubic_unclipped(x, 4), 4)
    assert bic["band_chips_above_range"] == 2 and 0.0 <= bic["worst"] < 0.4
