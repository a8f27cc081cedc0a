"""Seconds per iteration of `adv+rec`: satsr's training step vs a minimal hand-written loop.

Both train the same networks (SRResNet generator, shared DCGAN trunk + discriminator head +
decoder) with the same losses, batch and crop size, on the same HR batches drawn from crops
already in memory, in the same process, alternately over several rounds (the median round
counts, which tames a noisy shared machine). satsr's side is the real step,
`satsr.training.gcn.GCNModel.step` (degradation, G forward, Φ step, G step, EMA hook), plus
the NaN check any loop makes; the ratio is the step's overhead over plain PyTorch. Target:
ratio <= 1.10.

    .venv/bin/python benchmarks/train_step.py                 # HR 96, batch 10, CPU
    .venv/bin/python benchmarks/train_step.py --device cuda --hr-size 256 --iterations 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import write_dataset  # noqa: E402

from satsr.data.crops import TrainCrops, train_loader  # noqa: E402
from satsr.data.degrade import downscale  # noqa: E402
from satsr.data.index import DatasetIndex  # noqa: E402
from satsr.nn import Generator  # noqa: E402
from satsr.nn.device import resolve_device  # noqa: E402
from satsr.nn.phi import PhiNetworks, get_variant  # noqa: E402
from satsr.training.config import TrainConfig  # noqa: E402
from satsr.training.gcn import GCNModel  # noqa: E402


def hr_batches(crops: torch.Tensor, cfg: TrainConfig, n: int) -> list[torch.Tensor]:
    """`n` random HR batches (random crop, random flip) of the in-memory crops, seeded."""
    gen = torch.Generator().manual_seed(0)
    s, b = cfg.hr_size, cfg.batch_size
    out = []
    for _ in range(n):
        idx = torch.randint(len(crops), (b,), generator=gen)
        i, j = torch.randint(crops.shape[2] - s + 1, (2,), generator=gen).tolist()
        hr = crops[idx, :, i:i + s, j:j + s]
        out.append(hr.flip(3) if torch.rand(1, generator=gen) < 0.5 else hr)
    return out


def step_round(crops: torch.Tensor, cfg: TrainConfig, device: torch.device, warmup: int,
               n: int) -> float:
    """Seconds per iteration of satsr's GCNModel.step (after `warmup` iterations)."""
    model = GCNModel(cfg, crops.shape[1], device)
    model.train()
    ends = []
    for hr in hr_batches(crops, cfg, warmup + n):
        losses = model.step(hr.to(device))
        if not torch.isfinite(losses).all():  # what any loop checks: one sync per iteration
            raise RuntimeError("diverged")
        ends.append(time.perf_counter())
    return (ends[-1] - ends[warmup - 1]) / n


def loader_round(chips: TrainCrops, cfg: TrainConfig, device: torch.device, warmup: int,
                 n: int, workers: int = 0) -> float:
    """Seconds per iteration of `satsr train`'s inner loop (after `warmup` iterations): the
    train loader (HR crops of `chips`, whose hr_size must be cfg.hr_size; with a random
    degradation also the LR, made by satsr.data.crops.DegradedBatches) in `workers`
    processes, feeding GCNModel.step, plus the NaN check."""
    model = GCNModel(cfg, chips.scaling.bands, device)
    model.train()
    deg = None if model.degradation.is_bicubic else model.degradation
    loader = train_loader(chips, 0, warmup + n, cfg.batch_size, workers=workers,
                          pin_memory=device.type == "cuda", degradation=deg)
    ends = []
    for *batch, _idx in loader:
        losses = model.step(*(t.to(device, non_blocking=True) for t in batch))
        if not torch.isfinite(losses).all():
            raise RuntimeError("diverged")
        ends.append(time.perf_counter())
    return (ends[-1] - ends[warmup - 1]) / n


