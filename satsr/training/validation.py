"""Validation of a training run: the fixed val LR, the scorer, bicubic's scores, the rounds.

A `Validator` belongs to one Trainer (satsr.training.loop): it degrades the val crops once
with a fixed seed, scores the generator (its EMA with --ema) on them every round, offers the
scores to the run's Selection and keeps the weights of the best round.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from satsr.data.crops import load_val
from satsr.data.degrade import upsample
from satsr.data.index import DatasetIndex
from satsr.data.scaling import BandScaling
from satsr.errors import MissingWeightsError, SatsrError
from satsr.evaluation.metrics import LPIPS_MIN_SIZE, lpips_unavailable
from satsr.nn.distributed import DistInfo
from satsr.training.config import TrainConfig
from satsr.training.gcn import GCNModel
from satsr.training.rundir import RunDir
from satsr.training.selection import (
    LOGGED,
    NEEDS,
    Selection,
    ValidationScorer,
    psnr_unit,
)

#: Seed stream of the fixed val LR's random draws.
_VAL_DEG_STREAM = 0xDE7
#: Val chips per generator pass (at least the batch size): a 48-chip validation is one pass on a
#: GPU; the CPU keeps its activations smaller.
VAL_BATCH = {"cuda": 48, "cpu": 16}


class Validator:
    """The validation of one training run.

    The constructor reads and writes nothing (a resumed checkpoint may then restore
    best_state, best_scores and baseline); `load` reads the val crops and makes the scorer.
    """

    def __init__(self, cfg: TrainConfig, model: GCNModel, selection: Selection,
                 rundir: RunDir, dist: DistInfo, device: torch.device) -> None:
        self.cfg, self.model, self.selection = cfg, model, selection
        self.rundir, self.dist, self.device = rundir, dist, device
        self.best_state: dict[str, torch.Tensor] | None = None  # weights of the best val round
        self.best_scores: dict[str, float] | None = None
        self.baseline: dict[str, float] | None = None  # bicubic's val scores
        self.val_hr: torch.Tensor = torch.empty(0)
        self.val_chips: list[Path] = []
        self._val_lr: torch.Tensor | None = None
        self._val_dev: tuple[torch.Tensor, torch.Tensor] | None = None
        self.scorer: ValidationScorer | None = None

    def load(self, index: DatasetIndex, val_chips: list[Path], bands: int,
             scaling: BandScaling, chip_hw: tuple[int, int]) -> None:
        """Read the val crops (rank 0, when the run validates) and make the scorer."""
        cfg = self.cfg
        self.index, self.val_chips, self.bands = index, val_chips, bands
        self.val_hr = (load_val(val_chips, scaling, cfg.hr_size, cfg.val_chips, chip_hw)
                       if self.dist.is_writer and cfg.val_every else torch.empty(0))
        self._val_lr = None
        self._val_dev = None
        self.scorer = self._make_scorer()

    @property
    def iteration(self) -> int:
        """Iterations trained so far (the model counts them)."""
        return self.model.iteration

    def _make_scorer(self) -> ValidationScorer | None:
        """Validation scores: PSNR, plus LPIPS alex-l / vgg-l where they can be computed.

        A criterion that needs LPIPS is refused here, before anything is written, when the
        run cannot validate, the data has fewer than 3 bands, the crops are too small or the
        weights are missing (that error names the file and folder).
        """
        cfg = self.cfg
        needs = NEEDS[cfg.select]
        if needs or cfg.select == "psnr":
            why = ("val_every is 0" if not cfg.val_every else
                   f"dataset {self.index.root} has no val chips" if not self.val_chips else "")
            if why:
                raise SatsrError(f"select {cfg.select} needs validation, but {why}",
                                 option=("select", "val_every"))
        if needs and self.bands == 2:
            raise SatsrError(f"select {cfg.select} scores LPIPS on 3 bands (or on one, as "
                             f"grey); this dataset has {self.bands} (use select psnr)",
                             option="select")
        if needs and cfg.hr_size < LPIPS_MIN_SIZE:
            raise SatsrError(f"select {cfg.select} needs hr_size >= {LPIPS_MIN_SIZE} (LPIPS "
                             f"trunks), not {cfg.hr_size}", option=("select", "hr_size"))
        missing = lpips_unavailable(needs, cfg.lpips_weights)
        if missing:
            name, reason = next(iter(missing.items()))
            raise MissingWeightsError(f"select {cfg.select} needs LPIPS {name}: {reason}",
                                      option="select")
        if not (self.dist.is_writer and cfg.val_every and self.val_chips):
            return None
        extra: tuple[str, ...] = ()
        if self.bands != 2 and cfg.hr_size >= LPIPS_MIN_SIZE and not lpips_unavailable(
                LOGGED, cfg.lpips_weights):
            extra = LOGGED
        rgb = (0, 1, 2) if self.bands >= 3 else (0, 0, 0)  # one band: LPIPS of it as grey
        return ValidationScorer(cfg.select, rgb, cfg.lpips_weights, str(self.device),
                                extra=extra)

    def val_lr(self) -> torch.Tensor:
        """The val crops degraded once, with a fixed seed: every round scores the same LR."""
        if self._val_lr is None:
            rng = np.random.default_rng([self.cfg.seed, _VAL_DEG_STREAM])
            with torch.no_grad():
                self._val_lr = self.model.degradation(self.val_hr, rng).clamp_(-1.0, 1.0)
        return self._val_lr

    def _val_on_device(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The val LR and HR crops on the training device (moved there once a run)."""
        if self._val_dev is None:
            self._val_dev = (self.val_lr().to(self.device), self.val_hr.to(self.device))
        return self._val_dev

    def _scores(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        if self.scorer is not None:
            return self.scorer(sr, hr)
        return {"psnr": float(psnr_unit(sr, hr).mean())}

    def _baseline_scores(self) -> dict[str, float]:
        """Bicubic's scores on the val crops (the reference of psnr_floor), once a run."""
        if self.baseline is None:
            up = upsample(self.val_lr(), self.cfg.scale, "bicubic")
            self.baseline = self._scores(up, self.val_hr)
            self.selection.bicubic_psnr = self.baseline["psnr"]
            self.rundir.write_baseline(self.baseline)
        return self.baseline

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Score the generator (its EMA with --ema) on the val crops: PSNR (peak-to-peak 2 in
        [-1, 1]), L2 (MSE) and LPIPS alex-l / vgg-l / pe-l where available; keep the weights
        of the best round by --select; write a row of val.csv and a PNG."""
        if not self.dist.is_writer or len(self.val_hr) == 0:
            return None
        self._baseline_scores()
        m = self.model
        model = m.G if m.ema is None else m.ema.shadow
        was_training = model.training
        model.eval()
        srs = []
        lr_all, hr_all = self._val_on_device()
        try:
            step = max(self.cfg.batch_size, VAL_BATCH.get(self.device.type, 16))
            for i in range(0, len(hr_all), step):
                lr = lr_all[i:i + step]
                if m.channels_last:
                    lr = lr.contiguous(memory_format=torch.channels_last)
                with m.autocast():
                    sr = model(lr)
                srs.append(sr.float().clamp(-1, 1))
        finally:
            model.train(was_training)
        sr_all = torch.cat(srs)  # scored where it was made: no round trip through the host
        scores = self._scores(sr_all, hr_all)
        rec = {"iteration": self.iteration, **scores,
               "l2": float(((sr_all - hr_all) ** 2).mean())}
        if self.selection.offer(self.iteration, scores) and self.cfg.select != "last":
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.best_scores = {k: v for k, v in rec.items() if k != "iteration"}
        self.rundir.log_val(rec)
        n = min(4, len(sr_all))
        self.rundir.write_triples(self.iteration, self.val_lr()[:n].float(), sr_all[:n].cpu(),
                                  self.val_hr[:n], self.cfg.scale)
        return rec

