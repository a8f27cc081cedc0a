"""The aliasing probe and the per-tile adaptive strength of residual generators (issue 20)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError
from satsr.inference.modelfile import load_model, save_model
from satsr.nn.aliasing import AliasingProbe, adaptive_weight, check_adaptive
from satsr.nn.generator import Generator
from satsr.training.probe import common_size, pipelines, train_probe

DATA = Path(__file__).parent / "data"
EPS32 = float(np.finfo(np.float32).eps)


def _generator(seed: int = 0, gain: float = 0.05) -> Generator:
    """A residual generator with a probe whose correction is small but not zero."""
    torch.manual_seed(seed)
    gen = Generator(bands=3, n_blocks=1, features=8, residual=True, upsample="nearest",
                    probe=True)
    with torch.no_grad():
        gen.tail.weight.normal_(0.0, gain)
        gen.tail.bias.fill_(0.02)
    return gen.eval()


def _set_probe(gen: Generator, logit: float) -> None:
    """Make the probe answer sigmoid(logit) for every non-flat tile."""
    assert gen.probe is not None
    lin = gen.probe.net[-1]
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(logit)


def _tiles(n: int = 2, size: int = 24) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) - 0.5


def test_adaptive_weight_is_one_below_lo_zero_above_hi_linear_between() -> None:
    p = torch.tensor([0.0, 0.3, 0.45, 0.6, 1.0])
    w = adaptive_weight(p, 0.3, 0.6)
    assert w[0] == 1 and w[1] == 1 and w[3] == 0 and w[4] == 0
    assert abs(float(w[2]) - 0.5) <= 4 * EPS32


def test_a_tile_the_probe_calls_clean_gets_the_whole_correction() -> None:
    gen = _generator()
    x = _tiles()
    _set_probe(gen, -30.0)  # p ~ 1e-13 <= lo: share exactly 1
    with torch.no_grad():
        plain = (gen._bicubic(x) + gen._body(x)).clamp(-1, 1)
        gen.adaptive = (0.3, 0.6)
        assert torch.equal(gen(x), plain)


def test_a_tile_the_probe_calls_aliased_gets_bicubic() -> None:
    gen = _generator()
    x = _tiles()
    _set_probe(gen, 30.0)  # p = 1 >= hi: share exactly 0
    gen.adaptive = (0.3, 0.6)
    with torch.no_grad():
        assert torch.equal(gen(x), gen._bicubic(x).clamp(-1, 1))


def test_without_adaptive_thresholds_the_probe_changes_nothing() -> None:
    gen = _generator()
    x = _tiles()
    _set_probe(gen, 30.0)
    with torch.no_grad():
        assert torch.equal(gen(x), (gen._bicubic(x) + gen._body(x)).clamp(-1, 1))


def test_zero_mean_correction_keeps_each_tiles_band_means() -> None:
    gen = _generator(gain=0.02)
    with torch.no_grad():
        gen.tail.bias.fill_(0.2)  # a level shift of 0.2 that zero_mean must remove
    x = _tiles(size=16) * 0.5  # |bicubic| < 0.3 and |correction| < 0.5: never clipped
    gen.zero_mean = True
    with torch.no_grad():
        bic = gen._bicubic(x)
        corr = gen(x) - bic
        raw = gen._body(x)
    assert float((bic + raw).abs().max()) < 1  # the clamp does not act
    n = corr.shape[-1] * corr.shape[-2]
    # float32 worst case: a mean of n terms errs by n * eps * max|term|; the sum with bicubic
    # and the subtraction of it add eps * max|sum| per element
    bound = (n + 4) * EPS32 * float(raw.abs().max() + bic.abs().max() + 1)
    assert float(raw.mean(dim=(-2, -1)).abs().min()) > 0.1
    assert float(corr.mean(dim=(-2, -1)).abs().max()) <= bound


def test_the_probe_calls_a_flat_tile_clean() -> None:
    probe = AliasingProbe()
    _ = probe.net[-1].bias.data.fill_(30.0)
    flat = torch.full((1, 3, 16, 16), 0.25)
    with torch.no_grad():
        assert float(probe(flat)[0]) == 0.0


def _manila_tiles(n: int, size: int, offset: int) -> list[torch.Tensor]:
    with rasterio.open(DATA / "manila_aerial_0.1m.tif") as ds:
        img = ds.read().astype(np.float32) / 127.5 - 1
    h, w = img.shape[1:]
    rng = np.random.default_rng(offset)
    out = []
    for _ in range(n):
        r, c = int(rng.integers(0, h - size)), int(rng.integers(0, w - size))
        out.append(torch.from_numpy(img[:, r:r + size, c:c + size].copy())[None])
    return out


def test_a_fitted_probe_tells_nearest_decimation_from_an_anti_aliased_downscale() -> None:
    torch.set_num_threads(1)
    probe, accuracy = train_probe(_manila_tiles(160, 64, 0), 4, epochs=8)
    clean, aliased = pipelines(4)
    rng = np.random.default_rng(5)
    held = _manila_tiles(48, 64, 99)
    with torch.no_grad():
        p_clean = probe(torch.cat([clean(t, rng) for t in held])).mean()
        p_aliased = probe(torch.cat([aliased(t, rng) for t in held])).mean()
    assert len(accuracy) == 8
    # an untrained probe answers the same for both (about 0.5): a margin of 0.1 is learnt
    assert float(p_aliased) > float(p_clean) + 0.1


def _meta() -> dict:
    return {"variant": "adv+rec", "scaling": BandScaling.for_uint8(3).to_dict(),
            "adaptive": [0.3, 0.6], "zero_mean": True, "strength": 0.8}


def test_model_files_carry_the_probe_and_its_options(tmp_path: Path) -> None:
    gen = _generator()
    _set_probe(gen, 0.1)  # p = 0.525: share (0.6 - 0.525) / 0.3 = 0.25 of the correction
    path = save_model(tmp_path / "m.safetensors", gen, _meta())
    loaded, meta = load_model(path)
    assert loaded.adaptive == (0.3, 0.6) and loaded.zero_mean and loaded.strength == 0.8
    gen.adaptive, gen.zero_mean, gen.strength = (0.3, 0.6), True, 0.8
    x = _tiles()
    with torch.no_grad():
        assert torch.equal(loaded(x), gen(x))
        bic = gen._bicubic(x)
        assert not torch.equal(loaded(x), bic.clamp(-1, 1))


@pytest.mark.parametrize("change, needle", [
    ({"adaptive": [0.8, 0.3]}, "adaptive"),
    ({"adaptive": [0.3, "x"]}, "adaptive"),
    ({"zero_mean": 1}, "zero_mean"),
])
def test_bad_adaptive_metadata_is_refused_in_one_line(tmp_path: Path, change: dict,
                                                      needle: str) -> None:
    path = save_model(tmp_path / "m.safetensors", _generator(), {**_meta(), **change})
    with pytest.raises(SatsrError, match=needle) as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_adaptive_thresholds_need_a_probe(tmp_path: Path) -> None:
    gen = Generator(bands=3, n_blocks=1, features=8, residual=True)
    path = save_model(tmp_path / "m.safetensors", gen, _meta())
    with pytest.raises(SatsrError, match="probe"):
        load_model(path)


def test_check_adaptive_accepts_only_ordered_probabilities() -> None:
    assert check_adaptive([0, 1]) == (0.0, 1.0)
    for bad in ([0.5, 0.5], [-0.1, 0.5], [0.2, 1.5], [0.2], "0.2,0.5", [True, 0.5]):
        with pytest.raises(ValueError):
            check_adaptive(bad)


def test_upscale_records_the_adaptive_thresholds_in_the_tags(tmp_path: Path) -> None:
    from satsr.inference.writer import upscale_raster

    gen = _generator()
    path = save_model(tmp_path / "m.safetensors", gen, {
        **_meta(), "dtype": "uint8", "gsd_range": None})
    src = tmp_path / "in.tif"
    with rasterio.open(src, "w", driver="GTiff", width=24, height=20, count=3,
                       dtype="uint8") as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 20, 24), dtype=np.uint8))
    upscale_raster(src, tmp_path / "out.tif", model=path)
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.tags()["SATSR_ADAPTIVE"] == "0.3,0.6"


def test_probe_tiles_of_several_sizes_are_centre_cropped_to_the_smallest() -> None:
    a = torch.arange(3 * 12 * 12, dtype=torch.float32).reshape(1, 3, 12, 12)
    b = torch.zeros(1, 3, 10, 9)
    out = common_size([a, b], 4)
    assert [tuple(t.shape) for t in out] == [(1, 3, 8, 8), (1, 3, 8, 8)]
    assert torch.equal(out[0], a[..., 2:10, 2:10])  # centred
    same = common_size([a, a.clone()], 4)
    assert all(torch.equal(t, a) for t in same)  # one size: untouched
    with pytest.raises(ValueError, match="smaller than the scale"):
        common_size([torch.zeros(1, 3, 3, 3)], 4)
