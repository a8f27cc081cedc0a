"""How LR is made from HR: the degradation pipelines that training and evaluation share.

A model learns to invert the degradation it was trained on, so training and eval call the
very same code. `downscale` is the historic default (anti-aliased bicubic); `Degradation`
composes realistic steps:

- ``blur``: a Gaussian PSF, given as ``sigma`` (HR pixels) or as ``mtf``, the optics' MTF at
  the LR grid's Nyquist frequency (what sensor specifications quote);
- ``downscale``: ``area`` (a detector integrating its footprint), ``bicubic``, ``bilinear``
  or ``nearest`` decimation, by the model's scale or, with ``ratio`` != 1, by ratio x scale
  (a reprojection to a grid of another pixel size), which a ``resize`` step then brings to
  the LR grid;
- ``resize``: resampling to the LR grid (``nearest``, ``bilinear``, ``bicubic``, ``area``);
- ``noise``: Gaussian ``read`` noise plus signal-dependent ``shot`` noise, both as fractions
  of each band's scaling range, so 0.01 means the same for uint8 and uint16 bands;
- ``jpeg``: JPEG compression at a ``quality``; 3-band chips are coded as RGB (with chroma
  subsampling, as deliveries are), other band counts band by band as greyscale.

Each parameter is a number or a ``[low, high]`` range drawn uniformly per chip; each step may
carry ``p`` (the probability that it is applied); ``one_of`` picks one of several weighted
sub-pipelines per chip; ``order: random`` shuffles the steps between two resampling steps.
All randomness comes from the `numpy.random.Generator` passed in, so a seed fixes every chip.

Tensors are (B, C, H, W) in the networks' unit range [-1, 1] (`satsr.data.scaling.BandScaling`);
a band's scaling range spans 2 units there.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from satsr.data.presets import EVAL_FAMILIES as EVAL_FAMILIES
from satsr.data.presets import PRESETS as PRESETS
from satsr.data.presets import describe_presets as describe_presets
from satsr.errors import DegradationError

#: Seed stream of the degradation's random draws of training batches.
DEG_STREAM = 0xDE6


def train_rng(seed: int, iteration: int, rank: int = 0) -> np.random.Generator:
    """The generator a training batch's degradation draws from: seeded by (seed, iteration,
    rank) only, so a resumed run draws exactly what a straight run would, wherever the LR is
    made (the training step or a loader worker, satsr.data.crops.DegradedBatches)."""
    return np.random.default_rng([seed, DEG_STREAM, iteration, rank])


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Anti-aliased bicubic downscale of a (B, C, H, W) tensor by an integer factor.

    H and W must be multiples of `scale`. Values are not clamped (callers work in [-1, 1]
    and clamp where they need to).
    """
    b, c, h, w = hr.shape
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not a multiple of the scale {scale}")
    return F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic",
                         align_corners=False, antialias=True)


def upsample(lr: torch.Tensor, scale: int, method: str = "bicubic") -> torch.Tensor:
    """Classical upsampling baselines: 'bicubic' (clamped to [-1, 1]) or 'nearest'."""
    if method == "nearest":
        return F.interpolate(lr, scale_factor=scale, mode="nearest")
    if method == "bicubic":
        out = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
        return out.clamp(-1.0, 1.0)
    raise ValueError(f"unknown upsampling method {method!r} (bicubic, nearest)")


RESAMPLERS = ("area", "bicubic", "bilinear", "nearest")
STEP_KINDS = ("blur", "downscale", "resize", "noise", "jpeg", "one_of")

#: Parameters each step accepts: name -> (lowest, highest) allowed value (None: unbounded).
_BOUNDS: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "blur": {"sigma": (0.0, 50.0), "mtf": (1e-4, 1.0)},
    "downscale": {"ratio": (0.25, 4.0)},
    "resize": {},
    "noise": {"read": (0.0, 1.0), "shot": (0.0, 1.0)},
    "jpeg": {"quality": (1.0, 100.0)},
}
_COMMON = ("p",)


Range = tuple[float, float]


