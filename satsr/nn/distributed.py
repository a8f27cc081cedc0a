"""Data-parallel helpers: joining a torchrun job, each rank's device, rank checks. `satsr
train` and `satsr upscale` both use them, so they live beside satsr.nn.device.

Launched by torchrun (`torchrun --nproc-per-node N -m satsr train ...`), each rank reads its
own slice of every global batch (--batch-size is per process), gradients are averaged by
DistributedDataParallel, BatchNorm is SyncBatchNorm on CUDA. On the CPU (gloo) BatchNorm
statistics stay per process, because SyncBatchNorm needs CUDA. Only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from satsr.errors import SatsrError
from satsr.nn.device import resolve_device


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

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a 1-process job)."""
        if self.enabled:
            dist.barrier()

    def any(self, flag: bool | torch.Tensor, device: torch.device) -> bool:
        """Whether `flag` is set on any rank (every rank calls this together)."""
        value = torch.as_tensor(flag).to(torch.int32).reshape(1)
        if self.enabled:
            value = value.to(device)
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def setup_distributed(use_cuda: bool, *, backend: str | None = None,
                      timeout: timedelta | None = None) -> DistInfo:
    """Join the torchrun job described by the environment (or an already made group).

    The backend is NCCL when the ranks compute on CUDA, gloo on the CPU, unless `backend`
    says otherwise (upscale gathers a few Python objects at the end: gloo, whatever the
    device; see satsr.inference.batch). `timeout`: how long a collective waits (torch's
    default when None).
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise SatsrError("WORLD_SIZE > 1 but this PyTorch has no torch.distributed")
    dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"),
                            timeout=timeout)
    return DistInfo(dist.get_rank(), dist.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", "0")), True)


def training_device(spec: str, local_rank: int = 0) -> torch.device:
    """The device of one training process: as satsr.nn.device.resolve_device, with plain
    `cuda` meaning GPU `local_rank` (modulo the GPUs present), made the current one."""
    device = resolve_device(spec)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def destroy_group_if_owned(owned: bool) -> None:
    """Leave the process group this call of train() made (not one made by the caller)."""
    if owned and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
