"""Device resolution, one rule for every verb: auto, cpu, cuda or cuda:N."""

from __future__ import annotations

import re

import torch

from satsr.errors import SatsrError

#: What a device argument may say (shown in help texts and errors).
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """`auto` -> CUDA when available, else the CPU; `cuda` / `cuda:N` must exist here.

    `cuda` keeps no index (the current CUDA device), as torch reads it.
    """
    if isinstance(spec, torch.device):
        return spec
    name = spec.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or re.fullmatch(r"cuda:\d+", name):
        if not torch.cuda.is_available():
            raise SatsrError(f"device {name}: CUDA is not available on this machine (use cpu "
                             "or auto)", option="device")
        if ":" in name and int(name[5:]) >= torch.cuda.device_count():
            raise SatsrError(f"device {name}: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s), numbered from 0", option="device")
        return torch.device(name)
    raise SatsrError(f"device must be {DEVICE_CHOICES}, not {spec!r}", option="device")
