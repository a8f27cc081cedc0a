"""The training loop: one loop for the whole GCN family, on CPU or CUDA, resumable, DDP.

`train(cfg)` reads the dataset, builds a GCNModel (satsr.training.gcn: networks, optimisers,
one step), feeds it batches, validates, logs and checkpoints into the run folder
(satsr.training.rundir), and picks the weights model.safetensors keeps
(satsr.training.selection). Adam, lr 2e-4. β1 defaults to 0.9, SRGAN's and Adam's usual
value: the generator loss is dominated by the λ1 feature term (λ2 = 1e-3), which momentum
helps on the short runs satsr targets; the GCN authors' β1 = 0 is one `--beta1 0` away.

Ctrl-C (and SIGTERM, through the CLI) finishes the iteration, saves a checkpoint and stops;
a second Ctrl-C aborts at once. A NaN or infinite loss stops the run and keeps the last
good checkpoint. Distributed runs: see satsr.nn.distributed.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from satsr.data.crops import TrainCrops, chip_size, default_workers, train_loader
from satsr.data.degrade import Degradation
from satsr.data.index import DatasetIndex
from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError, SatsrWarning, TrainingDiverged, TrainingStopped
from satsr.inference.modelfile import load_model, resolve_model_path
from satsr.nn.device import cpu_has_native_bf16, resolve_device
from satsr.nn.distributed import (
    DistInfo,
    destroy_group_if_owned,
    setup_distributed,
    training_device,
)
from satsr.nn.generator import Generator
from satsr.nn.phi import Variant, get_variant
from satsr.nn.vgg import load_vgg
from satsr.progress import SPEED, progress_bar
from satsr.training.card import model_metadata
from satsr.training.config import TrainConfig, make_config
from satsr.training.gcn import GCNModel
from satsr.training.resume import (
    check_resumed_config,
    check_resumed_data,
    load_state,
    state_dict,
)
from satsr.training.rundir import (
    RunDir,
)
from satsr.training.selection import Selection
from satsr.training.signals import ignore_sigint, stop_requests
from satsr.training.validation import Validator


@dataclass
class TrainResult:
    """What a call of `train` did."""

    run: Path
    start_iteration: int
    iterations: int
    losses: dict[str, float] = field(default_factory=dict)
    val: list[dict[str, float]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    chips_seen: list[list[int]] = field(default_factory=list)
    iteration_times: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


class Trainer:
    """One training run: the dataset, a GCNModel, the run folder, validation and the loop.

    The constructor reads (the dataset's index, a resumed checkpoint, VGG / --init-from
    weights) and writes nothing; `run()` prepares the run folder and trains.
    """

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
                 progress: bool = False, console: Any = None,
                 on_step: Callable[[Trainer, int], None] | None = None,
                 record: bool = False) -> None:
        cfg.validate()
        self.rundir = RunDir(cfg.out)
        self.run_dir = self.rundir.path
        self.resume, self.overwrite = resume, overwrite
        self.progress_enabled, self.console, self.on_step = progress, console, on_step
        self.record = record
        self.cfg = cfg
        self.variant: Variant = get_variant(cfg.variant)
        self.degradation = Degradation.resolve(cfg.degradation, cfg.scale)
        self.selection = Selection(cfg.select, cfg.psnr_floor)

        self._join_devices()
        ckpt = self.rundir.check(resume, overwrite)
        self.dist.barrier()  # every rank has looked at RUN before rank 0 writes into it
        if ckpt is not None:
            check_resumed_config(self, ckpt)
        self._read_data(ckpt)

        # ---- networks (VGG first: missing weights fail before anything is written)
        vgg: nn.Module | None = None
        if self.variant.phi == "vgg":
            vgg = load_vgg(cfg.vgg_net, cfg.vgg_weights).to(self.device)
        self.init_from: dict[str, Any] | None = None
        start_from = cfg.init_from if cfg.init_from and ckpt is None else None

        def init_generator(g: Generator) -> None:
            if start_from:
                self.init_from = _init_generator(g, start_from)

        self.model = GCNModel(cfg, self.bands, self.device, vgg=vgg, rank=self.dist.rank,
                              distributed=self.dist.enabled, init_generator=init_generator,
                              degradation=self.degradation)
        self.validator = Validator(cfg, self.model, self.selection, self.rundir, self.dist,
                                   self.device)
        self._elapsed_before = 0.0  # training seconds of earlier sessions (from the checkpoint)
        self._t0: float | None = None
        if ckpt is not None:
            load_state(self, ckpt)
        self.dataset = TrainCrops(self.train_chips, self.scaling, cfg.hr_size, cfg.seed,
                                  self.chip_hw)
        self.validator.load(self.index, self.val_chips, self.bands, self.scaling, self.chip_hw)
        self._pending: list[tuple[int, torch.Tensor]] = []
        self._last_losses: dict[str, float] = {}
        self._good_iteration: int | None = int(ckpt["iteration"]) if ckpt else None

    def _join_devices(self) -> None:
        """This process's device, after joining the job's process group (when there is one)."""
        cfg = self.cfg
        use_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto"
                                                      and torch.cuda.is_available())
        if use_cuda:
            resolve_device(cfg.device)  # no CUDA: one clear error before joining a group
        self.dist: DistInfo = setup_distributed(use_cuda)
        self.device = training_device(cfg.device, self.dist.local_rank)
        self.cuda = self.device.type == "cuda"
        if cfg.cpu_bf16 and not self.cuda and cpu_has_native_bf16() is False:
            warnings.warn("--cpu-bf16: this CPU has no native bf16 instructions (AVX-512 BF16 "
                          "or AMX), so bf16 autocast is emulated here and likely slower than "
                          "float32", SatsrWarning, stacklevel=2)

    def _read_data(self, ckpt: dict[str, Any] | None) -> None:
        """The dataset's index, chips, bands and band scaling (a resumed run's own), checked
        against the options."""
        cfg = self.cfg
        self.index = DatasetIndex.read(cfg.data)
        self.train_chips = [c.path for c in self.index.split("train")]
        self.val_chips = [c.path for c in self.index.split("val")]
        n = len(self.train_chips)
        if n == 0:
            raise SatsrError(f"dataset {self.index.root} has no train chips")
        if cfg.batch_size * self.dist.world > n:
            per = f" x {self.dist.world} processes" if self.dist.enabled else ""
            raise SatsrError(f"batch_size {cfg.batch_size}{per} is larger than the train "
                             f"split ({n} chips)", option="batch_size")
        size = self.index.meta.get("size")
        self.chip_hw = (int(size), int(size)) if size else chip_size(self.train_chips[0])
        if cfg.hr_size > min(self.chip_hw):
            raise SatsrError(f"hr_size {cfg.hr_size} is larger than the dataset's chips "
                             f"({self.chip_hw[0]}x{self.chip_hw[1]})", option="hr_size")
        self.bands = self.index.band_count
        self.scaling = self.index.scaling
        if self.scaling.bands != self.bands:
            raise SatsrError(f"dataset index scaling has {self.scaling.bands} bands but "
                             f"band_count is {self.bands}")
        if ckpt is not None:
            check_resumed_data(self, ckpt)
            self.scaling = BandScaling.from_dict(ckpt["scaling"])  # the model's own numbers
        if self.variant.phi == "vgg" and self.bands != 3:
            raise SatsrError(f"variant {cfg.variant} uses VGG19, which reads 3-band RGB; this "
                             f"dataset has {self.bands} bands (make one with bands 1,2,3)",
                             option="bands")

    @property
    def iteration(self) -> int:
        """Iterations trained so far (the model counts them)."""
        return self.model.iteration

    @property
    def written(self) -> list[Path]:
        """Files this session wrote."""
        return self.rundir.written

    @property
    def val_hr(self) -> torch.Tensor:
        """The val crops (HR), on the host (see Validator)."""
        return self.validator.val_hr

    def val_lr(self) -> torch.Tensor:
        """The val crops degraded once, with a fixed seed (see Validator)."""
        return self.validator.val_lr()

    def validate(self) -> dict[str, float] | None:
        """One validation round (see Validator.validate)."""
        return self.validator.validate()

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (see satsr.training.resume.state_dict)."""
        return state_dict(self)

    def elapsed(self) -> float:
        """Seconds of training of this run, earlier (resumed) sessions included."""
        now = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return self._elapsed_before + now

    def model_metadata(self) -> dict[str, Any]:
        """Metadata of RUN/model.safetensors (see satsr.training.card)."""
        return model_metadata(self)

    def save_checkpoint(self) -> None:
        """checkpoint.pt (atomic) and model.safetensors, from rank 0."""
        if not self.dist.is_writer:
            return
        self.rundir.save(self.state_dict(), self.export_generator(), self.model_metadata())
        self._good_iteration = self.iteration

    @property
    def exports_latest(self) -> bool:
        """Whether the model file holds the latest weights (no round selected, or none kept
        yet) rather than the selected round's."""
        return self.cfg.select == "last" or self.validator.best_state is None

    def export_generator(self) -> Generator:
        """The generator model.safetensors holds: the selected round's weights, else the
        latest (the EMA's when --ema is on)."""
        ema = self.model.ema
        source = self.model.G if ema is None else cast(Generator, ema.shadow)
        if self.exports_latest:
            return source
        g = copy.deepcopy(source)
        assert self.validator.best_state is not None
        g.load_state_dict(self.validator.best_state)
        return g

    # ---------------------------------------------------------------- logging

    def _flush(self) -> None:
        """Write pending losses to log.csv; stop on NaN / inf (checked on every rank)."""
        if not self._pending:
            return
        its = [i for i, _ in self._pending]
        vals = torch.stack([v for _, v in self._pending])
        self._pending = []
        bad = self.dist.any((~torch.isfinite(vals)).any(), self.device)
        rows = vals.cpu().tolist()
        names = self.model.loss_names
        self._last_losses = dict(zip(names, rows[-1], strict=True))
        if self.dist.is_writer:
            self.rundir.log_losses(list(zip(its, rows, strict=True)), self.elapsed())
        if bad:
            where = "(no other process)"
            for i, r in zip(its, rows, strict=True):
                for name, v in zip(names, r, strict=True):
                    if not math.isfinite(v):
                        where = f"loss {name} is {v} at iteration {i}"
                        break
                else:
                    continue
                break
            kept = (f"the last good checkpoint (iteration {self._good_iteration}) is kept in "
                    f"{self.rundir.checkpoint}" if self._good_iteration is not None
                    else "no checkpoint had been written yet")
            raise TrainingDiverged(f"training diverged: {where}; stopped, {kept} (try a lower "
                                   "lr)", option="lr")

    # ---------------------------------------------------------------- the loop

    def _prepare(self) -> None:
        """Rank 0 creates (or cleans, or trims for a resume) the run folder."""
        if self.dist.is_writer:
            self.rundir.prepare(self.cfg, self.model.loss_names,
                                fresh=not self.resume and self.overwrite,
                                keep_until=self.iteration if self.resume else None)
        self.dist.barrier()

    def run(self) -> TrainResult:
        """Train up to cfg.iterations (continuing from a resumed iteration)."""
        cfg = self.cfg
        self._prepare()
        start = self.iteration
        result = TrainResult(self.run_dir, start, start, device=str(self.device))
        self._t0 = time.perf_counter()
        workers = cfg.workers
        if workers < 0:  # auto: loader processes only where compute is fast (CUDA)
            workers = default_workers(self.cuda, self.dist.world)
        # a random degradation (host work) runs in the loader, beside the step
        in_loader = None if self.degradation.is_bicubic else self.degradation
        loader = train_loader(self.dataset, start, cfg.iterations, cfg.batch_size,
                              self.dist.rank, self.dist.world, workers, pin_memory=self.cuda,
                              worker_init_fn=ignore_sigint, degradation=in_loader)
        if cfg.val_every and start == 0:
            rec = self.validate()
            if rec:
                result.val.append(rec)
        self.model.train()
        stopped = False
        with stop_requests() as stop:
            with self._progress(start) as bar:
                for *batch, idx in loader:
                    values = self.model.step(*(t.to(self.device, non_blocking=True)
                                               for t in batch))
                    it = self.iteration
                    self._pending.append((it, values))
                    if self.record:
                        result.chips_seen.append([int(i) for i in idx])
                    result.iteration_times.append(time.perf_counter())
                    if self.on_step is not None:
                        self.on_step(self, it)
                    last = it == cfg.iterations
                    if it % cfg.log_every == 0 or last:
                        self._flush()
                    if cfg.val_every and it % cfg.val_every == 0 and not last:
                        rec = self.validate()
                        if rec:
                            result.val.append(rec)
                    if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and not last:
                        self._flush()
                        self.save_checkpoint()
                    bar(it)
                    if self.dist.any(stop.requested, self.device):
                        stopped = True
                        break
            stop.cancel_timer()  # the step ended in time: save unhurried
            self._flush()
            if self.iteration > start:
                if cfg.val_every and not stopped:
                    rec = self.validate()
                    if rec:
                        result.val.append(rec)
                self.save_checkpoint()
            if self.dist.is_writer and not stopped:
                self.rundir.plot()
        self.dist.barrier()
        result.iterations = self.iteration
        result.losses = dict(self._last_losses)
        result.written = list(self.written)
        result.seconds = time.perf_counter() - self._t0
        if stopped:
            raise TrainingStopped(
                f"interrupted at iteration {self.iteration}: checkpoint saved in "
                f"{self.rundir.checkpoint} (continue with resume)", option="resume")
        return result

    @contextlib.contextmanager
    def _progress(self, start: int) -> Iterator[Callable[[int], None]]:
        """A rich bar (rank 0, when enabled): iteration, it/s, latest losses."""
        enabled = self.progress_enabled and self.dist.is_writer
        with progress_bar(enabled, SPEED, "{task.description}",
                          title=f"[bold]train {self.cfg.variant}", timing=False,
                          console=self.console) as prog:
            task = prog.add_task("", total=self.cfg.iterations, completed=start)

            def update(it: int) -> None:
                if enabled or self.dist.is_writer:
                    desc = " ".join(f"{k}={v:.4g}" for k, v in self._last_losses.items())
                    prog.update(task, completed=it, description=desc)

            yield update