@dataclass(frozen=True)
class Step:
    """One step of a pipeline: its kind, numeric parameters (ranges), method and probability."""

    kind: str
    params: dict[str, Range] = field(default_factory=dict)
    method: str | None = None
    p: float = 1.0
    choices: tuple[tuple[float, tuple[Step, ...]], ...] = ()  # one_of: (weight, steps)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "one_of":
            body: Any = [{"weight": w, "steps": [s.to_dict() for s in steps]}
                         for w, steps in self.choices]
            return {"one_of": body} if self.p == 1.0 else {"one_of": body, "p": self.p}
        d: dict[str, Any] = {k: (v[0] if v[0] == v[1] else [v[0], v[1]])
                             for k, v in self.params.items()}
        if self.method is not None:
            d["method"] = self.method
        if self.p != 1.0:
            d["p"] = self.p
        return {self.kind: d}


def _where(source: str, path: str) -> str:
    return f"degradation {source}: {path}"


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DegradationError(f"{where}: '{key}' must be a finite number or a [low, high] "
                               f"range, got {value!r}")
    return float(value)


def _range(value: Any, where: str, key: str, bounds: tuple[float | None, float | None]
           ) -> Range:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise DegradationError(f"{where}: '{key}' range must be [low, high], got {value!r}")
        lo, hi = (_number(v, where, key) for v in value)
    else:
        lo = hi = _number(value, where, key)
    if lo > hi:
        raise DegradationError(f"{where}: '{key}' range [{lo}, {hi}] has low > high")
    low, high = bounds
    if (low is not None and lo < low) or (high is not None and hi > high):
        raise DegradationError(f"{where}: '{key}' must lie in [{low}, {high}], got "
                               f"{value!r}")
    return (lo, hi)


def _parse_step(item: Any, source: str, path: str) -> Step:
    where = _where(source, path)
    if not isinstance(item, Mapping):
        raise DegradationError(f"{where}: a step must be a mapping like "
                               f"{{blur: {{mtf: 0.3}}}}, got {item!r}")
    kinds = [k for k in item if k in STEP_KINDS]
    unknown = [k for k in item if k not in STEP_KINDS and k != "p"]
    if unknown:
        raise DegradationError(f"{where}: unknown step '{unknown[0]}' (known: "
                               f"{', '.join(STEP_KINDS)})")
    if len(kinds) != 1:
        raise DegradationError(f"{where}: a step names exactly one of {', '.join(STEP_KINDS)}")
    kind = kinds[0]
    body = item[kind]
    p_raw = item.get("p", 1.0)
    if kind == "one_of":
        if not isinstance(body, Sequence) or isinstance(body, str) or not body:
            raise DegradationError(f"{where}: 'one_of' must be a non-empty list of "
                                   f"{{weight, steps}} entries")
        choices = []
        for i, entry in enumerate(body):
            sub = f"{path}.one_of[{i}]"
            if not isinstance(entry, Mapping) or "steps" not in entry:
                raise DegradationError(f"{_where(source, sub)}: each choice is a mapping with "
                                       f"'steps' (and an optional 'weight')")
            extra = set(entry) - {"steps", "weight"}
            if extra:
                raise DegradationError(f"{_where(source, sub)}: unknown key '{sorted(extra)[0]}'"
                                       f" (steps, weight)")
            weight = _number(entry.get("weight", 1.0), _where(source, sub), "weight")
            if weight <= 0:
                raise DegradationError(f"{_where(source, sub)}: 'weight' must be > 0")
            choices.append((weight, _parse_steps(entry["steps"], source, f"{sub}.steps")))
        return Step("one_of", p=_probability(p_raw, where), choices=tuple(choices))
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise DegradationError(f"{where}: the parameters of '{kind}' must be a mapping")
    if "p" in body:
        p_raw = body["p"]
    allowed = _BOUNDS[kind]
    params: dict[str, Range] = {}
    method = None
    for key, value in body.items():
        if key in _COMMON:
            continue
        if key == "method" and kind in ("downscale", "resize"):
            if value not in RESAMPLERS:
                raise DegradationError(f"{where}: 'method' must be one of "
                                       f"{', '.join(RESAMPLERS)}, got {value!r}")
            method = str(value)
            continue
        if key not in allowed:
            known = ", ".join([*allowed, *(["method"] if kind in ("downscale", "resize") else []),
                               "p"])
            raise DegradationError(f"{where}: unknown parameter '{key}' of '{kind}' "
                                   f"(known: {known})")
        params[key] = _range(value, where, key, allowed[key])
    if kind == "blur" and len(params) != 1:
        raise DegradationError(f"{where}: 'blur' takes exactly one of 'sigma' or 'mtf'")
    if kind == "noise" and not params:
        raise DegradationError(f"{where}: 'noise' needs 'read' and/or 'shot'")
    if kind == "jpeg" and "quality" not in params:
        raise DegradationError(f"{where}: 'jpeg' needs 'quality' (1..100)")
    if kind in ("downscale", "resize") and method is None:
        method = "bicubic" if kind == "downscale" else "bilinear"
    return Step(kind, params, method, _probability(p_raw, where))


