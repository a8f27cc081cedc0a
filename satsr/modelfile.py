"""Inference model files: generator weights + metadata in one safetensors file.

safetensors holds tensors and a string->string header only, so loading a model file never
executes code. The metadata lives under the header key "satsr" as JSON:

    format        1
    arch          Generator constructor arguments (bands, scale, n_blocks, features)
    variant       the GCN variant it was trained with ("adv+rec", "mse", ...)
    scale         upscaling factor
    bands         number of bands the model reads and writes
    source_bands  1-based band indexes of the training sources (informational)
    dtype         raster dtype of the training data
    scaling       BandScaling.to_dict(): the exact band scaling of training
    gsd_range     [min, max] ground resolution of the training chips (CRS units), or null
    satsr_version version that wrote the file
    iterations    training iterations done
    data          a short summary of the training data
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from satsr import __version__
from satsr.errors import SatsrError
from satsr.models.generator import Generator
from satsr.scaling import BandScaling

MODEL_NAME = "model.safetensors"
FORMAT = 1


def resolve_model_path(path: str | Path) -> Path:
    """A model file, a run folder holding `model.safetensors`, or a bundled model's name."""
    p = Path(path)
    if not p.exists() and len(p.parts) == 1:
        from satsr.bundled import bundled_model

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
    for key in ("scaling", "variant"):
        if key not in full:
            raise ValueError(f"model metadata needs {key!r}")
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in generator.state_dict().items()}
    from satsr.raster import atomic_path

    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"satsr": json.dumps(full)})
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a model file, without loading its weights."""
    from safetensors import safe_open

    p = resolve_model_path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SatsrError(f"{p} is not a readable model file ({exc!s})") from exc
    if "satsr" not in header:
        raise SatsrError(f"{p} is a safetensors file but not a satsr model (no satsr metadata)")
    try:
        meta = json.loads(header["satsr"])
        meta["arch"]["bands"]
        BandScaling.from_dict(meta["scaling"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SatsrError(f"{p} has corrupt satsr metadata ({exc!s})") from exc
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[Generator, dict[str, Any]]:
    """Load an inference model (file or run folder): (generator in eval mode, metadata)."""
    p = resolve_model_path(path)
    meta = read_metadata(p)
    try:
        tensors = load_file(str(p))
        gen = Generator(**{k: v if isinstance(v, str) else int(v)
                           for k, v in meta["arch"].items()})
        gen.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in tensors.items()})
    except (SafetensorError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise SatsrError(f"{p} holds weights that do not fit its architecture ({exc!s})") from exc
    return gen.to(device).eval(), meta


def model_scaling(meta: dict[str, Any]) -> BandScaling:
    """The band scaling a model was trained with."""
    return BandScaling.from_dict(meta["scaling"])
