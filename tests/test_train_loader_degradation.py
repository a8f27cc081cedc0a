"""Issue 21: a random degradation runs in the loader (satsr.data.crops.DegradedBatches), so loader
workers make LR beside the training step, with exactly the draws the step itself would take
(seed, iteration, rank): the same LR bit for bit, whatever the workers, and on --resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_config, write_dataset

from satsr.data.crops import DegradedBatches, batch_positions, train_loader
from satsr.training.gcn import GCNModel
from satsr.training.loop import Trainer, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds(shared: Path, tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"), shared / "netherlands_aerial_0.25m.tif",
                         32, {"train": 6})


def cfg(ds: Path, out: Path, **kw):
    return tiny_config(ds, out, **{"variant": "adv+rec", "degradation": "realistic", **kw})


def test_loader_lr_is_the_steps_own_lr_bit_for_bit(ds: Path, tmp_path: Path) -> None:
    # same code, same CPU float32 arithmetic, same generator: equality is exact, not approximate
    t = Trainer(cfg(ds, tmp_path / "run"))
    batches = DegradedBatches(t.dataset, t.degradation, 2)
    seen = set()
    for it in range(12):  # enough iterations to draw every branch of 'realistic' several times
        hr, lr, idx = batches[it]
        want = torch.stack([t.dataset[p][0] for p in batch_positions(it, 2)])
        assert torch.equal(hr, want)
        assert idx.tolist() == [t.dataset.chip_of(p) for p in batch_positions(it, 2)]
        t.model.iteration = it
        assert torch.equal(lr, t.model.make_lr(hr)), it
        assert lr.shape == (2, 3, 8, 8) and lr.abs().max() <= 1
        seen.add(lr.sum().item())
    assert len(seen) == 12  # the draws differ from one iteration to the next


def test_workers_do_not_change_the_batches(ds: Path, tmp_path: Path) -> None:
    t = Trainer(cfg(ds, tmp_path / "run"))
    plain = list(train_loader(t.dataset, 3, 7, 2, degradation=t.degradation))
    forked = list(train_loader(t.dataset, 3, 7, 2, workers=2, degradation=t.degradation))
    assert len(plain) == len(forked) == 4
    for a, b in zip(plain, forked, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # ranks draw their own LR, as the step's (seed, iteration, rank) does
    other = DegradedBatches(t.dataset, t.degradation, 2, rank=1, world=2)[3]
    assert not torch.equal(other[1], DegradedBatches(t.dataset, t.degradation, 2, 0, 2)[3][1])


def test_bicubic_stays_on_the_training_device(ds: Path, tmp_path: Path, monkeypatch) -> None:
    calls: list[torch.Tensor | None] = []
    step = GCNModel.step

    def spy(self, hr, lr=None):
        calls.append(lr)
        return step(self, hr, lr)

    monkeypatch.setattr(GCNModel, "step", spy)
    Trainer(cfg(ds, tmp_path / "run", degradation="bicubic")).run()
    assert calls == [None, None]


def test_resumed_run_draws_the_same_lr_as_a_straight_one(ds: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    seen: dict[str, dict[int, torch.Tensor]] = {}
    key = {"run": ""}
    step = GCNModel.step

    def spy(self, hr, lr=None):
        assert lr is not None  # realistic: made by the loader
        seen.setdefault(key["run"], {})[self.iteration] = lr.clone()
        return step(self, hr, lr)

    monkeypatch.setattr(GCNModel, "step", spy)
    key["run"] = "straight"
    a = Trainer(cfg(ds, tmp_path / "a", iterations=5))
    a.run()
    key["run"] = "resumed"
    train(cfg(ds, tmp_path / "b", iterations=2))
    b = Trainer(cfg(ds, tmp_path / "b", iterations=5), resume=True)
    b.run()
    assert sorted(seen["straight"]) == sorted(seen["resumed"]) == [0, 1, 2, 3, 4]
    for it, lr in seen["straight"].items():
        assert torch.equal(lr, seen["resumed"][it]), it
    for (k, v), w in zip(a.model.G.state_dict().items(), b.model.G.state_dict().values(),
                         strict=True):
        torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6, msg=k)
