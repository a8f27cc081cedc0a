"""Band scaling contract, architectures and model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError
from satsr.inference.modelfile import load_model, read_metadata, save_model
from satsr.nn import AutoEncoder, Discriminator, Generator, Trunk


def test_uint8_scaling_maps_0_255_to_unit_range_and_back_exactly():
    s = BandScaling.for_uint8(3)
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(3, 0)
    y = s.to_unit(x)
    assert y.dtype == np.float32 and y.min() == -1.0 and y.max() == 1.0
    np.testing.assert_allclose(y[0, 0, 1], 1 / 127.5 - 1, atol=1e-7)
    back = s.from_unit(y)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, x)


def test_uint16_scaling_uses_recorded_percentiles_and_clips_tails():
    stats = [{"p0.1": 100.0, "p99.9": 1100.0}, {"p0.1": 0.0, "p99.9": 60000.0}]
    s = BandScaling.from_stats("uint16", stats)
    x = np.array([[[100, 600, 1100, 5]], [[0, 30000, 60000, 65535]]], dtype=np.uint16)
    y = s.to_unit(x)
    np.testing.assert_allclose(y[0, 0, :3], [-1, 0, 1], atol=1e-6)
    assert y[0, 0, 3] == -1.0 and y[1, 0, 3] == 1.0  # tails saturate
    back = s.from_unit(y)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back[:, :, :3], x[:, :, :3])
    assert back[0, 0, 3] == 100 and back[1, 0, 3] == 60000


def test_float_scaling_round_trips_and_serialises():
    s = BandScaling.from_stats("float32", [{"p0.1": 0.01, "p99.9": 0.6}])
    x = np.linspace(0.01, 0.6, 50, dtype=np.float32).reshape(1, 5, 10)
    np.testing.assert_allclose(s.from_unit(s.to_unit(x)), x, atol=1e-6)
    assert BandScaling.from_dict(s.to_dict()) == s


def test_scaling_refuses_wrong_band_count():
    with pytest.raises(SatsrError, match="3 bands"):
        BandScaling.for_uint8(3).to_unit(np.zeros((4, 2, 2), np.uint8))


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("size", [(8, 8), (13, 21)])
def test_generator_is_fully_convolutional_with_tanh_range(scale, size):
    g = Generator(bands=4, scale=scale).eval()
    x = torch.randn(2, 4, *size) * 3
    with torch.no_grad():
        y = g(x)
    assert y.shape == (2, 4, size[0] * scale, size[1] * scale)
    assert y.abs().max() <= 1.0


def test_generator_has_ten_blocks_of_per_channel_prelu():
    g = Generator()
    assert len(g.blocks) == 10
    prelus = [m for m in g.modules() if isinstance(m, torch.nn.PReLU)]
    assert prelus and all(p.weight.numel() == 64 for p in prelus)
    assert g.head[0].kernel_size == (9, 9) and g.tail.kernel_size == (9, 9)


def test_discriminator_gives_patch_logits_for_any_size_and_phi_is_first_block():
    d = Discriminator(bands=3)
    for hw in (64, 96):
        out = d(torch.randn(2, 3, hw, hw))
        assert out.shape == (2, 1, hw // 16, hw // 16)
    x = torch.randn(1, 3, 32, 32)
    phi = d.trunk.features(x, 1)
    assert torch.equal(phi, d.trunk.blocks[0](x))
    assert phi.shape == (1, 64, 32, 32)
    bns = [m for m in d.trunk.blocks[:2].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not bns  # no batch norm in the first two blocks


def test_autoencoder_shares_trunk_and_reconstructs_input_shape():
    trunk = Trunk(4)
    d, ae = Discriminator(4, trunk), AutoEncoder(4, trunk)
    assert d.trunk is ae.trunk
    y = ae(torch.randn(2, 4, 64, 48))
    assert y.shape == (2, 4, 64, 48) and y.abs().max() <= 1.0


def test_model_file_round_trip_without_code_execution(tmp_path):
    g = Generator(bands=3, scale=4, n_blocks=2).eval()
    meta = {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict(), "iterations": 7}
    path = save_model(tmp_path / "model.safetensors", g, meta)
    g2, meta2 = load_model(tmp_path)  # a run folder works too
    assert meta2["variant"] == "mse" and meta2["arch"]["n_blocks"] == 2
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(g(x), g2(x))
    assert read_metadata(path)["iterations"] == 7


def test_corrupt_and_foreign_model_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(SatsrError, match="not a readable model"):
        load_model(bad)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(SatsrError, match="not a satsr model"):
        load_model(foreign)
    with pytest.raises(SatsrError, match="not found"):
        load_model(tmp_path / "missing.safetensors")


def test_every_warning_class_of_satsr_is_a_satsr_warning() -> None:
    """`warnings.filterwarnings("ignore", category=SatsrWarning)` silences all of satsr's."""
    import inspect

    from satsr import errors

    kinds = [c for _, c in inspect.getmembers(errors, inspect.isclass)
             if issubclass(c, Warning) and c.__module__ == errors.__name__]
    assert errors.UpscaleWarning in kinds and errors.MetricUnavailableWarning in kinds
    assert all(issubclass(c, errors.SatsrWarning) for c in kinds)