def train(cfg: TrainConfig | None = None, *, resume: bool = False, overwrite: bool = False,
          progress: bool = False, console: Any = None,
          on_step: Callable[[Trainer, int], None] | None = None,
          record: bool = False, **options: Any) -> TrainResult:
    """Train the generator of `cfg.variant` on a make-dataset folder; see the module docstring.

    Options may come as a TrainConfig, as keywords (`train(data="chips", out="run",
    iterations=100)`), or both (the keywords win).
    """
    if cfg is None or options:
        cfg = make_config(asdict(cfg) if cfg is not None else {}, options)
    owned = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    try:
        trainer = Trainer(cfg, resume=resume, overwrite=overwrite, progress=progress,
                          console=console, on_step=on_step, record=record)
        return trainer.run()
    finally:
        destroy_group_if_owned(owned)


def _init_generator(g: Generator, path: str) -> dict[str, Any]:
    """Start generator `g` from a model file's weights (init_from); its record."""

    p = resolve_model_path(path)
    gen, meta = load_model(p)
    have, want = gen.arch(), g.arch()
    if (have["scale"], have["bands"]) != (want["scale"], want["bands"]):
        raise SatsrError(f"cannot start from {p}: it is a x{have['scale']} model of "
                         f"{have['bands']} bands, this run trains x{want['scale']} on "
                         f"{want['bands']} bands")
    diff = [k for k in want if have[k] != want[k]]
    if diff:
        opts = ", ".join(f"{k} {have[k]} (not {want[k]})" for k in diff)
        raise SatsrError(f"cannot start from {p}: its generator differs; give {opts}",
                         option=tuple(diff))
    g.load_state_dict(gen.state_dict())
    return {"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "variant": meta.get("variant"), "iterations": meta.get("iterations"),
            "degradation": (meta.get("degradation") or {}).get("name", "bicubic")}
