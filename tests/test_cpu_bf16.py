"""`satsr train --cpu-bf16`: bf16 autocast and channels_last memory on the CPU, opt-in.

What is checked is that the option takes effect (the generator's convolutions compute in
bfloat16, its weights and the losses stay float32 and finite), that it is off by default, and
that a CPU without native bf16 instructions gets a warning. The speed is measured by
benchmarks/cpu_bf16.py, never here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import run_cli, write_dataset

from satsr.nn.device import cpu_has_native_bf16
from satsr.training.config import TrainConfig
from satsr.training.gcn import GCNModel

pytestmark = pytest.mark.usefixtures("one_thread")


def _conv_dtypes(model: GCNModel) -> list[torch.dtype]:
    """One step of `model` on a fixed batch; the dtypes the generator's last convolution
    produced during it."""
    seen: list[torch.dtype] = []
    model.G.tail.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    losses = model.step(hr)
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    assert all(p.dtype == torch.float32 for p in model.G.parameters())
    return seen


def test_cpu_bf16_runs_the_step_in_bfloat16_and_is_off_by_default() -> None:
    base = dict(variant="adv+rec", hr_size=32, n_blocks=1, features=8, device="cpu",
                residual=True, upsample="nearest")
    plain = GCNModel(TrainConfig(**base), bands=3)
    assert not plain.amp and not plain.channels_last
    assert set(_conv_dtypes(plain)) == {torch.float32}

    fast = GCNModel(TrainConfig(**base, cpu_bf16=True), bands=3)
    assert fast.amp and fast.channels_last
    assert fast.G.tail.weight.is_contiguous(memory_format=torch.channels_last)
    assert set(_conv_dtypes(fast)) == {torch.bfloat16}

    no_cl = GCNModel(TrainConfig(**base, cpu_bf16=True, channels_last=False), bands=3)
    assert no_cl.amp and not no_cl.channels_last


@pytest.mark.parametrize(("text", "expected"), [
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n", True),
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_tile amx_bf16\n", True),
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n", False),
    ("processor\t: 0\nmodel name\t: something\n", None),
])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path, text: str,
                                                expected: bool | None) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    assert cpu_has_native_bf16(info) is expected
    assert cpu_has_native_bf16(tmp_path / "missing") is None


def test_train_cli_takes_cpu_bf16_and_warns_where_the_cpu_lacks_it(
        shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ds = write_dataset(tmp_path / "ds", shared / "netherlands_aerial_0.25m.tif", 32,
                       {"train": 4, "val": 1})
    import satsr.training.loop as loop

    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    args = ["train", str(ds), "-o", str(tmp_path / "run"), "--hr-size", "32", "-b", "2", "-n", "2",
            "--n-blocks", "1", "--features", "8", "--val-every", "0", "--device", "cpu",
            "--cpu-bf16"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert "--cpu-bf16: this CPU has no native bf16 instructions" in err
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert "cpu_bf16: true" in (tmp_path / "run" / "config.yaml").read_text()
