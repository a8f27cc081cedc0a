"""The training engine: one loop for the whole GCN family, on CPU or CUDA, resumable, DDP.

Run folder layout (only rank 0 writes):

    RUN/config.yaml          the effective configuration (defaults < --config FILE < CLI)
    RUN/checkpoint.pt        the latest training state, written atomically every
                             --checkpoint-every iterations and at the end: every network,
                             optimizer, the iteration, RNG states, config, band scaling.
                             Plain tensors / lists / dicts: loads with weights_only=True.
    RUN/model.safetensors    generator + metadata for `satsr upscale` / `satsr eval`
                             (rewritten with every checkpoint)
    RUN/log.csv              every loss term of every iteration
    RUN/val.csv              PSNR and L2 (MSE in [-1, 1] units) on the val split
    RUN/visualization/       iter_NNNNNN.png: LR (nearest) | SR | HR rows of val chips
    RUN/losses.png           loss curves, drawn at the end

Each iteration: G(x) once; one step of Φ's network(s) on (y, G(x) detached); then one step
of the generator with Φ's networks frozen (requires_grad off, so neither step ever writes the
other's gradients). Adam, lr 2e-4. β1 defaults to 0.9, SRGAN's and Adam's usual value: the
generator loss is dominated by the λ1 feature term (λ2 = 1e-3), which momentum helps on the
short runs satsr targets; the GCN authors' β1 = 0 is one `--beta1 0` away.

Distributed: launched by torchrun (`torchrun --nproc-per-node N -m satsr train ...`); each
rank reads its own slice of every global batch (--batch-size is per process), gradients are
averaged by DistributedDataParallel, BatchNorm is SyncBatchNorm on CUDA. On the CPU (gloo)
BatchNorm statistics stay per process, because SyncBatchNorm needs CUDA.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from satsr.data.degrade import Degradation, upsample
from satsr.errors import MissingWeightsError, SatsrError, TrainingDiverged, TrainingStopped
from satsr.evaluation.metrics import LPIPS_MIN_SIZE, lpips_unavailable
from satsr.nn import Generator
from satsr.nn.discriminator import TRUNK_STRIDE
from satsr.nn.generator import UPSAMPLERS
from satsr.nn.phi import PhiNetworks, Variant, get_variant
from satsr.nn.vgg import VGG_NETS
from satsr.training.losses import generator_loss, generator_loss_names, phi_loss_names
from satsr.training.selection import (
    LOGGED,
    NEEDS,
    GeneratorEMA,
    Selection,
    ValidationScorer,
    psnr_unit,
)

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.yaml"
CHECKPOINT_FORMAT = "satsr-train-checkpoint"
CHECKPOINT_VERSION = 1
#: Options a resumed run may change: the length of the run, where and how fast it executes,
#: how often it logs / validates / checkpoints, and where its inputs live (`data` must still
#: hold the same train split; `vgg_weights` names a file). Every other option changes what is
#: trained or measured (networks, losses, optimiser, batch, crops, seed, val set) and is
#: refused on --resume; a new TrainConfig field is thus fixed unless it is added here.
CHANGEABLE_ON_RESUME = ("data", "out", "iterations", "device", "amp", "channels_last",
                        "workers", "checkpoint_every", "val_every", "log_every", "vgg_weights",
                        "lpips_weights")
#: Options that may be empty (None): file / folder options, and the PSNR floor (no floor).
OPTIONAL = ("vgg_weights", "init_from", "lpips_weights", "psnr_floor")
#: Seed streams of the degradation's random draws: training batches, the fixed val LR.
_DEG_STREAM, _VAL_DEG_STREAM = 0xDE6, 0xDE7
#: Columns of RUN/val.csv (LPIPS cells are empty where they cannot be computed).
VAL_COLUMNS = ["iteration", "psnr", "l2", "alex-l", "vgg-l", "pe-l"]
#: Files and folders a satsr run folder may hold (what --overwrite is allowed to delete).
RUN_MARKERS = (CONFIG_NAME, CHECKPOINT_NAME, "log.csv", "model.safetensors")


@dataclass
class TrainConfig:
    """Every option of `satsr train` (CLI flag = field name with dashes)."""

    data: str = ""
    out: str = ""
    variant: str = "adv+rec"
    scale: int = 4
    iterations: int = 5000
    batch_size: int = 10
    hr_size: int = 256
    lr: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.999
    lambda1: float = 1.0
    lambda2: float = 1e-3
    phi_depth: int = 1
    n_blocks: int = 10
    features: int = 64
    residual: bool = False
    upsample: str = "shuffle"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    workers: int = -1
    checkpoint_every: int = 500
    val_every: int = 250
    val_chips: int = 16
    log_every: int = 10
    vgg_weights: str | None = None
    vgg_net: str = "vgg19"
    degradation: str = "bicubic"
    select: str = "last"
    psnr_floor: float | None = None
    ema: float = 0.0
    init_from: str | None = None
    lpips_weights: str | None = None

    def validate(self) -> None:
        """One clear error for any impossible value."""
        try:
            get_variant(self.variant)
        except ValueError as exc:
            raise SatsrError(str(exc)) from None
        if self.scale not in (2, 4, 8):
            raise SatsrError(f"--scale must be 2, 4 or 8, not {self.scale}")
        for name in ("iterations", "batch_size", "hr_size", "n_blocks", "features",
                     "log_every", "val_chips"):
            if getattr(self, name) < 1:
                raise SatsrError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("checkpoint_every", "val_every"):
            if getattr(self, name) < 0:
                raise SatsrError(f"--{name.replace('_', '-')} must be >= 0 (0 = only at the end"
                                 " / never)")
        if self.hr_size % TRUNK_STRIDE or self.hr_size % self.scale:
            raise SatsrError(f"--hr-size must be a multiple of {TRUNK_STRIDE} (the "
                             f"discriminator's stride) and of the scale, not {self.hr_size}")
        if not 1 <= self.phi_depth <= 8:
            raise SatsrError(f"--phi-depth must be in 1..8 (trunk blocks), not {self.phi_depth}")
        for name in ("lr", "beta1", "beta2", "lambda1", "lambda2"):
            if not math.isfinite(getattr(self, name)):
                raise SatsrError(f"--{name} must be a finite number, not {getattr(self, name)}")
        if not self.lr > 0 or not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise SatsrError("--lr must be > 0 and --beta1/--beta2 in [0, 1)")
        if self.lambda1 < 0 or self.lambda2 < 0:
            raise SatsrError(f"--lambda1 and --lambda2 must be >= 0, not {self.lambda1} and "
                             f"{self.lambda2}")
        if self.workers < -1:
            raise SatsrError(f"--workers must be >= 0, or -1 for auto, not {self.workers}")
        if self.upsample not in UPSAMPLERS:
            raise SatsrError(f"--upsample must be {' or '.join(UPSAMPLERS)}, not "
                             f"{self.upsample!r}")
        if self.vgg_net not in VGG_NETS:
            raise SatsrError(f"--vgg-net must be {' or '.join(VGG_NETS)}, not {self.vgg_net!r}")
        from satsr.training.selection import CRITERIA

        if self.select not in CRITERIA:
            raise SatsrError(f"--select must be one of {', '.join(CRITERIA)}, not "
                             f"{self.select!r}")
        if self.psnr_floor is not None and not math.isfinite(self.psnr_floor):
            raise SatsrError(f"--psnr-floor must be a finite number of dB, not "
                             f"{self.psnr_floor}")
        if not 0.0 <= self.ema < 1.0:
            raise SatsrError(f"--ema must be 0 (off) or a decay in (0, 1), not {self.ema}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise SatsrError(f"--device must be auto, cpu or cuda, not {self.device!r}")
        if not self.data:
            raise SatsrError("no dataset given (DATA argument or `data` in --config)")
        if not self.out:
            raise SatsrError("no run folder given (-o RUN or `out` in --config)")


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _coerce(name: str, value: Any) -> Any:
    """A config value converted to the field's type, or one clear error naming the option.

    Strict on purpose: a boolean is not a number (`iterations = true` would otherwise mean
    1), a fractional number is not an integer, and only strings / numbers make a string.
    Strings are parsed (YAML reads `2e-4` as a string), since every layer goes through here.
    """
    default = getattr(TrainConfig(), name)
    if name == "psnr_floor":
        default = 0.0  # a float option whose default is None (no floor)
    if value is None:
        if name in OPTIONAL:
            return None
        raise SatsrError(f"config option {name!r} cannot be empty")
    if isinstance(default, bool):
        kind = "true or false"
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            if value.strip().lower() in ("true", "yes", "1", "on"):
                return True
            if value.strip().lower() in ("false", "no", "0", "off"):
                return False
    elif isinstance(default, int):
        kind = "a whole number"
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.strip())
    elif isinstance(default, float):
        kind = "a number"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value.strip())
    else:  # str fields (and vgg_weights)
        kind = "a string"
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise SatsrError(f"config option {name!r} must be {kind}, not {value!r}")


def make_config(*layers: dict[str, Any]) -> TrainConfig:
    """Defaults, then each layer of options on top (later wins); keys may use dashes."""
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            name = key.replace("-", "_")
            if name not in _FIELDS:
                raise SatsrError(f"unknown config option {key!r}")
            values[name] = _coerce(name, value)
    return TrainConfig(**values)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a TOML (.toml) or YAML (.yaml/.yml) file: a flat table of option names."""
    p = Path(path)
    if not p.is_file():
        raise SatsrError(f"config file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                try:
                    import tomli as tomllib  # type: ignore[no-redef]
                except ModuleNotFoundError:
                    raise SatsrError("TOML config files need Python >= 3.11 (or the tomli "
                                     "package); use YAML instead") from None
            doc = tomllib.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except SatsrError:
        raise
    except Exception as exc:  # tomllib / yaml parse errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SatsrError(f"cannot parse config file {p}: {first}") from None
    if doc is None:
        return {}
    if isinstance(doc, dict) and isinstance(doc.get("train"), dict):
        doc = doc["train"]  # allow a [train] table / train: mapping
    if not isinstance(doc, dict):
        raise SatsrError(f"config file {p} must hold a mapping of option names to values")
    return doc


def write_config(cfg: TrainConfig, path: Path) -> None:
    """The effective configuration as YAML (readable back with --config)."""
    import yaml

    from satsr.data.raster import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("# satsr train: effective configuration\n"
                       + yaml.safe_dump(asdict(cfg), sort_keys=False))


# --------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    """This process's place in a (possibly 1-process) data-parallel job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def setup_distributed(use_cuda: bool) -> DistInfo:
    """Join the torchrun job described by the environment (or an already made group)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise SatsrError("WORLD_SIZE > 1 but this PyTorch has no torch.distributed")
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", "0")), True)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto -> cuda if available else cpu; cuda without CUDA is a user error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SatsrError("--device cuda but CUDA is not available on this machine "
                             "(use --device cpu or auto)")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


# --------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors / lists (weights_only-loadable)."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() saved."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):
            torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, loaded without running code; one clear error otherwise."""
    p = Path(path)
    if not p.is_file():
        raise SatsrError(f"no checkpoint to resume: {p} does not exist")
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, unpickling refused, truncated file...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SatsrError(f"{p} is corrupt or not a satsr training checkpoint ({first[:200]})"
                         ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SatsrError(f"{p} is not a satsr training checkpoint")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise SatsrError(f"{p} was written by a newer satsr (checkpoint version "
                         f"{state['version']})")
    for key in ("iteration", "config", "generator", "opt_g", "scaling", "bands", "rng"):
        if key not in state:
            raise SatsrError(f"{p} is an incomplete satsr checkpoint (no {key!r})")
    return state


# --------------------------------------------------------------------------- the engine


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


def _ignore_sigint(_: int) -> None:
    """DataLoader worker init: Ctrl-C is handled by the main process only."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Trainer:
    """One training run: data, networks, optimizers, the loop, checkpoints, logs."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
                 progress: bool = False, console: Any = None,
                 on_step: Callable[[Trainer, int], None] | None = None,
                 record: bool = False) -> None:
        from satsr.data.index import DatasetIndex

        cfg.validate()
        self.run_dir = Path(cfg.out)
        self.resume, self.overwrite = resume, overwrite
        self.progress_enabled, self.console, self.on_step = progress, console, on_step
        self.record = record
        self.cfg = cfg
        self.variant: Variant = get_variant(cfg.variant)
        self.degradation = Degradation.resolve(cfg.degradation, cfg.scale)
        self.selection = Selection(cfg.select, cfg.psnr_floor)

        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise SatsrError("--device cuda but CUDA is not available on this machine "
                             "(use --device cpu or auto)")
        self.dist = setup_distributed(use_cuda)
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.cuda = self.device.type == "cuda"
        self.amp = self.cuda and cfg.amp
        self.channels_last = self.cuda and cfg.channels_last
        ckpt = self._check_run_dir()
        self._barrier()  # every rank has looked at RUN before rank 0 writes into it
        if ckpt is not None:
            self._check_resumed_config(ckpt)

        # ---- data
        self.index = DatasetIndex.read(cfg.data)
        self.train_chips = [c.path for c in self.index.split("train")]
        self.val_chips = [c.path for c in self.index.split("val")]
        n = len(self.train_chips)
        if n == 0:
            raise SatsrError(f"dataset {self.index.root} has no train chips")
        if cfg.batch_size * self.dist.world > n:
            per = f" x {self.dist.world} processes" if self.dist.enabled else ""
            raise SatsrError(f"--batch-size {cfg.batch_size}{per} is larger than the train "
                             f"split ({n} chips)")
        from satsr.data.crops import chip_size

        size = self.index.meta.get("size")
        self.chip_hw = (int(size), int(size)) if size else chip_size(self.train_chips[0])
        if cfg.hr_size > min(self.chip_hw):
            raise SatsrError(f"--hr-size {cfg.hr_size} is larger than the dataset's chips "
                             f"({self.chip_hw[0]}x{self.chip_hw[1]})")
        self.bands = self.index.band_count
        self.scaling = self.index.scaling
        if self.scaling.bands != self.bands:
            raise SatsrError(f"dataset index scaling has {self.scaling.bands} bands but "
                             f"band_count is {self.bands}")
        if ckpt is not None:
            if int(ckpt["bands"]) != self.bands or str(ckpt.get("dtype")) != self.index.dtype:
                raise SatsrError(
                    f"dataset {self.index.root} has {self.bands} {self.index.dtype} bands but "
                    f"the resumed run was trained on {ckpt['bands']} {ckpt.get('dtype')} bands")
            split = ckpt.get("train_split")  # absent from older checkpoints
            if split is not None and split != self._train_split():
                raise SatsrError(
                    f"dataset {self.index.root} does not hold the train split the resumed run "
                    f"was trained on ({split['chips']} chips then, {n} now, or other chips)")
            from satsr.data.scaling import BandScaling

            self.scaling = BandScaling.from_dict(ckpt["scaling"])  # the model's own numbers
        if self.variant.phi == "vgg" and self.bands != 3:
            raise SatsrError(f"variant {cfg.variant} uses VGG19, which reads 3-band RGB; this "
                             f"dataset has {self.bands} bands (make one with --bands 1,2,3)")

        # ---- networks (VGG first: missing weights fail before anything is written)
        self.vgg: nn.Module | None = None
        if self.variant.phi == "vgg":
            from satsr.nn.vgg import load_vgg

            self.vgg = load_vgg(cfg.vgg_net, cfg.vgg_weights).to(self.device)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)
        self.G = Generator(self.bands, cfg.scale, cfg.n_blocks, cfg.features, cfg.residual,
                           cfg.upsample)
        self.init_from: dict[str, Any] | None = None
        if cfg.init_from and ckpt is None:
            self.init_from = self._init_generator(cfg.init_from)
        self.phi: PhiNetworks | None = (PhiNetworks(self.variant, self.bands)
                                        if self.variant.has_trunk else None)
        if self.dist.enabled and self.cuda:
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)  # type: ignore[assignment]
            if self.phi is not None:
                self.phi = nn.SyncBatchNorm.convert_sync_batchnorm(self.phi)  # type: ignore
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.G.to(self.device, memory_format=fmt)
        if self.phi is not None:
            self.phi.to(self.device, memory_format=fmt)
        if self.vgg is not None:
            self.vgg.to(memory_format=fmt)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_phi = (torch.optim.Adam(self.phi.parameters(), lr=cfg.lr, betas=betas)
                        if self.phi is not None and self.variant.trains_phi else None)
        self.ema = GeneratorEMA(self.G, cfg.ema) if cfg.ema > 0 else None
        self.best_state: dict[str, torch.Tensor] | None = None  # weights of the best val round
        self.best_scores: dict[str, float] | None = None
        self.baseline: dict[str, float] | None = None  # bicubic's val scores
        self.iteration = 0
        self._elapsed_before = 0.0  # training seconds of earlier sessions (from the checkpoint)
        self._t0: float | None = None
        if ckpt is not None:
            self._load_state(ckpt)
        for opt in (self.opt_g, self.opt_phi):
            for group in opt.param_groups if opt is not None else []:
                group["lr"], group["betas"] = cfg.lr, betas

        self.g_ddp: nn.Module = self.G
        self.phi_ddp: nn.Module | None = self.phi if self.opt_phi is not None else None
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.cuda else None
            self.g_ddp = DDP(self.G, device_ids=ids)
            if self.phi_ddp is not None:
                self.phi_ddp = DDP(self.phi, device_ids=ids)

        self.loss_names = ((phi_loss_names(self.variant) if self.opt_phi is not None else [])
                           + generator_loss_names(self.variant))
        from satsr.data.crops import TrainCrops, load_val

        self.dataset = TrainCrops(self.train_chips, self.scaling, cfg.hr_size, cfg.seed,
                                  self.chip_hw)
        self.val_hr = (load_val(self.val_chips, self.scaling, cfg.hr_size, cfg.val_chips,
                                self.chip_hw)
                       if self.dist.is_writer and cfg.val_every else torch.empty(0))
        self._val_lr: torch.Tensor | None = None
        self.scorer = self._make_scorer()
        self.written: list[Path] = []
        self._pending: list[tuple[int, torch.Tensor]] = []
        self._last_losses: dict[str, float] = {}
        self._stop = False
        self._good_iteration: int | None = int(ckpt["iteration"]) if ckpt else None
        self._prepare_run_dir(ckpt)

    def _make_scorer(self) -> ValidationScorer | None:
        """Validation scores: PSNR, plus LPIPS alex-l / vgg-l where they can be computed.

        A criterion that needs LPIPS is refused here, before anything is written, when the
        run cannot validate, the data has fewer than 3 bands, the crops are too small or the
        weights are missing (that error names the file and folder).
        """
        cfg = self.cfg
        needs = NEEDS[cfg.select]
        if needs or cfg.select == "psnr":
            why = ("--val-every is 0" if not cfg.val_every else
                   f"dataset {self.index.root} has no val chips" if not self.val_chips else "")
            if why:
                raise SatsrError(f"--select {cfg.select} needs validation, but {why}")
        if needs and self.bands < 3:
            raise SatsrError(f"--select {cfg.select} scores LPIPS on 3 bands; this dataset has "
                             f"{self.bands} (use --select psnr)")
        if needs and cfg.hr_size < LPIPS_MIN_SIZE:
            raise SatsrError(f"--select {cfg.select} needs --hr-size >= {LPIPS_MIN_SIZE} (LPIPS "
                             f"trunks), not {cfg.hr_size}")
        missing = lpips_unavailable(needs, cfg.lpips_weights)
        if missing:
            name, reason = next(iter(missing.items()))
            raise MissingWeightsError(f"--select {cfg.select} needs LPIPS {name}: {reason}")
        if not (self.dist.is_writer and cfg.val_every and self.val_chips):
            return None
        extra: tuple[str, ...] = ()
        if self.bands >= 3 and cfg.hr_size >= LPIPS_MIN_SIZE and not lpips_unavailable(
                LOGGED, cfg.lpips_weights):
            extra = LOGGED
        return ValidationScorer(cfg.select, (0, 1, 2), cfg.lpips_weights, str(self.device),
                                extra=extra)

    def _init_generator(self, path: str) -> dict[str, Any]:
        """Start the generator from a model file's weights (--init-from); its record."""
        import hashlib

        from satsr.inference.modelfile import load_model, resolve_model_path

        p = resolve_model_path(path)
        gen, meta = load_model(p)
        have, want = gen.arch(), self.G.arch()
        if (have["scale"], have["bands"]) != (want["scale"], want["bands"]):
            raise SatsrError(f"cannot start from {p}: it is a x{have['scale']} model of "
                             f"{have['bands']} bands, this run trains x{want['scale']} on "
                             f"{want['bands']} bands")
        diff = [k for k in want if have[k] != want[k]]
        if diff:
            opts = ", ".join(f"--{k.replace('_', '-')} {have[k]} (not {want[k]})" for k in diff)
            raise SatsrError(f"cannot start from {p}: its generator differs; give {opts}")
        self.G.load_state_dict(gen.state_dict())
        return {"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                "variant": meta.get("variant"), "iterations": meta.get("iterations"),
                "degradation": (meta.get("degradation") or {}).get("name", "bicubic")}

    # ---------------------------------------------------------------- run folder

    def _check_run_dir(self) -> dict[str, Any] | None:
        """Refuse to clobber a run; load the checkpoint for --resume. Read-only."""
        run = self.run_dir
        if run.exists() and not run.is_dir():
            raise SatsrError(f"run folder {run} exists and is not a folder")
        if self.resume:
            return load_checkpoint(run / CHECKPOINT_NAME)
        if run.is_dir() and any(run.iterdir()):
            if not self.overwrite:
                raise SatsrError(f"run folder {run} is not empty (use --resume to continue it "
                                 "or --overwrite to start again)")
            if not any((run / m).exists() for m in RUN_MARKERS):
                raise SatsrError(f"{run} is not empty and does not look like a satsr run: "
                                 "refusing to delete it with --overwrite")
        if not run.resolve().parent.is_dir():
            raise SatsrError(f"run folder's parent does not exist: {run.resolve().parent}")
        return None

    def _check_resumed_config(self, ckpt: dict[str, Any]) -> None:
        """Refuse, in one line, a --resume that changes what the run trains or measures.

        Every option outside CHANGEABLE_ON_RESUME must equal the checkpoint's (a key an older
        checkpoint lacks counts as its default), and so must the number of processes: the
        global batch is --batch-size x processes.
        """
        saved = ckpt["config"]
        changed = []
        for f in fields(TrainConfig):
            if f.name in CHANGEABLE_ON_RESUME:
                continue
            before = saved.get(f.name, f.default)
            now = getattr(self.cfg, f.name)
            if before != now:
                changed.append((f.name, before, now))
        if changed:
            names = ", ".join(n for n, _, _ in changed)
            was = ", ".join(f"{n}={b!r}" for n, b, _ in changed)
            given = ", ".join(f"{n}={a!r}" for n, _, a in changed)
            raise SatsrError(f"cannot change {names} of a resumed run ({self.run_dir} was "
                             f"trained with {was}; given {given}); only "
                             f"{', '.join(CHANGEABLE_ON_RESUME[2:])} may change")
        world = int(ckpt.get("sampler", {}).get("world", self.dist.world))
        if world != self.dist.world:
            raise SatsrError(f"cannot resume {self.run_dir} on {self.dist.world} process(es): "
                             f"it was trained on {world} (the global batch would change)")

    def _prepare_run_dir(self, ckpt: dict[str, Any] | None) -> None:
        """Rank 0 creates (or cleans, or trims for resume) the run folder."""
        if self.dist.is_writer:
            run = self.run_dir
            if ckpt is None and run.is_dir() and self.overwrite:
                shutil.rmtree(run)
            (run / "visualization").mkdir(parents=True, exist_ok=True)
            write_config(self.cfg, run / CONFIG_NAME)
            self._trim_csv(run / "log.csv", ["iteration", "elapsed_s"] + self.loss_names)
            self._trim_csv(run / "val.csv", VAL_COLUMNS)
        self._barrier()

    def _trim_csv(self, path: Path, header: list[str]) -> None:
        """Start a CSV with `header`, or keep only rows up to the resumed iteration."""
        rows: list[list[str]] = []
        if self.resume and path.is_file():
            with path.open(newline="") as f:
                reader = csv.reader(f)
                old = next(reader, None)
                if old == header:
                    rows = [r for r in reader if r and int(r[0]) <= self.iteration]
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    def _barrier(self) -> None:
        if self.dist.enabled:
            dist.barrier()

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (tensors, lists, dicts: weights_only-safe)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "iteration": self.iteration,
            "config": asdict(self.cfg),
            "variant": self.cfg.variant,
            "bands": self.bands,
            "dtype": self.index.dtype,
            "scaling": self.scaling.to_dict(),
            "generator": self.G.state_dict(),
            "phi": self.phi.state_dict() if self.phi is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_phi": self.opt_phi.state_dict() if self.opt_phi is not None else None,
            "rng": rng_state(),
            "sampler": {"seed": self.cfg.seed, "next_iteration": self.iteration,
                        "world": self.dist.world, "batch_size": self.cfg.batch_size},
            "train_split": self._train_split(),
            "elapsed_s": self.elapsed(),
            "selection": self.selection.state_dict(),
            "best_generator": self.best_state,
            "best_scores": self.best_scores,
            "baseline": self.baseline,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "init_from": self.init_from,
        }

    def _train_split(self) -> dict[str, Any]:
        """Identity of the train split: chip count and a digest of the chips' relative paths.

        Lets --resume accept a moved dataset (`data` may change) but not a different one.
        """
        import hashlib

        names = "\n".join(os.path.relpath(c, self.index.root) for c in self.train_chips)
        return {"chips": len(self.train_chips),
                "digest": hashlib.sha256(names.encode()).hexdigest()}

    def elapsed(self) -> float:
        """Seconds of training of this run, earlier (resumed) sessions included."""
        now = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return self._elapsed_before + now

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore networks, optimizers, iteration and RNG states from a checkpoint."""
        where = self.run_dir / CHECKPOINT_NAME
        try:
            self.G.load_state_dict(state["generator"])
            if self.phi is not None:
                if state.get("phi") is None:
                    raise KeyError("phi")
                self.phi.load_state_dict(state["phi"])
            self.opt_g.load_state_dict(state["opt_g"])
            if self.opt_phi is not None:
                self.opt_phi.load_state_dict(state["opt_phi"])
            set_rng_state(state["rng"])
            self.iteration = int(state["iteration"])
            self._elapsed_before = float(state.get("elapsed_s", 0.0))
            if state.get("selection") is not None:
                self.selection.load_state_dict(state["selection"])
            self.best_state = state.get("best_generator")
            self.best_scores = state.get("best_scores")
            self.baseline = state.get("baseline")
            self.init_from = state.get("init_from")
            if self.ema is not None:
                if state.get("ema") is None:
                    raise KeyError("ema")
                self.ema.load_state_dict(state["ema"])
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SatsrError(f"{where} does not fit this run's networks ({first[:200]})"
                             ) from None
        for opt in (self.opt_g, self.opt_phi):  # optimizer tensors follow the device
            if opt is None:
                continue
            for s in opt.state.values():
                for k, v in s.items():
                    if isinstance(v, torch.Tensor) and k != "step":
                        s[k] = v.to(self.device)

    def model_metadata(self) -> dict[str, Any]:
        """Metadata of RUN/model.safetensors (see satsr.inference.modelfile)."""
        gsd = self.index.gsd_range
        return {
            "variant": self.cfg.variant,
            "scale": self.cfg.scale,
            "bands": self.bands,
            "source_bands": self.index.meta.get("bands"),
            "dtype": self.index.dtype,
            "scaling": self.scaling.to_dict(),
            "gsd_range": list(gsd) if gsd else None,
            "iterations": self.iteration,
            "phi_depth": self.cfg.phi_depth,
            "degradation": self.degradation.to_dict(),
            "selection": {"criterion": self.cfg.select, "psnr_floor": self.cfg.psnr_floor,
                          "iteration": (self.iteration if self._exports_latest()
                                        else self.selection.best_iteration),
                          "scores": None if self._exports_latest() else self.best_scores,
                          "bicubic": self.baseline},
            "ema": self.cfg.ema or None,
            "init_from": self.init_from,
            **({"vgg_net": self.cfg.vgg_net} if self.variant.phi == "vgg" else {}),
            "data": {
                "dataset": str(self.index.root),
                "train_chips": len(self.train_chips),
                "val_chips": len(self.val_chips),
                "chip_size": list(self.chip_hw),
                "hr_size": self.cfg.hr_size,
                "sources": sorted({c.source for c in self.index.chips})[:20],
                "crs": sorted({c.crs for c in self.index.chips if c.crs})[:20],
            },
        }

    def save_checkpoint(self) -> None:
        """checkpoint.pt (atomic) and model.safetensors, from rank 0."""
        if not self.dist.is_writer:
            return
        from satsr.data.raster import atomic_path
        from satsr.inference.modelfile import save_model

        path = self.run_dir / CHECKPOINT_NAME
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        model = save_model(self.run_dir / "model.safetensors", self.export_generator(),
                           self.model_metadata())
        self._good_iteration = self.iteration
        self._note(path, model)

    def _exports_latest(self) -> bool:
        return self.cfg.select == "last" or self.best_state is None

    def export_generator(self) -> Generator:
        """The generator model.safetensors holds: the selected round's weights, else the
        latest (the EMA's when --ema is on)."""
        source = self.G if self.ema is None else cast(Generator, self.ema.shadow)
        if self._exports_latest():
            return source
        g = copy.deepcopy(source)
        assert self.best_state is not None
        g.load_state_dict(self.best_state)
        return g

    def _note(self, *paths: Path) -> None:
        for p in paths:
            if p not in self.written:
                self.written.append(p)

    # ---------------------------------------------------------------- one iteration

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def make_lr(self, hr: torch.Tensor, rng: np.random.Generator | None = None
                ) -> torch.Tensor:
        """LR = the run's degradation of HR (satsr.data.degrade, as eval does), in [-1, 1].

        Random degradations draw from `rng`, by default one seeded by (seed, iteration,
        rank): a resumed run draws exactly what a straight run would.
        """
        if rng is None:
            rng = np.random.default_rng([self.cfg.seed, _DEG_STREAM, self.iteration,
                                         self.dist.rank])
        with torch.no_grad():
            lr = self.degradation(hr, rng).clamp_(-1.0, 1.0)
        if self.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        return lr

    def forward_generator(self, hr: torch.Tensor) -> torch.Tensor:
        """G(downscale(hr)), through DDP when distributed (one forward per iteration)."""
        with self._autocast():
            return self.g_ddp(self.make_lr(hr))

    def phi_step(self, hr: torch.Tensor, fake: torch.Tensor) -> list[torch.Tensor]:
        """One optimizer step of Φ's network(s); the generator gets no gradient (detached)."""
        if self.opt_phi is None or self.phi_ddp is None:
            return []
        self.opt_phi.zero_grad(set_to_none=True)
        with self._autocast():
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
            with self._autocast():
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

    def step(self, hr: torch.Tensor) -> torch.Tensor:
        """One training iteration on an HR batch; the loss values (detached) in loss_names order."""
        if self.channels_last:
            hr = hr.contiguous(memory_format=torch.channels_last)
        fake = self.forward_generator(hr)
        values = self.phi_step(hr, fake) + self.generator_step(hr, fake)
        return torch.stack([v.detach().float() for v in values])

    # ---------------------------------------------------------------- logging, validation

    def _flush(self) -> None:
        """Write pending losses to log.csv; stop on NaN / inf (checked on every rank)."""
        if not self._pending:
            return
        its = [i for i, _ in self._pending]
        vals = torch.stack([v for _, v in self._pending])
        self._pending = []
        bad = (~torch.isfinite(vals)).any().to(torch.int32)
        if self.dist.enabled:
            flag = bad.to(self.device).reshape(1)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = flag[0]
        rows = vals.cpu().tolist()
        self._last_losses = dict(zip(self.loss_names, rows[-1], strict=True))
        if self.dist.is_writer:
            elapsed = f"{self.elapsed():.3f}"
            with (self.run_dir / "log.csv").open("a", newline="") as f:
                csv.writer(f).writerows([[i, elapsed, *(f"{v:.6g}" for v in r)]
                                         for i, r in zip(its, rows, strict=True)])
            self._note(self.run_dir / "log.csv")
        if int(bad):
            where = "(no other process)"
            for i, r in zip(its, rows, strict=True):
                for name, v in zip(self.loss_names, r, strict=True):
                    if not math.isfinite(v):
                        where = f"loss {name} is {v} at iteration {i}"
                        break
                else:
                    continue
                break
            kept = (f"the last good checkpoint (iteration {self._good_iteration}) is kept in "
                    f"{self.run_dir / CHECKPOINT_NAME}" if self._good_iteration is not None
                    else "no checkpoint had been written yet")
            raise TrainingDiverged(f"training diverged: {where}; stopped, {kept} (try a lower "
                                   "--lr)")

    def val_lr(self) -> torch.Tensor:
        """The val crops degraded once, with a fixed seed: every round scores the same LR."""
        if self._val_lr is None:
            rng = np.random.default_rng([self.cfg.seed, _VAL_DEG_STREAM])
            with torch.no_grad():
                self._val_lr = self.degradation(self.val_hr, rng).clamp_(-1.0, 1.0)
        return self._val_lr

    def _scores(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        if self.scorer is not None:
            return self.scorer(sr, hr)
        return {"psnr": float(psnr_unit(sr, hr).mean())}

    def _baseline_scores(self) -> dict[str, float]:
        """Bicubic's scores on the val crops (the reference of --psnr-floor), once a run."""
        if self.baseline is None:
            up = upsample(self.val_lr(), self.cfg.scale, "bicubic")
            self.baseline = self._scores(up, self.val_hr)
            self.selection.bicubic_psnr = self.baseline["psnr"]
            import json

            from satsr.data.raster import atomic_path

            with atomic_path(self.run_dir / "val_bicubic.json") as tmp:
                tmp.write_text(json.dumps(self.baseline, indent=1) + "\n")
            self._note(self.run_dir / "val_bicubic.json")
        return self.baseline

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Score the generator (its EMA with --ema) on the val crops: PSNR (peak-to-peak 2 in
        [-1, 1]), L2 (MSE) and LPIPS alex-l / vgg-l / pe-l where available; keep the weights
        of the best round by --select; write a row of val.csv and a PNG."""
        if not self.dist.is_writer or len(self.val_hr) == 0:
            return None
        self._baseline_scores()
        model = self.G if self.ema is None else self.ema.shadow
        was_training = model.training
        model.eval()
        srs = []
        try:
            lr_all = self.val_lr()
            for i in range(0, len(self.val_hr), self.cfg.batch_size):
                lr = lr_all[i:i + self.cfg.batch_size].to(self.device)
                if self.channels_last:
                    lr = lr.contiguous(memory_format=torch.channels_last)
                with self._autocast():
                    sr = model(lr)
                srs.append(sr.float().clamp(-1, 1).cpu())
        finally:
            model.train(was_training)
        sr_all = torch.cat(srs)
        scores = self._scores(sr_all, self.val_hr)
        rec = {"iteration": self.iteration, **scores,
               "l2": float(((sr_all - self.val_hr) ** 2).mean())}
        if self.selection.offer(self.iteration, scores) and self.cfg.select != "last":
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.best_scores = {k: v for k, v in rec.items() if k != "iteration"}
        cells = [str(self.iteration), f"{rec['psnr']:.6f}", f"{rec['l2']:.8g}"]
        cells += [f"{rec[k]:.6f}" if k in rec else "" for k in VAL_COLUMNS[3:]]
        with (self.run_dir / "val.csv").open("a", newline="") as f:
            csv.writer(f).writerow(cells)
        png = self.run_dir / "visualization" / f"iter_{self.iteration:06d}.png"
        n = min(4, len(sr_all))
        save_triples(png, lr_all[:n].float(), sr_all[:n], self.val_hr[:n], scale=self.cfg.scale)
        self._note(self.run_dir / "val.csv", png)
        return rec

    # ---------------------------------------------------------------- the loop

    def _install_sigint(self) -> Any:
        """First Ctrl-C: finish the iteration, save, stop. Second: abort at once."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True

        return signal.signal(signal.SIGINT, handler)

    def _should_stop(self) -> bool:
        if not self.dist.enabled:
            return self._stop
        flag = torch.tensor([int(self._stop)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def run(self) -> TrainResult:
        """Train up to cfg.iterations (continuing from a resumed iteration)."""
        cfg = self.cfg
        start = self.iteration
        result = TrainResult(self.run_dir, start, start, device=str(self.device))
        self._t0 = time.perf_counter()
        workers = cfg.workers
        if workers < 0:  # auto: loader processes only where compute is fast (CUDA)
            cpus = os.cpu_count() or 1
            workers = min(4, max(0, cpus // self.dist.world - 1)) if self.cuda else 0
        from satsr.data.crops import train_loader

        loader = train_loader(self.dataset, start, cfg.iterations, cfg.batch_size,
                              self.dist.rank, self.dist.world, workers, pin_memory=self.cuda,
                              worker_init_fn=_ignore_sigint)
        if cfg.val_every and start == 0:
            rec = self.validate()
            if rec:
                result.val.append(rec)
        self.G.train()
        if self.phi is not None:
            self.phi.train()
        old_handler = self._install_sigint()
        stopped = False
        try:
            with self._progress(start) as bar:
                for hr, idx in loader:
                    hr = hr.to(self.device, non_blocking=True)
                    values = self.step(hr)
                    self.iteration += 1
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
                    if self._should_stop():
                        stopped = True
                        break
            self._flush()
            if self.iteration > start:
                if cfg.val_every and not stopped:
                    rec = self.validate()
                    if rec:
                        result.val.append(rec)
                self.save_checkpoint()
            if self.dist.is_writer and not stopped:
                plot_losses(self.run_dir)
                self._note(self.run_dir / "losses.png")
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        self._barrier()
        result.iterations = self.iteration
        result.losses = dict(self._last_losses)
        result.written = list(self.written)
        result.seconds = time.perf_counter() - self._t0
        if stopped:
            raise TrainingStopped(
                f"interrupted at iteration {self.iteration}: checkpoint saved in "
                f"{self.run_dir / CHECKPOINT_NAME} (continue with --resume)")
        return result

    @contextlib.contextmanager
    def _progress(self, start: int) -> Iterator[Callable[[int], None]]:
        """A rich bar (rank 0, when enabled): iteration, latest losses, it/s."""
        if not (self.progress_enabled and self.dist.is_writer):
            yield lambda it: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
        )
        from rich.text import Text

        class SpeedColumn(ProgressColumn):
            def render(self, task: Any) -> Text:
                s = task.speed
                return Text(f"{s:.2f} it/s" if s else "-- it/s", style="progress.data.speed")

        with Progress(TextColumn(f"[bold]train {self.cfg.variant}"), BarColumn(),
                      MofNCompleteColumn(), SpeedColumn(), TextColumn("{task.description}"),
                      console=self.console, transient=False) as prog:
            task = prog.add_task("", total=self.cfg.iterations, completed=start)

            def update(it: int) -> None:
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
    owned = not (dist.is_available() and dist.is_initialized())
    try:
        trainer = Trainer(cfg, resume=resume, overwrite=overwrite, progress=progress,
                          console=console, on_step=on_step, record=record)
        return trainer.run()
    finally:
        if owned and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def resolve_config(options: dict[str, Any], config_file: str | Path | None = None,
                   resume: bool = False) -> TrainConfig:
    """Defaults < RUN/config.yaml (with --resume) < --config FILE < explicit options."""
    layers: list[dict[str, Any]] = []
    file_layer = read_config_file(config_file) if config_file else {}
    out = options.get("out") or file_layer.get("out")
    if resume and out and (Path(out) / CONFIG_NAME).is_file():
        saved = read_config_file(Path(out) / CONFIG_NAME)
        saved.pop("out", None)
        layers.append(saved)
    layers += [file_layer, {k: v for k, v in options.items() if v is not None}]
    return make_config(*layers)


# --------------------------------------------------------------------------- pictures


def _to_rgb(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, 3) uint8: first 3 bands as RGB, or band 1 as grey."""
    x = x.float().clamp(-1, 1)
    x = x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
    return ((x + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def save_triples(path: Path, lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor,
                 scale: int, rows: int = 4) -> None:
    """A PNG of rows [LR (nearest) | SR | HR] for the first `rows` images."""
    from PIL import Image

    from satsr.data.raster import atomic_path

    n = min(rows, len(hr))
    lines = []
    for i in range(n):
        up = torch.repeat_interleave(torch.repeat_interleave(lr[i], scale, 1), scale, 2)
        lines.append(np.concatenate([_to_rgb(up), _to_rgb(sr[i]), _to_rgb(hr[i])], axis=1))
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(lines, axis=0)).save(tmp, format="PNG")


def plot_losses(run: Path) -> Path | None:
    """RUN/losses.png: every loss of log.csv (and val PSNR) against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from satsr.data.raster import atomic_path

    log = run / "log.csv"
    if not log.is_file():
        return None
    with log.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return None
    header, data = rows[0], np.array(rows[1:], dtype=np.float64)
    names = header[2:]
    val, val_names = None, []
    if (run / "val.csv").is_file():
        with (run / "val.csv").open(newline="") as f:
            vrows = list(csv.reader(f))
        if len(vrows) > 1:
            val = np.array([[float(c) if c else np.nan for c in r] for r in vrows[1:]])
            val_names = [n for j, n in enumerate(vrows[0]) if j and n != "l2"
                         and np.isfinite(val[:, j]).any()]
    panels = len(names) + len(val_names)
    cols = min(3, panels)
    nrows = math.ceil(panels / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, (j, name) in zip(axes.flat, enumerate(names), strict=False):
        ax.plot(data[:, 0], data[:, 2 + j], lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("iteration")
    if val is not None:
        header = vrows[0]
        for k, name in enumerate(val_names):
            ax = axes.flat[len(names) + k]
            ax.plot(val[:, 0], val[:, header.index(name)], marker="o")
            ax.set_title("val PSNR (dB)" if name == "psnr" else f"val {name}")
            ax.set_xlabel("iteration")
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.tight_layout()
    out = run / "losses.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
