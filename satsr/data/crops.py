"""Training data: make-dataset chips -> scaled, augmented HR crops (LR is made on the fly).

The order of the data is a pure function of (seed, iteration, rank): sample number
`p = (iteration * world + rank) * batch + j` is chip `perm(seed, p // n)[p % n]` (a fresh
permutation of the n train chips every epoch, shared by all ranks, each rank reading its own
slice, like DistributedSampler), cropped, flipped and rotated by a generator seeded with
(seed, p). Resuming at iteration t therefore replays exactly what a straight run would read,
whatever the number of loader workers, with no sampler state to save.

Bands are scaled to [-1, 1] with the dataset index's BandScaling only (satsr.data.scaling), the
same numbers upscale and eval use. LR is the run's degradation (satsr.data.degrade, the very
code eval degrades with): the deterministic bicubic one on the training device (see
satsr.training.gcn), a random one (per-chip draws, JPEG through PIL: host work) in the loader
(`DegradedBatches`), so that loader workers run it beside the training step, with the draws
of (seed, iteration, rank) that the step itself would take.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from satsr.data.degrade import Degradation, train_rng
from satsr.data.raster import gdal_env, open_raster, read_window
from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError

_PERM_STREAM = 0x5EED
_AUG_STREAM = 0xA06


def chip_size(path: Path) -> tuple[int, int]:
    """(height, width) of a chip file, or one clear error."""
    with open_raster(path) as ds:
        return ds.height, ds.width


def read_crop(path: Path, row: int, col: int, size: int, bands: int) -> np.ndarray:
    """A (bands, size, size) window of a chip in the chip's dtype (one-line errors for a
    missing, unreadable or damaged chip: satsr.data.raster.read_window)."""
    with gdal_env(), open_raster(path) as ds:
        if ds.count != bands:
            raise SatsrError(f"chip {path} has {ds.count} bands, the dataset index says "
                             f"{bands}")
        return read_window(ds, None, Window(col, row, size, size), path, boundless=False)


def augment(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """One of the 8 dihedral transforms: rotate by k x 90°, then flip left-right."""
    x = np.rot90(x, k, axes=(1, 2))
    if flip:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(x)


class TrainCrops(torch.utils.data.Dataset):
    """Sample number p -> (HR crop in [-1, 1] as float32 (C, S, S), chip index).

    Indexed by the global sample number, not by chip: see the module docstring.
    """

    def __init__(self, chips: Sequence[Path], scaling: BandScaling, hr_size: int, seed: int,
                 chip_hw: tuple[int, int]) -> None:
        if not chips:
            raise SatsrError("the train split has no chips")
        self.chips = [Path(c) for c in chips]
        self.scaling = scaling
        self.hr_size = hr_size
        self.seed = seed
        self.chip_hw = chip_hw
        self._perm_epoch = -1
        self._perm = np.arange(0)

    def __len__(self) -> int:
        return len(self.chips)

    def permutation(self, epoch: int) -> np.ndarray:
        """The chip order of one epoch (same on every rank and every worker)."""
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, _PERM_STREAM, epoch])
            self._perm = rng.permutation(len(self.chips))
            self._perm_epoch = epoch
        return self._perm

    def chip_of(self, p: int) -> int:
        """Index (into the train chips) of the chip read for sample number p."""
        epoch, offset = divmod(p, len(self.chips))
        return int(self.permutation(epoch)[offset])

    def __getitem__(self, p: int) -> tuple[torch.Tensor, int]:
        idx = self.chip_of(p)
        rng = np.random.default_rng([self.seed, _AUG_STREAM, p])
        h, w = self.chip_hw
        s = self.hr_size
        row = int(rng.integers(0, h - s + 1))
        col = int(rng.integers(0, w - s + 1))
        k = int(rng.integers(0, 4))
        flip = bool(rng.integers(0, 2))
        raw = read_crop(self.chips[idx], row, col, s, self.scaling.bands)
        if raw.shape[1:] != (s, s):
            raise SatsrError(f"chip {self.chips[idx]} is smaller than {self.chip_hw} "
                             "(chips of one dataset must share a size)")
        x = augment(self.scaling.to_unit(raw), k, flip)
        return torch.from_numpy(x), idx


class IterationBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of sample numbers for iterations start..stop-1 of one rank."""

    def __init__(self, start: int, stop: int, batch: int, rank: int = 0,
                 world: int = 1) -> None:
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for t in range(self.start, self.stop):
            yield batch_positions(t, self.batch, self.rank, self.world)


