"""The GCN model: the networks and optimisers of one variant, and one training step.

Like BasicSR's SRGAN model: `step(hr)` makes LR from the HR batch with the run's degradation
(random draws seeded by (seed, iteration, rank), so a resumed run draws what a straight run
would), runs G once, takes one step of Φ's network(s) on (HR, G(LR) detached), then one step
of the generator with Φ's networks frozen (requires_grad off, so neither step ever writes the
other's gradients), and returns the loss values. It reads no dataset and writes nothing:
the loop (satsr.training.loop) feeds it batches and the run folder (satsr.training.rundir)
stores its `state_dict()`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from satsr.data.degrade import DEG_STREAM as DEG_STREAM
from satsr.data.degrade import Degradation, train_rng
from satsr.errors import SatsrError
from satsr.nn.generator import Generator
from satsr.nn.phi import PhiNetworks, Variant, get_variant
from satsr.training.config import TrainConfig
from satsr.training.losses import generator_loss, generator_loss_names, phi_loss_names
from satsr.training.selection import GeneratorEMA


class GCNModel:
    """Generator, Φ's networks (and VGG for cla / adv+cla), their Adam optimisers, the EMA.

    `vgg` is the loaded classifier for variants whose Φ is VGG (the caller reads its
    weights); `degradation` is cfg.degradation resolved (resolved here when not given);
    `init_generator` is called on the new generator before Φ's networks are built (e.g. to
    load init_from weights: the random initialisation of Φ then follows it, as always).
    With `distributed`, the networks are wrapped in DistributedDataParallel (the process group
    must exist) and BatchNorm becomes SyncBatchNorm on CUDA.
    """

    def __init__(self, cfg: TrainConfig, bands: int, device: torch.device | str = "cpu", *,
                 vgg: nn.Module | None = None, rank: int = 0, distributed: bool = False,
                 init_generator: Callable[[Generator], None] | None = None,
                 degradation: Degradation | None = None) -> None:
        self.cfg = cfg
        self.bands = bands
        self.variant: Variant = get_variant(cfg.variant)
        self.degradation = degradation or Degradation.resolve(cfg.degradation, cfg.scale)
        self.device = torch.device(device)
        self.rank = rank
        cuda = self.device.type == "cuda"
        # bf16 on the CPU is opt-in: only CPUs with native bf16 instructions gain from it
        cpu_bf16 = self.device.type == "cpu" and cfg.cpu_bf16
        self.amp = (cuda and cfg.amp) or cpu_bf16
        self.channels_last = (cuda or cpu_bf16) and cfg.channels_last
        if (self.variant.phi == "vgg") != (vgg is not None):
            raise SatsrError(f"variant {cfg.variant} "
                             + ("needs a VGG network" if vgg is None else "uses no VGG"))
        self.vgg = vgg.to(self.device) if vgg is not None else None
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)
        self.G = Generator(bands, cfg.scale, cfg.n_blocks, cfg.features, cfg.residual,
                           cfg.upsample)
        if init_generator is not None:
            init_generator(self.G)
        self.phi: PhiNetworks | None = (PhiNetworks(self.variant, bands)
                                        if self.variant.has_trunk else None)
        if distributed and cuda:
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            if self.phi is not None:
                self.phi = nn.SyncBatchNorm.convert_sync_batchnorm(self.phi)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.G.to(self.device).to(memory_format=fmt)
        if self.phi is not None:
            self.phi.to(self.device).to(memory_format=fmt)
        if self.vgg is not None:
            self.vgg.to(memory_format=fmt)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_phi = (torch.optim.Adam(self.phi.parameters(), lr=cfg.lr, betas=betas)
                        if self.phi is not None and self.variant.trains_phi else None)
        self.ema = GeneratorEMA(self.G, cfg.ema) if cfg.ema > 0 else None
        self.g_ddp: nn.Module = self.G
        self.phi_ddp: nn.Module | None = self.phi if self.opt_phi is not None else None
        if distributed:
            ids = [self.device.index] if cuda else None
            self.g_ddp = DDP(self.G, device_ids=ids)
            if self.phi_ddp is not None:
                self.phi_ddp = DDP(self.phi, device_ids=ids)
        #: Names of the values `step` returns, in order.
        self.loss_names = ((phi_loss_names(self.variant) if self.opt_phi is not None else [])
                           + generator_loss_names(self.variant))
        #: Training steps taken (the next step draws its degradation from this).
        self.iteration = 0

    # ---------------------------------------------------------------- one iteration

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA with amp or on the CPU with cpu_bf16, else nothing."""
        if self.amp:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def make_lr(self, hr: torch.Tensor, rng: np.random.Generator | None = None
                ) -> torch.Tensor:
        """LR = the run's degradation of HR (satsr.data.degrade, as eval does), in [-1, 1].

        Random degradations draw from `rng`, by default one seeded by (seed, iteration,
        rank): a resumed run draws exactly what a straight run would.
        """
        if rng is None:
            rng = train_rng(self.cfg.seed, self.iteration, self.rank)
        with torch.no_grad():
            lr = self.degradation(hr, rng).clamp_(-1.0, 1.0)
        return self._lr_format(lr)

    def _lr_format(self, lr: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        return lr

    def forward_generator(self, hr: torch.Tensor, lr: torch.Tensor | None = None
                          ) -> torch.Tensor:
        """G(degrade(hr)), or G(lr) when the LR was made already (by the loader, from this
        iteration's draws), through DDP when distributed (one forward per iteration)."""
        lr = self.make_lr(hr) if lr is None else self._lr_format(lr)
        with self.autocast():
            return self.g_ddp(lr)

    def phi_step(self, hr: torch.Tensor, fake: torch.Tensor) -> list[torch.Tensor]:
        """One optimizer step of Φ's network(s); the generator gets no gradient (detached)."""
        if self.opt_phi is None or self.phi_ddp is None:
            return []
        self.opt_phi.zero_grad(set_to_none=True)
        with self.autocast():
            loss, parts = self.phi_ddp(hr, fake.detach())
        loss.backward()
        self.opt_phi.step()
        return list(parts.values())

    def generator_step(self, hr: torch.Tensor, fake: torch.Tensor) -> list[torch.Tensor]:
        """One optimizer step of the generator with Φ's networks frozen."""
        cfg = self.cfg
        if self.phi is not None and self.opt_phi is not None:
            self.phi.requires_grad_(False)
        try:
            self.opt_g.zero_grad(set_to_none=True)
            with self.autocast():
                loss, parts = generator_loss(self.variant, hr, fake, self.phi, self.vgg,
                                             cfg.phi_depth, cfg.lambda1, cfg.lambda2)
            loss.backward()
            self.opt_g.step()
            if self.ema is not None:
                self.ema.update(self.G)
        finally:
            if self.phi is not None and self.opt_phi is not None:
                self.phi.requires_grad_(True)
        return list(parts.values())

    def step(self, hr: torch.Tensor, lr: torch.Tensor | None = None) -> torch.Tensor:
        """One training iteration on an HR batch (on the model's device): the loss values
        (detached, float32) in `loss_names` order. Counts the iteration.

        `lr`, when given, is this iteration's LR made elsewhere with the same draws
        (`satsr.data.crops.DegradedBatches`: the degradation of (seed, iteration, rank) in a
        loader worker, clamped to [-1, 1]); else the step makes it (`make_lr`)."""
        if self.channels_last:
            hr = hr.contiguous(memory_format=torch.channels_last)
        fake = self.forward_generator(hr, lr)
        values = self.phi_step(hr, fake) + self.generator_step(hr, fake)
        self.iteration += 1
        return torch.stack([v.detach().float() for v in values])

    def train(self) -> None:
        """Training mode for the trained networks."""
        self.G.train()
        if self.phi is not None:
            self.phi.train()

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, EMA and iteration (tensors, dicts: weights_only-safe)."""
        return {
            "iteration": self.iteration,
            "generator": self.G.state_dict(),
            "phi": self.phi.state_dict() if self.phi is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_phi": self.opt_phi.state_dict() if self.opt_phi is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (KeyError, RuntimeError... when it does not fit);
        the learning rate and betas stay the configuration's."""
        self.G.load_state_dict(state["generator"])
        if self.phi is not None:
            if state.get("phi") is None:
                raise KeyError("phi")
            self.phi.load_state_dict(state["phi"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.opt_phi is not None:
            self.opt_phi.load_state_dict(state["opt_phi"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise KeyError("ema")
            self.ema.load_state_dict(state["ema"])
        self.iteration = int(state["iteration"])
        betas = (self.cfg.beta1, self.cfg.beta2)
        for opt in (self.opt_g, self.opt_phi):
            if opt is None:
                continue
            for group in opt.param_groups:
                group["lr"], group["betas"] = self.cfg.lr, betas
            for s in opt.state.values():  # optimizer tensors follow the device
                for k, v in s.items():
                    if isinstance(v, torch.Tensor) and k != "step":
                        s[k] = v.to(self.device)
