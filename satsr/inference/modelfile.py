"""Inference model files: generator weights + metadata in one safetensors file.

safetensors holds tensors and a string->string header only, so loading a model file never
executes code; PyTorch/pickle checkpoints are refused unread. Loading checks the metadata
(architecture within sane bounds, band scaling, gsd_range), every tensor's name and shape
against the architecture, and that every weight is finite, each failure one line naming the
file (and the tensor). The metadata lives under the header key "satsr" as JSON:

    format        1
    arch          Generator constructor arguments (bands, scale, n_blocks, features)
    variant       the GCN variant it was trained with ("adv+rec", "mse", ...)
    scale         upscaling factor
    bands         number of bands the model reads and writes
    source_bands  1-based band indexes of the training sources (informational)
    dtype         raster dtype of the training data
    scaling       BandScaling.to_dict(): the exact band scaling of training
    gsd_range     [min, max] ground resolution of the training chips (CRS units), or null
    strength      (residual models, optional) share of the correction added, 0 to 1
    adaptive      (models with arch probe = 1, optional) [lo, hi]: per tile, the correction
                  is scaled by 1 below the probe's p = lo, 0 above hi (satsr.nn.aliasing)
    adaptive_scope (models with `adaptive`, optional) "tile" (the default: each tile's own
                  probe reading) or "raster": `satsr upscale` decides one share for the whole
                  raster from samples of it (satsr.inference.decision)
    jpeg_share    (models with adaptive_scope "raster", optional) the share kept on a raster
                  whose JPEG grid shows (satsr.inference.decision)
    zero_mean     (optional) remove each tile's mean correction per band
    satsr_version version that wrote the file
    weights_sha256 SHA-256 of the tensors (see weights_digest), verified on load; a file
                  without it (written before 0.2) loads with a warning that it is unverified
    iterations    training iterations done
    data          a short summary of the training data
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from satsr import __version__
from satsr.data.raster import atomic_path
from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError, SatsrWarning
from satsr.inference.bundled import bundled_model
from satsr.inference.decision import check_scope, check_share
from satsr.nn.aliasing import check_adaptive
from satsr.nn.generator import SCALES, UPSAMPLERS, Generator

MODEL_NAME = "model.safetensors"
FORMAT = 1


def resolve_model_path(path: str | Path) -> Path:
    """A model file, a run folder holding `model.safetensors`, or a bundled model's name."""
    p = Path(path)
    if not p.exists() and len(p.parts) == 1:
        found = bundled_model(str(path))
        if found is not None:
            return found.path
    if p.is_dir():
        p = p / MODEL_NAME
    if not p.is_file():
        raise SatsrError(f"model not found: {p} (not a file, run folder or bundled model "
                         f"name; `satsr models` lists those)")
    return p


def save_model(path: str | Path, generator: Generator, meta: dict[str, Any],
               half: bool = False) -> Path:
    """Write generator weights and metadata atomically (temp file beside `path`, then rename)."""
    path = Path(path)
    full = {"format": FORMAT, "arch": generator.arch(), "scale": generator.scale,
            "bands": generator.bands, "satsr_version": __version__, **meta}
    # the generator describes itself: a stale "arch" in `meta` (a model re-saved with a
    # probe added) must not win; keys keep their places, so nothing else changes
    full.update(arch=generator.arch(), scale=generator.scale, bands=generator.bands)
    for key in ("scaling", "variant"):
        if key not in full:
            raise ValueError(f"model metadata needs {key!r}")
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in generator.state_dict().items()}
    full["weights_sha256"] = weights_digest(tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"satsr": json.dumps(full)})
    return path


def _digest_update(h: Any, name: str, t: torch.Tensor) -> None:
    h.update(f"{name}\0{str(t.dtype)}\0{list(t.shape)}\0".encode())
    h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a model file's tensors as stored: each name, dtype, shape and bytes, in
    name order. Flipped bytes that leave every weight finite still change it."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        _digest_update(h, k, tensors[k].detach().cpu())
    return h.hexdigest()


#: First bytes of PyTorch / pickle checkpoints: a zip archive (torch.save) or a pickle stream
#: of protocol 2 to 5 (legacy torch.save, pickle.dump).
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")
#: Sanity bounds of the architecture a model file may ask for (a damaged or hostile header
#: must not make us build a network of absurd size before the weights are checked).
ARCH_LIMITS = {"bands": (1, 256), "n_blocks": (0, 256), "features": (1, 2048),
               "residual": (0, 1)}