def _probability(value: Any, where: str) -> float:
    p = _number(value, where, "p")
    if not 0.0 <= p <= 1.0:
        raise DegradationError(f"{where}: 'p' must lie in [0, 1], got {value!r}")
    return p


def _parse_steps(items: Any, source: str, path: str) -> tuple[Step, ...]:
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise DegradationError(f"{_where(source, path)}: 'steps' must be a non-empty list")
    return tuple(_parse_step(it, source, f"{path}[{i}]") for i, it in enumerate(items))


def _ends_on_lr_grid(steps: Sequence[Step], scale: int, source: str) -> None:
    """Refuse a pipeline that does not bring HR to exactly HR / scale on every path."""
    for path in _paths(steps):
        state = "hr"  # hr -> (downscaled to the LR grid | off the grid) -> lr
        for s in path:
            if s.kind == "downscale":
                if state != "hr":
                    raise DegradationError(f"degradation {source}: two 'downscale' steps on one "
                                           f"path; use 'resize' to reach the LR grid")
                exact = s.params.get("ratio", (1.0, 1.0)) == (1.0, 1.0)
                state = "lr" if exact else "off"
            elif s.kind == "resize":
                if state == "hr":
                    raise DegradationError(f"degradation {source}: 'resize' before 'downscale'")
                state = "lr"
        if state != "lr":
            what = ("never downscales" if state == "hr" else
                    "downscales by a ratio other than 1 without a 'resize' after it")
            raise DegradationError(f"degradation {source}: a path {what}, so its output is "
                                   f"not HR / {scale}")


def _paths(steps: Sequence[Step]) -> list[list[Step]]:
    """Every sequence of plain steps the pipeline can take (one_of expanded; p ignored)."""
    paths: list[list[Step]] = [[]]
    for s in steps:
        if s.kind == "one_of":
            paths = [p + sub for p in paths for _, choice in s.choices for sub in _paths(choice)]
        else:
            paths = [p + [s] for p in paths]
    return paths


def _sample(r: Range, rng: np.random.Generator) -> float:
    return r[0] if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def mtf_to_sigma(mtf: float, scale: int) -> float:
    """Sigma (HR pixels) of the Gaussian PSF whose MTF at the LR Nyquist frequency is `mtf`.

    A Gaussian's MTF is exp(-2 pi^2 sigma^2 f^2); the LR grid's Nyquist frequency is
    1 / (2 scale) cycles per HR pixel.
    """
    if mtf >= 1.0:
        return 0.0
    return math.sqrt(-math.log(mtf) / (2.0 * math.pi ** 2)) * 2.0 * scale


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders (sigma in pixels; 0 is identity)."""
    if sigma <= 0.05:
        return x
    radius = max(1, int(math.ceil(3.0 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def resample(x: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    """Resample to `size` (H, W): anti-aliased when shrinking; nearest samples pixel centres."""
    if tuple(x.shape[-2:]) == size:
        return x
    if method == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    if method == "area":
        return F.interpolate(x, size=size, mode="area")
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode=method, align_corners=False, antialias=shrink)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of one chip (C, H, W) quantised to 8 bits of its unit range."""
    u8 = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).numpy()
    planes = [u8.transpose(1, 2, 0)] if u8.shape[0] == 3 else list(u8)
    out = []
    for plane in planes:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(plane)).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf)))
    arr = out[0].transpose(2, 0, 1) if u8.shape[0] == 3 else np.stack(out)
    return torch.from_numpy(arr.astype(np.float32) / 127.5 - 1.0).to(x.dtype)


