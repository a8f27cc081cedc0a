"""`satsr train`: degradations, validation by LPIPS, --select, --psnr-floor, --ema, --init-from."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli, tiny_config, write_dataset

from satsr.errors import MissingWeightsError, SatsrError
from satsr.inference.modelfile import load_model, read_metadata
from satsr.training.config import TrainConfig
from satsr.training.loop import Trainer, train
from satsr.training.selection import GeneratorEMA, Selection, ValidationScorer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds(shared: Path, tmp_path_factory) -> Path:
    """6 train + 3 val chips of 32 px, 3 bands uint8 (LPIPS needs >= 32 px)."""
    return write_dataset(tmp_path_factory.mktemp("ds"), shared / "netherlands_aerial_0.25m.tif",
                         32, {"train": 6, "val": 3})


def cfg(ds: Path, out: Path, **kw) -> TrainConfig:
    return tiny_config(ds, out, **{"variant": "adv+rec", **kw})


def val_rows(run: Path) -> list[dict[str, str]]:
    with (run / "val.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_degradation_draws_per_iteration_and_is_recorded(ds: Path, tmp_path: Path) -> None:
    t = Trainer(cfg(ds, tmp_path / "run", degradation="realistic"))
    hr = t.val_hr[:2] if len(t.val_hr) else torch.rand(2, 3, 32, 32) * 2 - 1
    a = t.model.make_lr(hr)
    assert torch.equal(a, t.model.make_lr(hr))  # same iteration, same draws
    t.model.iteration = 1
    assert not torch.equal(a, t.model.make_lr(hr))
    plain = Trainer(cfg(ds, tmp_path / "plain"))
    from satsr.data.degrade import downscale

    assert torch.equal(plain.model.make_lr(hr), downscale(hr, 4).clamp(-1, 1))
    t.run()
    meta = read_metadata(tmp_path / "run" / "model.safetensors")
    assert meta["degradation"]["name"] == "realistic"
    assert meta["degradation"]["steps"][1]["one_of"]


def test_resume_is_exact_with_a_random_degradation(ds: Path, tmp_path: Path) -> None:
    a = Trainer(cfg(ds, tmp_path / "a", degradation="sensor", iterations=4))
    a.run()
    train(cfg(ds, tmp_path / "b", degradation="sensor", iterations=2))
    b = Trainer(cfg(ds, tmp_path / "b", degradation="sensor", iterations=4), resume=True)
    b.run()
    for (k, v), w in zip(a.model.G.state_dict().items(), b.model.G.state_dict().values(),
                         strict=True):
        torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(SatsrError, match="cannot change degradation"):
        Trainer(cfg(ds, tmp_path / "b", degradation="realistic", iterations=6), resume=True)


@pytest.mark.parametrize("spec, msg", [
    ("sharp", "unknown degradation 'sharp'"),
    ("FILE", "'sigma' must lie in"),
])
def test_bad_degradation_is_one_line_before_anything_is_written(ds: Path, tmp_path: Path,
                                                                 capsys, spec, msg) -> None:
    if spec == "FILE":
        spec = str(tmp_path / "deg.yaml")
        Path(spec).write_text("steps:\n  - blur: {sigma: -2}\n  - downscale: {}\n")
    run = tmp_path / "run"
    code, _, err = run_cli(["train", str(ds), "-o", str(run), "--degradation", spec,
                            "--iterations", "1", "--hr-size", "32", "--device", "cpu"], capsys)
    assert code != 0 and msg in err and err.count("\n") == 1
    assert not run.exists()


def test_select_pe_l_logs_lpips_and_keeps_the_best_round(ds: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    t = Trainer(cfg(ds, run, select="pe-l", val_every=1, iterations=4, lr=1e-3))
    t.run()
    rows = val_rows(run)
    assert [r["iteration"] for r in rows] == ["0", "1", "2", "3", "4"]
    pe = [float(r["pe-l"]) for r in rows]
    for r in rows:
        assert float(r["pe-l"]) == pytest.approx((float(r["alex-l"]) + float(r["vgg-l"])) / 2)
    best = int(np.argmin(pe))
    meta = read_metadata(run / "model.safetensors")
    assert meta["selection"]["criterion"] == "pe-l"
    assert meta["selection"]["iteration"] == best
    assert meta["selection"]["scores"]["pe-l"] == pytest.approx(pe[best])
    bicubic = json.loads((run / "val_bicubic.json").read_text())
    assert meta["selection"]["bicubic"]["psnr"] == pytest.approx(bicubic["psnr"])
    # the model file holds that round's weights: scoring it again gives its pe-l
    gen, _ = load_model(run / "model.safetensors")
    with torch.no_grad():
        sr = gen(t.val_lr()).clamp(-1, 1)
    again = ValidationScorer("pe-l")(sr, t.val_hr)["pe-l"]
    assert again == pytest.approx(pe[best], rel=1e-4)


def test_selection_floor_and_criteria() -> None:
    s = Selection("pe-l", floor_db=1.0, bicubic_psnr=30.0)
    assert s.offer(0, {"psnr": 30.5, "pe-l": 0.40})
    assert not s.offer(1, {"psnr": 28.9, "pe-l": 0.10})  # better pe-l, below the floor
    assert s.offer(2, {"psnr": 29.1, "pe-l": 0.30})
    assert not s.offer(3, {"psnr": 35.0, "pe-l": 0.35})
    assert s.best_iteration == 2
    p = Selection("psnr")
    for i, v in enumerate([20.0, 22.0, 21.0]):
        p.offer(i, {"psnr": v})
    assert p.best_iteration == 1
    last = Selection("last")
    assert all(last.offer(i, {"psnr": 0.0}) for i in range(3)) and last.best_iteration == 2
    state = s.state_dict()
    t = Selection("pe-l")
    t.load_state_dict(state)
    assert (t.best_iteration, t.best_value, t.bicubic_psnr) == (2, 0.30, 30.0)


def test_select_needs_validation_rgb_and_weights(ds: Path, shared: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    no_val = write_dataset(tmp_path / "nv", shared / "netherlands_aerial_0.25m.tif", 32,
                           {"train": 4})
    with pytest.raises(SatsrError, match="needs validation, but dataset .* has no val"):
        Trainer(cfg(no_val, tmp_path / "r1", select="pe-l", val_every=1))
    with pytest.raises(SatsrError, match="needs validation, but val_every is 0"):
        Trainer(cfg(ds, tmp_path / "r2", select="psnr", val_every=0))
    two = write_dataset(tmp_path / "two", shared / "naip_rgbn_5m.tif", 32,
                        {"train": 4, "val": 1}, bands=[1, 4])
    with pytest.raises(SatsrError, match=r"LPIPS on 3 bands \(or on one, as grey\); this "
                                         r"dataset has 2"):
        Trainer(cfg(two, tmp_path / "r3", select="vgg-l", val_every=1))
    import satsr.evaluation.metrics

    monkeypatch.setattr(satsr.evaluation.metrics, "locate_backbone", lambda net, d=None: None)
    with pytest.raises(MissingWeightsError, match=r"select vgg-l needs LPIPS vgg-l: vgg16 "
                                                  r"ImageNet weights not found: put "
                                                  r"vgg16-397923af.pth .* in \S+checkpoints"):
        Trainer(cfg(ds, tmp_path / "r4", select="vgg-l", val_every=1))
    for r in ("r1", "r2", "r3", "r4"):
        assert not (tmp_path / r).exists()


def test_ema_is_the_moving_average_of_the_weights() -> None:
    net = torch.nn.Linear(3, 2)
    ema = GeneratorEMA(net, 0.9)
    start = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)
    for s, p0 in zip(ema.shadow.parameters(), start, strict=True):
        torch.testing.assert_close(s, p0 + 0.1)
    with pytest.raises(SatsrError):
        GeneratorEMA(net, 1.0)


def test_ema_run_saves_the_averaged_weights_and_resumes_exactly(ds: Path, tmp_path: Path
                                                                ) -> None:
    a = Trainer(cfg(ds, tmp_path / "a", ema=0.5, iterations=4))
    a.run()
    train(cfg(ds, tmp_path / "b", ema=0.5, iterations=2))
    b = Trainer(cfg(ds, tmp_path / "b", ema=0.5, iterations=4), resume=True)
    b.run()
    assert a.model.ema is not None and b.model.ema is not None
    for v, w in zip(a.model.ema.state_dict().values(), b.model.ema.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6)
    gen, meta = load_model(tmp_path / "a" / "model.safetensors")
    assert meta["ema"] == 0.5
    for (k, v), w in zip(gen.state_dict().items(), a.model.ema.state_dict().values(), strict=True):
        torch.testing.assert_close(v, w, msg=k)
    assert any(not torch.equal(v, w)
               for v, w in zip(a.model.G.state_dict().values(),
                               a.model.ema.state_dict().values(), strict=True))


def test_init_from_starts_from_a_model_and_refuses_other_shapes(ds: Path, shared: Path,
                                                                tmp_path: Path) -> None:
    train(cfg(ds, tmp_path / "pre", variant="mse", iterations=3, residual=True))
    pre = tmp_path / "pre" / "model.safetensors"
    t = Trainer(cfg(ds, tmp_path / "fine", iterations=1, residual=True, init_from=str(pre)))
    gen, _ = load_model(pre)
    for (k, v), w in zip(gen.state_dict().items(), t.model.G.state_dict().values(), strict=True):
        torch.testing.assert_close(v, w, msg=k)
    t.run()
    rec = read_metadata(tmp_path / "fine" / "model.safetensors")["init_from"]
    assert rec["variant"] == "mse" and rec["iterations"] == 3 and len(rec["sha256"]) == 64
    with pytest.raises(SatsrError, match="cannot start from .* it is a x4 model of 3 bands, "
                                         "this run trains x2"):
        Trainer(cfg(ds, tmp_path / "x2", scale=2, residual=True, init_from=str(pre)))
    with pytest.raises(SatsrError, match="n_blocks 1 \\(not 2\\)"):
        Trainer(cfg(ds, tmp_path / "nb", n_blocks=2, residual=True, init_from=str(pre)))
    rgbn = write_dataset(tmp_path / "rgbn", shared / "naip_rgbn_5m.tif", 32, {"train": 4},
                         bands=[1, 2, 3, 4])
    with pytest.raises(SatsrError, match="of 3 bands, this run trains x4 on 4 bands"):
        Trainer(cfg(rgbn, tmp_path / "b4", residual=True, init_from=str(pre)))