def _refuse_pickle(p: Path) -> None:
    """One clear refusal for pickle checkpoints: never unpickle them, say why."""
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise SatsrError(f"cannot read model file {p} ({exc.strerror or exc})") from exc
    if head.startswith(PICKLE_MAGIC) or (p.suffix.lower() in PICKLE_SUFFIXES
                                         and not _looks_like_safetensors(head)):
        raise SatsrError(f"{p} is a PyTorch/pickle checkpoint, not a satsr model file; loading "
                         "it could run code, so satsr will not: give the run folder (its "
                         "model.safetensors), or convert the checkpoint to a .safetensors "
                         "model file with satsr.inference.modelfile.save_model if you trust "
                         "its source")


def _looks_like_safetensors(head: bytes) -> bool:
    """A little-endian u64 header length followed by a JSON object."""
    return len(head) == 8 and 0 < int.from_bytes(head, "little") < 100_000_000


def _one_line(exc: BaseException) -> str:
    """An exception's text squeezed onto one line (torch's messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_meta(p: Path, meta: Any) -> dict[str, Any]:
    """Validate the parts of the metadata that steer loading and running, naming the file."""


    def bad(what: str) -> SatsrError:
        return SatsrError(f"{p} has corrupt satsr metadata ({what})")

    if not isinstance(meta, dict):
        raise bad("not a JSON object")
    arch = meta.get("arch")
    if not isinstance(arch, dict):
        raise bad("no 'arch' record")
    unknown = set(arch) - {"bands", "scale", "n_blocks", "features", "residual", "upsample",
                           "probe"}
    if unknown:
        raise bad(f"unknown arch key {sorted(unknown)[0]!r}")
    for key, (lo, hi) in ARCH_LIMITS.items():
        v = arch.get(key, lo if key == "residual" else None)
        if type(v) is not int or not lo <= v <= hi:
            raise bad(f"arch {key} = {v!r}, expected an integer in {lo}..{hi}")
    if arch.get("scale") not in SCALES or type(arch.get("scale")) is not int:
        raise bad(f"arch scale = {arch.get('scale')!r}, expected one of {SCALES}")
    if arch.get("probe", 0) not in (0, 1) or type(arch.get("probe", 0)) is not int:
        raise bad(f"arch probe = {arch.get('probe')!r}, expected 0 or 1")
    if arch.get("probe") and not arch.get("residual"):
        raise bad("an aliasing probe needs a residual generator")
    if "adaptive" in meta:
        if not arch.get("probe"):
            raise bad("'adaptive' needs an aliasing probe in the architecture")
        try:
            check_adaptive(meta["adaptive"])
        except ValueError as exc:
            raise bad(str(exc)) from None
    _check_scope(meta, bad)
    if type(meta.get("zero_mean", False)) is not bool:
        raise bad(f"zero_mean = {meta['zero_mean']!r}, expected true or false")
    if arch.get("upsample", "shuffle") not in UPSAMPLERS:
        raise bad(f"arch upsample = {arch.get('upsample')!r}, expected one of {UPSAMPLERS}")
    for key in ("scale", "bands"):
        if key in meta and meta[key] != arch[key]:
            raise bad(f"{key} = {meta[key]!r} but the architecture says {arch[key]!r}")
    try:
        scaling = BandScaling.from_dict(meta["scaling"])
        kind = np.dtype(scaling.dtype).kind
    except (KeyError, TypeError) as exc:
        raise bad(f"band scaling: {_one_line(exc)}") from exc
    except SatsrError as exc:
        raise bad(str(exc)) from exc
    if kind not in "uif":
        raise bad(f"band scaling dtype {scaling.dtype!r} is not a raster dtype")
    if scaling.bands != arch["bands"]:
        raise bad(f"band scaling for {scaling.bands} bands, architecture for {arch['bands']}")
    rng = meta.get("gsd_range")
    if rng is not None and not (
            isinstance(rng, list) and len(rng) == 2
            and all(type(v) in (int, float) and math.isfinite(v) and v >= 0 for v in rng)):
        raise bad(f"gsd_range = {rng!r}, expected null or two numbers >= 0")
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a model file, without loading its weights (checked, naming the file)."""
    p = resolve_model_path(path)
    _refuse_pickle(p)
    try:
        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SatsrError(f"{p} is not a readable model file ({_one_line(exc)})") from exc
    if "satsr" not in header:
        raise SatsrError(f"{p} is a safetensors file but not a satsr model (no satsr metadata)")
    try:
        meta = json.loads(header["satsr"])
    except ValueError as exc:
        raise SatsrError(f"{p} has corrupt satsr metadata ({_one_line(exc)})") from exc
    return _check_meta(p, meta)


