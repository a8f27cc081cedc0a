"""Two artefact measures quoted in the bundled models' cards: periodic patterns and clipped
peaks (examples/model_eval.py reports them for every model it scores).

- `periodic_ratios`: the SR spectrum's energy at the period-2 and period-4 lattice
  frequencies of a x4 upsampler, over HR's at the same frequencies (Hann-windowed luminance:
  the mean of the shown bands; summed over chips): a checkerboard shows as a ratio well
  above 1, bicubic stays near or below 1.
- `saturation`: on band-chips whose LR holds values above the band scaling's range (unit
  values above 1), |max(SR) - max(LR)| in units of the band's range (p99.9 - p0.1; the unit
  scale spans 2), SR made from the unclipped LR: a model that clips or flattens the peaks
  beyond its training range shows here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from satsr.data.degrade import Degradation
    from satsr.evaluation.scoring import Method, Sample

#: The saturation error above which a band-chip counts in `over_0.02` (issue 12's target).
SATURATION_TOLERANCE = 0.02


def lattice_energy(grey: np.ndarray) -> tuple[float, float]:
    """Mean |FFT| of a Hann-windowed image at the period-2 and period-4 lattice frequencies."""
    h, w = grey.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    f = np.abs(np.fft.fft2((grey - grey.mean()) * win))
    p2 = [(0, w // 2), (h // 2, 0), (h // 2, w // 2)]
    p4 = [(a * h // 4, b * w // 4) for a in range(4) for b in range(4)
          if (a, b) != (0, 0) and not (a % 2 == 0 and b % 2 == 0)]
    return float(np.mean([f[p] for p in p2])), float(np.mean([f[p] for p in p4]))


def periodic_ratios(samples: Sequence[Sample], methods: Sequence[Method], rgb: Sequence[int],
                    deg: Degradation, seed: int) -> dict[str, dict[str, float]]:
    """Per method: (sum over chips of SR lattice energy) / (the same for HR), at period 2
    and 4. Each chip's LR is `deg` of its HR with draws from (seed, chip index), clamped to
    [-1, 1]; the luminance is the mean of the bands `rgb` (0-based)."""
    sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(2))
    for i, s in enumerate(samples):
        hr = torch.from_numpy(s.hr[None].astype(np.float32))
        lr = deg(hr, np.random.default_rng([seed, i])).clamp(-1.0, 1.0)
        sums["HR"] += lattice_energy(s.hr[list(rgb)].mean(0))
        for m in methods:
            sr = m.run(lr).float().numpy()[0]
            sums[m.name] += lattice_energy(sr[list(rgb)].mean(0))
    return {m.name: {"period2": float(sums[m.name][0] / sums["HR"][0]),
                     "period4": float(sums[m.name][1] / sums["HR"][1])} for m in methods}


def bicubic_unclipped(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by `scale`, values beyond [-1, 1] kept (the saturation baseline)."""
    return torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic",
                                           align_corners=False)


def saturation(units: Sequence[np.ndarray], upscale: Callable[[torch.Tensor], torch.Tensor],
               scale: int) -> dict[str, Any]:
    """|max(SR) - max(LR)| per band in units of the band's range (p99.9 - p0.1), on chips
    whose bicubic-downscaled LR exceeds the range. `units` are (C, H, W) HR chips on the
    unclipped unit scale; SR by `upscale` (a model's forward_unclipped, or bicubic_unclipped)
    of each band alone, (1, 1, h, w). Returns the count of such band-chips, the worst error
    and how many exceed SATURATION_TOLERANCE."""
    from satsr.data.degrade import downscale

    worst, count, over = 0.0, 0, 0
    for u in units:
        lr = downscale(torch.from_numpy(u[None].astype(np.float32)), scale)[0]
        for b in range(lr.shape[0]):
            if float(lr[b].max()) <= 1.0:
                continue
            with torch.inference_mode():
                sr = upscale(lr[b][None, None])[0, 0]
            err = abs(float(sr.max()) - float(lr[b].max())) / 2.0  # unit range spans 2
            worst, count = max(worst, err), count + 1
            over += err > SATURATION_TOLERANCE
    return {"band_chips_above_range": count, "worst": worst, "over_0.02": over}