def add_noise(x: torch.Tensor, read: float, shot: float, rng: np.random.Generator
              ) -> torch.Tensor:
    """Read + shot noise; std = sqrt(read^2 + shot^2 * s) x band range, s in [0, 1] the signal."""
    signal = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    std = torch.sqrt(read ** 2 + shot ** 2 * signal) * 2.0
    z = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32)).to(x.dtype)
    return x + std * z


class Degradation:
    """A degradation pipeline: HR (B, C, H, W) -> LR (B, C, H / scale, W / scale).

    Build one with `Degradation.resolve(spec, scale)` from a preset name, a YAML/TOML/JSON
    file or a mapping; `to_dict()` is what model files record.
    """

    def __init__(self, name: str, steps: Sequence[Step], scale: int, order: str = "fixed",
                 source: str | None = None) -> None:
        if order not in ("fixed", "random"):
            raise DegradationError(f"degradation {source or name}: 'order' must be fixed or "
                                   f"random, got {order!r}")
        self.name = name
        self.steps = tuple(steps)
        self.scale = int(scale)
        self.order = order
        _ends_on_lr_grid(self.steps, self.scale, source or name)

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], scale: int, source: str = "<mapping>",
                  name: str | None = None) -> Degradation:
        """A pipeline from its mapping form: {name, order, steps: [...]}."""
        if not isinstance(doc, Mapping):
            raise DegradationError(f"degradation {source}: must be a mapping with 'steps'")
        extra = set(doc) - {"name", "order", "steps", "description"}
        if extra:
            raise DegradationError(f"degradation {source}: unknown key '{sorted(extra)[0]}' "
                                   f"(name, description, order, steps)")
        if "steps" not in doc:
            raise DegradationError(f"degradation {source}: missing 'steps'")
        steps = _parse_steps(doc["steps"], source, "steps")
        return cls(str(doc.get("name", name or Path(source).stem)), steps, scale,
                   str(doc.get("order", "fixed")), source)

    @classmethod
    def resolve(cls, spec: str | Path | Mapping[str, Any] | Degradation | None, scale: int
                ) -> Degradation:
        """A preset name (see PRESETS), a pipeline file, a mapping, or None for 'bicubic'."""
        if isinstance(spec, Degradation):
            if spec.scale != scale:
                return cls(spec.name, spec.steps, scale, spec.order)
            return spec
        if spec is None:
            spec = "bicubic"
        if isinstance(spec, Mapping):
            return cls.from_dict(spec, scale)
        text = str(spec)
        if text in PRESETS:
            return cls.from_dict(PRESETS[text], scale, source=f"preset '{text}'", name=text)
        path = Path(text)
        if not path.is_file():
            raise DegradationError(f"unknown degradation '{text}': not a preset "
                                   f"({', '.join(PRESETS)}) nor a file")
        return cls.from_dict(read_pipeline_file(path), scale, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "order": self.order,
                "steps": [s.to_dict() for s in self.steps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def is_bicubic(self) -> bool:
        """True when this is exactly today's anti-aliased bicubic (no randomness)."""
        return (len(self.steps) == 1 and self.steps[0].kind == "downscale"
                and self.steps[0].method == "bicubic" and self.steps[0].p == 1.0
                and self.steps[0].params.get("ratio", (1.0, 1.0)) == (1.0, 1.0))

    def __repr__(self) -> str:
        return f"Degradation({self.name!r}, scale={self.scale}, {len(self.steps)} steps)"

    # -- application ------------------------------------------------------------------------
    def __call__(self, hr: torch.Tensor, rng: np.random.Generator | None = None
                 ) -> torch.Tensor:
        """LR for each chip of `hr` (B, C, H, W), parameters drawn per chip from `rng`.

        The output is clamped to [-1, 1] only where a step needs it (JPEG); callers clamp.
        """
        b, c, h, w = hr.shape
        if h % self.scale or w % self.scale:
            raise DegradationError(f"HR size {h}x{w} is not a multiple of the scale "
                                   f"{self.scale}")
        if self.is_bicubic:
            return downscale(hr, self.scale)
        if rng is None:
            rng = np.random.default_rng(0)
        lr_size = (h // self.scale, w // self.scale)
        device, dtype = hr.device, hr.dtype
        x = hr.detach().to("cpu", torch.float32)
        out = [self._one(x[i:i + 1], rng, lr_size) for i in range(b)]
        return torch.cat(out).to(device, dtype)

    def _one(self, x: torch.Tensor, rng: np.random.Generator, lr_size: tuple[int, int]
             ) -> torch.Tensor:
        for step in self._ordered(self.steps, rng):
            x = self._apply(step, x, rng, lr_size)
        if tuple(x.shape[-2:]) != lr_size:  # guarded by _ends_on_lr_grid; a safety net
            raise DegradationError(f"degradation {self.name}: produced {tuple(x.shape[-2:])}, "
                                   f"not the LR size {lr_size}")
        return x

    def _ordered(self, steps: Sequence[Step], rng: np.random.Generator) -> list[Step]:
        if self.order == "fixed":
            return list(steps)
        out: list[Step] = []
        segment: list[Step] = []
        for s in steps:  # shuffle within runs of steps between resampling steps
            if s.kind in ("downscale", "resize", "one_of"):
                out += [segment[i] for i in rng.permutation(len(segment))]
                out.append(s)
                segment = []
            else:
                segment.append(s)
        out += [segment[i] for i in rng.permutation(len(segment))]
        return out

    def _apply(self, step: Step, x: torch.Tensor, rng: np.random.Generator,
               lr_size: tuple[int, int]) -> torch.Tensor:
        # Draw every parameter even when the step is skipped, so one chip's draws do not
        # shift with another step's outcome.
        applied = step.p >= 1.0 or rng.random() < step.p
        if step.kind == "one_of":
            weights = np.array([w for w, _ in step.choices], dtype=np.float64)
            pick = int(rng.choice(len(step.choices), p=weights / weights.sum()))
            chosen = step.choices[pick][1]
            if not applied:  # a skipped one_of still has to reach the LR grid
                chosen = (Step("downscale", method="bicubic"),)
            for sub in self._ordered(chosen, rng):
                x = self._apply(sub, x, rng, lr_size)
            return x
        values = {k: _sample(r, rng) for k, r in step.params.items()}
        if step.kind in ("downscale", "resize"):
            if step.kind == "downscale":
                factor = self.scale * (values.get("ratio", 1.0) if applied else 1.0)
                size = (max(1, round(x.shape[-2] / factor)), max(1, round(x.shape[-1] / factor)))
            else:
                size = lr_size
            return resample(x, size, step.method or "bicubic")
        if not applied:
            return x
        if step.kind == "blur":
            sigma = (values["sigma"] if "sigma" in values
                     else mtf_to_sigma(values["mtf"], self.scale))
            return gaussian_blur(x, sigma)
        if step.kind == "noise":
            return add_noise(x, values.get("read", 0.0), values.get("shot", 0.0), rng)
        if step.kind == "jpeg":
            return jpeg(x[0], int(round(values["quality"])))[None]
        raise AssertionError(step.kind)


def read_pipeline_file(path: str | Path) -> dict[str, Any]:
    """A pipeline mapping from a YAML (.yaml/.yml), TOML (.toml) or JSON (.json) file."""
    p = Path(path)
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        if p.suffix.lower() == ".toml":
            toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
            doc: Any = toml.loads(text)
        elif p.suffix.lower() == ".json":
            doc = json.loads(text)
        else:
            doc = yaml.safe_load(text)
    except Exception as exc:  # parse errors of any of the three formats
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DegradationError(f"cannot parse degradation file {p}: {first}") from None
    if not isinstance(doc, dict):
        raise DegradationError(f"degradation file {p} must hold a mapping with 'steps'")
    return doc