def _read_weights(p: Path, ref: dict[str, torch.Tensor], digest: Any = None
                  ) -> dict[str, torch.Tensor]:
    """The file's tensors, checked one by one against the architecture's `ref` (names, shapes,
    kinds) and for non-finite values, so a damaged file is named with its damaged tensor.
    With `digest` (the metadata's weights_sha256) the tensors must match it; without, a
    warning says the weights are unverified."""
    tensors: dict[str, torch.Tensor] = {}
    h = hashlib.sha256()
    with safe_open(str(p), framework="pt") as f:
        keys = set(f.keys())
        missing, extra = sorted(set(ref) - keys), sorted(keys - set(ref))
        if missing or extra:
            what = f"lacks tensor {missing[0]!r}" if missing else f"has extra tensor {extra[0]!r}"
            raise SatsrError(f"{p} holds weights that do not fit its architecture (it {what}; "
                             f"{len(missing)} missing, {len(extra)} unexpected)")
        for k in sorted(keys):
            t = f.get_tensor(k)
            want = ref[k]
            if tuple(t.shape) != tuple(want.shape) or \
                    t.is_floating_point() != want.is_floating_point():
                raise SatsrError(f"{p} holds weights that do not fit its architecture (tensor "
                                 f"{k!r} is {list(t.shape)} {t.dtype}, the architecture needs "
                                 f"{list(want.shape)} {want.dtype})")
            _digest_update(h, k, t)
            if t.is_floating_point():
                bad = int((~torch.isfinite(t)).sum())
                if bad:
                    raise SatsrError(f"{p} is damaged: tensor {k!r} holds {bad} non-finite "
                                     "value(s) (NaN or inf); use an intact copy of the model")
                t = t.float()
            tensors[k] = t
    if digest is None:
        warnings.warn(f"{p} has no weights checksum (written before satsr 0.2): its weights "
                      f"are unverified", SatsrWarning, stacklevel=3)
    elif not isinstance(digest, str) or h.hexdigest() != digest.lower():
        raise SatsrError(f"{p} is damaged: its weights do not match the checksum in its "
                         f"metadata; use an intact copy of the model")
    return tensors


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[Generator, dict[str, Any]]:
    """Load an inference model (file or run folder): (generator in eval mode, metadata).

    Refuses pickles unread, metadata that does not describe a sane generator, tensors that do
    not fit it, and non-finite weights, each in one line naming the file (and the tensor).
    """
    p = resolve_model_path(path)
    meta = read_metadata(p)
    arch = dict(meta["arch"])
    with torch.device("meta"):  # the expected names and shapes, without allocating them
        ref = Generator(**arch).state_dict()
    try:
        tensors = _read_weights(p, ref, meta.get("weights_sha256"))
        gen = Generator(**arch)
        gen.load_state_dict(tensors)
    except (SafetensorError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise SatsrError(f"{p} holds weights that do not fit its architecture "
                         f"({_one_line(exc)})") from exc
    if "strength" in meta:
        gen.strength = check_strength(meta["strength"], gen, f"{p}: its metadata's strength")
    apply_inference_options(gen, meta)
    return gen.to(device).eval(), meta


def _check_scope(meta: dict[str, Any], bad: Any) -> None:
    """`adaptive_scope` needs `adaptive`; `jpeg_share` needs adaptive_scope "raster"."""
    if "adaptive_scope" in meta:
        if "adaptive" not in meta:
            raise bad("'adaptive_scope' needs 'adaptive'")
        try:
            check_scope(meta["adaptive_scope"])
        except ValueError as exc:
            raise bad(str(exc)) from None
    if "jpeg_share" in meta:
        if meta.get("adaptive_scope") != "raster":
            raise bad("'jpeg_share' needs adaptive_scope 'raster'")
        try:
            check_share(meta["jpeg_share"])
        except ValueError as exc:
            raise bad(str(exc)) from None


def apply_inference_options(gen: Generator, meta: dict[str, Any]) -> None:
    """Set a residual generator's per-tile `adaptive` strength and `zero_mean` correction from
    (checked) metadata; absent keys leave the generator as trained."""
    gen.adaptive = check_adaptive(meta["adaptive"]) if "adaptive" in meta else None
    gen.zero_mean = bool(meta.get("zero_mean", False))


def strength_value(value: Any, what: str = "--strength") -> float:
    """A correction strength: a number in [0, 1] (NaN is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0.0 <= float(value) <= 1.0:
        raise SatsrError(f"{what} must be a number from 0 (bicubic) to 1 (the correction as "
                         f"trained), not {value!r}", option="strength")
    return float(value)


def check_strength(value: Any, gen: Generator, what: str = "--strength") -> float:
    """A correction strength for residual generator `gen`: a number in [0, 1]."""
    if not gen.residual:
        raise SatsrError(f"{what} applies to residual models only (a learned correction added "
                         "to bicubic); this one is a plain generator", option="strength")
    return strength_value(value, what)


def model_scaling(meta: dict[str, Any]) -> BandScaling:
    """The band scaling a model was trained with."""
    return BandScaling.from_dict(meta["scaling"])
