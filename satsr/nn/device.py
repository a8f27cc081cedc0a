"""Device resolution, one rule for every verb: auto, cpu, cuda or cuda:N."""

from __future__ import annotations

import re
from pathlib import Path

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


#: CPU flags (Linux /proc/cpuinfo) of instructions that compute in bfloat16 natively.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX), from its Linux
    flags; None where they cannot be read (not Linux). With them bf16 autocast beats float32
    (1.8-1.9x per `adv+rec` step on 2 cores of an AMD EPYC with AVX-512 BF16); without them
    bf16 is emulated and likely slower (not measured here)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    if not flags:
        return None
    return any(f in flags for f in NATIVE_BF16_FLAGS)