def minimal_round(crops: torch.Tensor, cfg: TrainConfig, device: torch.device, warmup: int,
                  n: int) -> float:
    """Seconds per iteration of the plain PyTorch loop over the same networks and losses."""
    torch.manual_seed(cfg.seed)
    amp = device.type == "cuda" and cfg.amp
    cl = torch.channels_last if device.type == "cuda" and cfg.channels_last else \
        torch.contiguous_format
    g = Generator(crops.shape[1], cfg.scale, cfg.n_blocks, cfg.features, cfg.residual,
                  cfg.upsample).to(device, memory_format=cl)
    nets = PhiNetworks(get_variant("adv+rec"), crops.shape[1]).to(device, memory_format=cl)
    trunk, head, dec = nets.trunk, nets.disc.head, nets.ae.decoder
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(nets.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    bce = F.binary_cross_entropy_with_logits
    ends = []
    for hr in hr_batches(crops, cfg, warmup + n):
        hr = hr.to(device).contiguous(memory_format=cl)
        ctx = torch.autocast("cuda", torch.bfloat16) if amp else torch.autocast("cpu",
                                                                                 enabled=False)
        lr = downscale(hr, cfg.scale).clamp(-1, 1)
        with ctx:
            fake = g(lr)
        # discriminator + auto-encoder step on the shared trunk
        opt_d.zero_grad(set_to_none=True)
        with ctx:
            fd = fake.detach()
            zr, zf = trunk(hr), trunk(fd)
            lr_, lf_ = head(zr).float(), head(zf).float()
            loss_d = (bce(lr_, torch.ones_like(lr_)) + bce(lf_, torch.zeros_like(lf_))
                      + F.mse_loss(dec(zr).float(), hr) + F.mse_loss(dec(zf).float(), fd.float()))
        loss_d.backward()
        opt_d.step()
        # generator step: Φ = first trunk block, plus 1e-3 adversarial
        nets.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        with ctx:
            with torch.no_grad():
                target = trunk.blocks[0](hr)
            x = trunk.blocks[0](fake)
            phi = x
            for blk in trunk.blocks[1:]:
                x = blk(x)
            logit = head(x).float()
            loss_g = (F.mse_loss(phi.float(), target.float())
                      + 1e-3 * bce(logit, torch.ones_like(logit)))
        loss_g.backward()
        opt_g.step()
        nets.requires_grad_(True)
        losses = torch.stack([loss_d.detach(), loss_g.detach()])
        if not torch.isfinite(losses).all():  # what any loop checks: one sync per iteration
            raise RuntimeError("diverged")
        ends.append(time.perf_counter())
    return (ends[-1] - ends[warmup - 1]) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hr-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=6, help="timed iterations per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--no-amp", action="store_true", help="CUDA: no bf16 / channels_last")
    ap.add_argument("--source", default=str(ROOT.parent / "shared" / "data" /
                                            "netherlands_aerial_0.25m.tif"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        chip = max(128, args.hr_size)
        ds = write_dataset(Path(tmp) / "ds", Path(args.source), chip, {"train": 20})
        cfg = TrainConfig(data=str(ds), out=str(Path(tmp) / "run"), variant="adv+rec",
                          hr_size=args.hr_size, batch_size=args.batch_size, val_every=0,
                          checkpoint_every=0, device=args.device, amp=not args.no_amp,
                          channels_last=not args.no_amp, workers=0 if args.device == "cpu"
                          else -1)
        device = resolve_device(args.device)
        index = DatasetIndex.read(ds)
        chips = TrainCrops([c.path for c in index.split("train")], index.scaling, chip, 0,
                           (chip, chip))
        crops = torch.stack([chips[p][0] for p in range(len(chips))])
        eng, mini = [], []
        for r in range(args.rounds):
            eng.append(step_round(crops, cfg, device, args.warmup, args.iterations))
            mini.append(minimal_round(crops, cfg, device, args.warmup, args.iterations))
            print(f"round {r + 1}: step {eng[-1]:.4f} s/it, minimal {mini[-1]:.4f} s/it, "
                  f"ratio {eng[-1] / mini[-1]:.3f}", flush=True)
        e, m = statistics.median(eng), statistics.median(mini)
        name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
        print(f"adv+rec HR {args.hr_size} batch {args.batch_size} on {name} "
              f"({torch.get_num_threads()} threads): GCNModel.step {e:.4f} s/it "
              f"({1 / e:.2f} it/s), "
              f"minimal loop {m:.4f} s/it ({1 / m:.2f} it/s), ratio {e / m:.3f} "
              f"(target <= 1.10)")


if __name__ == "__main__":
    main()