def batch_positions(iteration: int, batch: int, rank: int = 0, world: int = 1) -> list[int]:
    """Global sample numbers rank `rank` reads at `iteration` (0-based)."""
    base = (iteration * world + rank) * batch
    return list(range(base, base + batch))


class DegradedBatches(torch.utils.data.Dataset):
    """Iteration t -> (HR batch (B, C, S, S), LR batch, chip indices) of one rank: the HR
    crops of `batch_positions(t, ...)` and their LR, `degradation(hr, train_rng(seed, t,
    rank)).clamp(-1, 1)` on the CPU in float32, bit for bit what `GCNModel.make_lr` gives
    for a random degradation (which also runs on the CPU), whichever process makes it."""

    def __init__(self, crops: TrainCrops, degradation: Degradation, batch: int, rank: int = 0,
                 world: int = 1) -> None:
        self.crops, self.degradation = crops, degradation
        self.batch, self.rank, self.world = batch, rank, world

    def __getitem__(self, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        items = [self.crops[p] for p in batch_positions(t, self.batch, self.rank, self.world)]
        hr = torch.stack([x for x, _ in items])
        with torch.no_grad():
            lr = self.degradation(hr, train_rng(self.crops.seed, t, self.rank)).clamp_(-1, 1)
        return hr, lr, torch.tensor([i for _, i in items])


def default_workers(cuda: bool, world: int = 1) -> int:
    """Loader processes of `workers: -1` (auto): only where compute is fast (CUDA)."""
    cpus = os.cpu_count() or 1
    return min(4, max(0, cpus // world - 1)) if cuda else 0


def train_loader(dataset: TrainCrops, start: int, stop: int, batch: int, rank: int = 0,
                 world: int = 1, workers: int = 0, pin_memory: bool = False,
                 worker_init_fn: Callable[[int], None] | None = None,
                 degradation: Degradation | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader over iterations start..stop-1 of (HR, chip indices) batches, or with
    `degradation` (a random one) of (HR, LR, chip indices) (`DegradedBatches`); the result
    does not depend on `workers`."""
    common: dict[str, Any] = {
        "num_workers": workers, "pin_memory": pin_memory, "persistent_workers": False,
        "prefetch_factor": 4 if workers else None,
        "worker_init_fn": worker_init_fn if workers else None}
    if degradation is not None:
        return torch.utils.data.DataLoader(
            DegradedBatches(dataset, degradation, batch, rank, world),
            sampler=range(start, stop), batch_size=None, **common)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=IterationBatches(start, stop, batch, rank, world), **common)


def load_val(chips: Sequence[Path], scaling: BandScaling, hr_size: int, limit: int,
             chip_hw: tuple[int, int]) -> torch.Tensor:
    """Centre crops of `limit` val chips spread evenly over the split (index order groups
    chips by source, so the first `limit` would often be one source's), in [-1, 1]."""
    h, w = chip_hw
    row, col = (h - hr_size) // 2, (w - hr_size) // 2
    chips = list(chips)
    if len(chips) > limit:
        chips = [chips[int(i)] for i in np.linspace(0, len(chips) - 1, limit).round()]
    out = [scaling.to_unit(read_crop(Path(c), row, col, hr_size, scaling.bands))
           for c in chips]
    if not out:
        return torch.empty(0, scaling.bands, hr_size, hr_size)
    return torch.from_numpy(np.stack(out))
