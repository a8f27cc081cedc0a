"""The CUDA path: bf16 training steps, the tiled engine on the GPU, `satsr train --device cuda`.

Skipped without a CUDA device (this project's CI machine has none); `examples/gpu_run.py`
runs them on a lent GPU before its timed training run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import FIXTURES, run_cli, tiny_config, write_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds", FIXTURES / "netherlands_aerial_0.25m.tif", 64,
                         {"train": 6, "val": 2, "test": 2})


def test_bf16_step_is_finite_and_trains(dataset: Path, tmp_path: Path) -> None:
    from satsr.training.gcn import GCNModel

    cfg = tiny_config(dataset, tmp_path / "run", variant="adv+rec", device="cuda", amp=True,
                      hr_size=64, batch_size=4, n_blocks=2, features=16)
    model = GCNModel(cfg, 3, "cuda")
    assert model.amp and model.channels_last
    before = {k: v.detach().clone() for k, v in model.G.state_dict().items()}
    hr = torch.rand(4, 3, 64, 64, device="cuda") * 2 - 1
    for _ in range(3):
        losses = model.step(hr)
        assert torch.isfinite(losses).all(), losses
    after = model.G.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point()), \
        "autocast must leave the weights in float32"


def test_engine_on_cuda_matches_cpu() -> None:
    from satsr.inference.engine import super_resolve
    from satsr.nn.generator import Generator

    torch.manual_seed(0)
    gen = Generator(3, 4, n_blocks=2, features=16).eval()
    lr = np.random.default_rng(0).uniform(-1, 1, (3, 80, 72)).astype(np.float32)
    cpu = super_resolve(lr, gen, tile=48, overlap=16, device="cpu")
    gpu = super_resolve(lr, gen.cuda(), tile=48, overlap=16, device="cuda")
    assert gpu.shape == cpu.shape == (3, 320, 288)
    assert np.abs(gpu - cpu).max() < 1e-3


def test_train_cli_on_cuda_writes_a_cpu_loadable_model(dataset: Path, tmp_path: Path,
                                                       capsys) -> None:
    from satsr.inference.modelfile import load_model

    run = tmp_path / "run"
    code, _, err = run_cli(["train", str(dataset), "-o", str(run), "--device", "cuda",
                            "--variant", "adv+rec", "-n", "4", "-b", "2", "--hr-size", "64",
                            "--n-blocks", "2", "--features", "16", "--val-every", "2",
                            "--val-chips", "2", "--checkpoint-every", "2"], capsys)
    assert code == 0, err
    gen, meta = load_model(run / "model.safetensors", "cpu")
    assert meta["iterations"] == 4
    with torch.inference_mode():
        y = gen(torch.zeros(1, 3, 16, 16))
    assert y.shape == (1, 3, 64, 64) and torch.isfinite(y).all()
