"""Choosing the weights to keep: validation scores, selection criteria, a generator EMA.

Training for perceptual quality and then keeping the weights of the best validation PSNR
throws the point away (PSNR prefers blur), so `satsr train --select` chooses among
validation rounds by LPIPS:

- ``pe-l``  : mean of alex-l and vgg-l (the calibrated LPIPS variants);
- ``vgg-l``, ``alex-l``: one of them;
- ``psnr``  : the classical choice;
- ``last``  : no choice, the latest weights (satsr's behaviour before `--select`).

An optional PSNR floor keeps only rounds whose PSNR is at least bicubic's minus `floor` dB
on the same validation chips. LPIPS reads 3 bands: for other band counts it is computed on the
bands named by `rgb` (0-based), PSNR always on every band.

`GeneratorEMA` keeps an exponential moving average of the generator's weights (as ESRGAN /
BasicSR do); validation and the model file can use it instead of the raw weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from satsr.errors import SatsrError
from satsr.evaluation.metrics import UNIT_SCALE_PEAK, get_lpips, psnr_from_mse

CRITERIA = ("last", "pe-l", "vgg-l", "alex-l", "psnr")
#: LPIPS variants each criterion needs.
NEEDS: dict[str, tuple[str, ...]] = {"last": (), "pe-l": ("alex-l", "vgg-l"),
                                     "vgg-l": ("vgg-l",), "alex-l": ("alex-l",), "psnr": ()}
#: The LPIPS variants validation logs whenever it can (3 bands, weights present).
LOGGED = ("alex-l", "vgg-l")


def check_criterion(name: str) -> str:
    if name not in CRITERIA:
        raise SatsrError(f"unknown selection criterion {name!r} (choose from "
                         f"{', '.join(CRITERIA)})")
    return name


def psnr_unit(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Per-chip PSNR (dB) of [-1, 1] images, peak-to-peak 2, over every band, in float (no
    uint8 rounding): the `psnr` of val.csv. Not the `psnr` of `satsr eval`, which is on three
    bands rounded to RGB uint8 with peak 255; eval's `psnr-bN` is this quantity per band."""
    mse = ((sr.float().clamp(-1, 1) - hr.float()) ** 2).flatten(1).mean(1).double()
    return psnr_from_mse(mse.clamp_min(1e-12), peak=UNIT_SCALE_PEAK)


class ValidationScorer:
    """PSNR and the LPIPS variants a criterion needs, as means over validation chips."""

    def __init__(self, criterion: str = "psnr", rgb: Sequence[int] = (0, 1, 2),
                 weights_dir: str | None = None, device: str = "cpu",
                 extra: Sequence[str] = ()) -> None:
        self.criterion = check_criterion(criterion)
        self.rgb = list(rgb)
        names = list(dict.fromkeys([*NEEDS[criterion], *extra]))
        # fails here, before training, when the weights are missing
        self.lpips = {n: get_lpips(n, weights_dir, device) for n in names}

    def lpips_input(self, x: torch.Tensor) -> torch.Tensor:
        """The 3 bands LPIPS reads (`rgb`; (0, 0, 0) scores one band as grey)."""
        if x.shape[1] == 3 and self.rgb == [0, 1, 2]:
            return x
        if max(self.rgb) >= x.shape[1]:
            raise SatsrError(f"validation LPIPS reads bands {[b + 1 for b in self.rgb]} but "
                             f"the images have {x.shape[1]}")
        return x[:, self.rgb]

    @torch.no_grad()
    def __call__(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        """Mean scores of SR against HR (both (B, C, H, W) in [-1, 1])."""
        out = {"psnr": float(psnr_unit(sr, hr).mean())}
        a, b = self.lpips_input(sr.float().clamp(-1, 1)), self.lpips_input(hr.float())
        for name, metric in self.lpips.items():
            out[name] = float(metric(a, b).mean())
        if "alex-l" in out and "vgg-l" in out:
            out["pe-l"] = (out["alex-l"] + out["vgg-l"]) / 2
        return out


@dataclass
class Selection:
    """The best validation round so far under a criterion, with an optional PSNR floor."""

    criterion: str = "psnr"
    floor_db: float | None = None  # keep only rounds with psnr >= bicubic psnr - floor_db
    bicubic_psnr: float | None = None
    best_value: float | None = None
    best_iteration: int | None = None

    def value(self, scores: dict[str, float]) -> float:
        """Lower is better: LPIPS as is, PSNR negated (`last`: every round is the best)."""
        if self.criterion == "last":
            return -math.inf
        v = scores[self.criterion]
        return -v if self.criterion == "psnr" else v

    def eligible(self, scores: dict[str, float]) -> bool:
        if self.floor_db is None or self.bicubic_psnr is None:
            return True
        return scores["psnr"] >= self.bicubic_psnr - self.floor_db

    def offer(self, iteration: int, scores: dict[str, float]) -> bool:
        """Record a validation round; True when it is the new best (keep its weights)."""
        v = self.value(scores)
        if self.criterion == "last":
            self.best_iteration = iteration
            return True
        if not math.isfinite(v) or not self.eligible(scores):
            return False
        if self.best_value is None or v < self.best_value:
            self.best_value, self.best_iteration = v, iteration
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "floor_db": self.floor_db,
                "bicubic_psnr": self.bicubic_psnr, "best_value": self.best_value,
                "best_iteration": self.best_iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        bic, best, it = state.get("bicubic_psnr"), state.get("best_value"), state.get(
            "best_iteration")
        self.bicubic_psnr = None if bic is None else float(bic)
        self.best_value = None if best is None else float(best)
        self.best_iteration = None if it is None else int(it)


class GeneratorEMA:
    """Exponential moving average of a network's parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise SatsrError(f"EMA decay must lie in (0, 1), not {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for s, p in zip(self.shadow.parameters(), model.parameters(), strict=True):
            s.lerp_(p.detach().to(s.dtype), 1.0 - self.decay)
        for sb, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
            sb.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow.load_state_dict(state)
