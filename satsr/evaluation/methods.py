"""Methods for the eval verb: the classical baselines and satsr model files.

A method maps LR (B, C, h, w) to SR, both in [-1, 1]; `model_method` converts between the
data's band scaling and the model's own when they differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError

# Deferred imports: torch and the satsr modules that import it are imported by the functions
# that use them (see satsr.evaluation.scoring).


CLASSICAL_METHODS = ("bicubic", "nearest")


@dataclass
class Method:
    """A super-resolution method: name and a function LR (B, C, h, w) -> SR, both in [-1, 1]."""

    name: str
    run: Callable[[Any], Any]
    source: str = ""


def classical_method(name: str, scale: int) -> Method:
    """The bicubic or nearest-neighbour baseline of satsr.data.degrade."""
    from satsr.data.degrade import upsample

    if name not in CLASSICAL_METHODS:
        raise SatsrError(f"unknown method {name!r} (choose from {', '.join(CLASSICAL_METHODS)})")
    return Method(name, lambda lr: upsample(lr, scale, name), name)


def model_method(path: str | Path, data_scaling: BandScaling, scale: int,
                 device: str = "cpu", name: str | None = None) -> Method:
    """A satsr model file (or run folder); checks bands and scale against the data."""
    import torch

    from satsr.inference.modelfile import load_model, model_scaling, read_metadata

    meta = read_metadata(path)
    bands = int(meta["arch"]["bands"])
    if bands != data_scaling.bands:
        raise SatsrError(f"model {path} reads {bands} bands but the data has "
                         f"{data_scaling.bands} bands")
    if int(meta["arch"]["scale"]) != scale:
        raise SatsrError(f"model {path} upscales x{meta['arch']['scale']} but this evaluation "
                         f"is x{scale} (pass scale or evaluate models of one scale together)",
                         option="scale")
    gen, meta = load_model(path, device)
    ms = model_scaling(meta)
    same = ms.to_dict() == data_scaling.to_dict()

    def run(lr: torch.Tensor) -> torch.Tensor:
        x = lr
        if not same:  # data units -> raster values -> the model's own units
            x = torch.from_numpy(ms.to_unit(data_scaling.from_unit(
                lr.cpu().numpy().transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3).copy())
        with torch.inference_mode():
            y = gen(x.to(device, torch.float32))
        if not same:
            y = torch.from_numpy(data_scaling.to_unit(ms.from_unit(
                y.cpu().numpy().transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3).copy())
        return y

    label = name or (Path(path).parent.name if Path(path).is_file()
                     and Path(path).name == "model.safetensors" else Path(path).stem)
    return Method(label, run, str(path))


def unique_names(names: Sequence[str]) -> list[str]:
    """Make method labels unique (a, a -> a, a#2)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def model_file_scale(path: str | Path) -> int:
    """The scale factor of a model file or run folder, from its metadata alone."""
    from satsr.inference.modelfile import read_metadata

    return int(read_metadata(path)["arch"]["scale"])
