"""Data-parallel training on the CPU: 2 processes, gloo backend (what torchrun launches)."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import write_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _checksum(trainer) -> torch.Tensor:
    """Per-tensor (sum, weighted sum) of every trained parameter: equal iff ranks agree."""
    params = list(trainer.model.G.parameters()) + (list(trainer.model.phi.parameters())
                                             if trainer.model.phi is not None else [])
    out = []
    for p in params:
        v = p.detach().double().flatten()
        out += [v.sum(), (v * torch.arange(1, v.numel() + 1, dtype=torch.float64)).sum()]
    return torch.stack(out)


def _worker(rank: int, world: int, port: int, ds: str, run: str, out: str) -> None:
    """One rank: 2 iterations, then resume to 4; record data, checksums and files written."""
    from satsr.training.config import TrainConfig
    from satsr.training.loop import train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    sums: list[torch.Tensor] = []

    def on_step(trainer, it: int) -> None:
        sums.append(_checksum(trainer))

    cfg = dict(data=ds, out=run, variant="adv+rec", hr_size=32, batch_size=2, n_blocks=1,
               features=8, val_every=0, checkpoint_every=0, log_every=1, device="cpu", seed=3)
    first = train(TrainConfig(iterations=2, **cfg), on_step=on_step, record=True)
    second = train(TrainConfig(iterations=4, **cfg), resume=True, on_step=on_step,
                   record=True)
    torch.save({"sums": torch.stack(sums), "chips": first.chips_seen + second.chips_seen,
                "written": [str(p) for p in first.written + second.written],
                "start": second.start_iteration},
               Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_cpu_processes_share_work_stay_in_sync_and_resume(shared, tmp_path):
    # 8 train chips = 2 global batches of 2 x 2: every global batch lies inside one epoch
    ds = write_dataset(tmp_path / "ds", shared / "netherlands_aerial_0.25m.tif", 32,
                       {"train": 8, "val": 1})
    run = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(ds), str(run), str(tmp_path)), nprocs=2,
             join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(r0["sums"]) == 4 and r1["start"] == 2
    torch.testing.assert_close(r0["sums"], r1["sums"], rtol=0, atol=0)  # after every step
    for a, b in zip(r0["chips"], r1["chips"], strict=True):
        assert not set(a) & set(b)  # each rank reads different chips within a global batch
    assert r1["written"] == [] and any(p.endswith("checkpoint.pt") for p in r0["written"])
    with (run / "log.csv").open(newline="") as f:
        assert [r["iteration"] for r in csv.DictReader(f)] == ["1", "2", "3", "4"]
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 4 and ck["sampler"]["world"] == 2


class _NoNorm(torch.nn.Module):
    """Stands in for BatchNorm2d (identity) in the equivalence test below."""

    def __init__(self, num_features: int, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


#: adv+rec: both DDP-wrapped networks (G and Φ) train. At the default lr; at lr 1e-3 Φ's
#: second step is already chaotic (6 % gradient change from 1e-6 weight noise, in one process
#: too), so the float-level differences of reduction order no longer stay small.
EQUIV = dict(variant="adv+rec", hr_size=32, iterations=3, n_blocks=1, features=8,
             val_every=0, checkpoint_every=0, log_every=1, device="cpu", seed=4)


def _equiv_worker(rank: int, world: int, port: int, ds: str, run: str, out: str) -> None:
    """One rank of the equivalence test: batch 1 per process, BatchNorm replaced."""
    from satsr.training.config import TrainConfig
    from satsr.training.loop import Trainer

    torch.nn.BatchNorm2d = _NoNorm  # this spawned process only
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    t = Trainer(TrainConfig(data=ds, out=run, batch_size=1, **EQUIV))
    t.run()
    torch.save({"G": t.model.G.state_dict(), "phi": t.model.phi.state_dict()},
               Path(out) / f"eq{rank}.pt")
    dist.destroy_process_group()


def test_two_processes_equal_one_process_on_the_global_batch(shared, tmp_path, monkeypatch):
    """2 gloo ranks x batch 1 give the weights of 1 process x batch 2, when BatchNorm is out.

    DDP averages the ranks' gradients, each the mean over its own slice of the global batch,
    which is the gradient of the mean over the whole batch; the data of rank r is exactly
    the r-th slice of what one process reads (satsr.data.crops). BatchNorm breaks the equality on
    the CPU: without CUDA there is no SyncBatchNorm, so each rank normalises with the
    statistics of its own slice (generator residual blocks, trunk blocks 3-8, decoder), not
    those of the global batch. The test therefore swaps BatchNorm2d for the identity in both
    runs; with CUDA + NCCL the engine converts BatchNorm to SyncBatchNorm, which restores
    global statistics (not tested here: no GPU in the suite).
    """
    ds = write_dataset(tmp_path / "ds", shared / "netherlands_aerial_0.25m.tif", 32,
                       {"train": 6, "val": 1})
    mp.spawn(_equiv_worker, args=(2, _free_port(), str(ds), str(tmp_path / "ddp"),
                                  str(tmp_path)), nprocs=2, join=True)
    from satsr.training.config import TrainConfig
    from satsr.training.loop import Trainer

    monkeypatch.setattr(torch.nn, "BatchNorm2d", _NoNorm)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: tiny convolutions are slowest on busy threads
    try:
        one = Trainer(TrainConfig(data=str(ds), out=str(tmp_path / "one"), batch_size=2,
                                  **EQUIV))
        g_init = [p.detach().clone() for p in one.model.G.parameters()]
        one.run()
    finally:
        torch.set_num_threads(threads)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in list(one.model.G.modules()) + list(one.model.phi.modules()))
    two = torch.load(tmp_path / "eq0.pt", weights_only=True)
    assert torch.equal(two["G"]["head.0.weight"], torch.load(
        tmp_path / "eq1.pt", weights_only=True)["G"]["head.0.weight"])
    moved = max(float((a - b).abs().max()) for a, b in zip(g_init, one.model.G.parameters(),
                                                          strict=True))
    assert moved > 2e-4  # 3 Adam steps at lr 2e-4 move weights far beyond the tolerance
    for part, net in (("G", one.model.G), ("phi", one.model.phi)):
        for k, v in net.state_dict().items():
            torch.testing.assert_close(two[part][k], v, rtol=0, atol=1e-5, msg=f"{part} {k}")


@pytest.mark.slow
def test_torchrun_launches_the_cli_on_two_processes(shared, tmp_path):
    import os
    import subprocess
    import sys

    ds = write_dataset(tmp_path / "ds", shared / "netherlands_aerial_0.25m.tif", 32,
                       {"train": 4, "val": 1})
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "-m", "satsr", "train", str(ds), "-o", str(run),
           "--hr-size", "32", "-b", "2", "-n", "2", "--n-blocks", "1", "--features", "8",
           "--val-every", "0", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "model.safetensors").is_file()
