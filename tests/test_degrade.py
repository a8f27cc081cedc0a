"""satsr.data.degrade: the degradation pipelines shared by train and eval, checked against physics
written out in the tests (MTF of a cosine, noise variance, nearest sampling positions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
import yaml

from satsr.data.degrade import (
    EVAL_FAMILIES,
    PRESETS,
    Degradation,
    DegradationError,
    downscale,
    mtf_to_sigma,
)
from satsr.data.scaling import BandScaling


def _hr(seed: int = 0, b: int = 3, c: int = 3, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_brings_hr_to_exactly_hr_over_scale(name: str, scale: int) -> None:
    d = Degradation.resolve(name, scale)
    for seed in range(6):
        lr = d(_hr(seed, size=8 * scale), np.random.default_rng(seed))
        assert lr.shape == (3, 3, 8, 8)
        assert torch.isfinite(lr).all()


def test_bicubic_preset_is_exactly_the_historic_downscale() -> None:
    hr = _hr()
    d = Degradation.resolve("bicubic", 4)
    assert d.is_bicubic and Degradation.resolve(None, 4).is_bicubic
    assert torch.equal(d(hr), downscale(hr, 4))


def test_same_seed_same_lr_and_chips_draw_their_own_parameters() -> None:
    hr = _hr(b=4)
    d = Degradation.resolve("realistic", 4)
    a = d(hr, np.random.default_rng(7))
    b = d(hr, np.random.default_rng(7))
    c = d(hr, np.random.default_rng(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    same = d(hr[:1].repeat(4, 1, 1, 1), np.random.default_rng(7))
    assert not all(torch.equal(same[0], same[i]) for i in range(1, 4))


@pytest.mark.parametrize("mtf", [0.2, 0.35, 0.6])
def test_blur_mtf_is_the_attenuation_of_a_cosine_at_the_lr_nyquist_frequency(mtf: float) -> None:
    scale, n = 4, 256
    f = 1.0 / (2 * scale)  # LR Nyquist, cycles per HR pixel
    x = torch.cos(2 * math.pi * f * torch.arange(n, dtype=torch.float64)).float()
    img = x.view(1, 1, 1, n).repeat(1, 1, 64, 1)
    d = Degradation.from_dict({"steps": [{"blur": {"mtf": mtf}},
                                         {"downscale": {"method": "bicubic"}}]}, scale)
    blurred = img
    for step in d.steps[:1]:
        blurred = d._apply(step, img, np.random.default_rng(0), (16, 64))
    mid = blurred[0, 0, 32, 64:192]
    amplitude = float(mid.abs().max())
    assert amplitude == pytest.approx(mtf, rel=0.02)
    # and the closed form: exp(-2 pi^2 sigma^2 f^2) = mtf
    sigma = mtf_to_sigma(mtf, scale)
    assert math.exp(-2 * math.pi ** 2 * sigma ** 2 * f ** 2) == pytest.approx(mtf, rel=1e-9)


@pytest.mark.parametrize("signal", [-1.0, 0.0, 0.6])
def test_noise_std_is_read_plus_shot_as_fractions_of_the_band_range(signal: float) -> None:
    read, shot = 0.01, 0.03
    hr = torch.full((1, 2, 256, 256), signal)
    d = Degradation.from_dict({"steps": [{"downscale": {"method": "area"}},
                                         {"noise": {"read": read, "shot": shot}}]}, 2)
    lr = d(hr, np.random.default_rng(0))
    s = (signal + 1) / 2
    expected = math.sqrt(read ** 2 + shot ** 2 * s) * 2.0  # a band range spans 2 units
    assert float((lr - signal).std()) == pytest.approx(expected, rel=0.03)
    assert float((lr - signal).mean()) == pytest.approx(0.0, abs=expected * 0.05)


def test_noise_fraction_means_the_same_in_raster_units_for_uint8_and_uint16() -> None:
    frac = 0.02
    u16 = BandScaling.from_stats("uint16", [{"p0.1": 1000.0, "p99.9": 21000.0}])
    u8 = BandScaling.for_uint8(1)
    d = Degradation.from_dict({"steps": [{"downscale": {"method": "area"}},
                                         {"noise": {"read": frac}}]}, 2)
    for scaling, value, span in ((u16, 11000.0, 20000.0), (u8, 127.0, 255.0)):
        unit = torch.from_numpy(scaling.to_unit(np.full((1, 128, 128), value)).astype(np.float32))
        lr = d(unit[None], np.random.default_rng(1))[0].numpy()
        # back to raster units by the scaling's linear map (no clipping at mid-range)
        raster = (lr + 1) / 2 * span + (1000.0 if span == 20000.0 else 0.0)
        assert float(raster.std()) == pytest.approx(frac * span, rel=0.05)


def test_nearest_samples_pixel_centres_and_area_averages_the_footprint() -> None:
    hr = _hr()
    near = Degradation.resolve("nearest", 4)(hr)
    assert torch.equal(near, hr[..., 2::4, 2::4])  # the centre sample of each 4x4 cell
    area = Degradation.from_dict({"steps": [{"downscale": {"method": "area"}}]}, 4)(hr)
    assert torch.allclose(area, F.avg_pool2d(hr, 4), atol=1e-6)


def test_nearest_reprojection_only_repeats_or_drops_hr_values() -> None:
    hr = _hr(b=5, c=1, size=64)
    lr = Degradation.resolve("nearest-reproject", 4)(hr, np.random.default_rng(3))
    assert lr.shape == (5, 1, 16, 16)
    for i in range(5):
        values = set(hr[i].flatten().tolist())
        assert set(lr[i].flatten().tolist()) <= values


def test_jpeg_costs_more_at_lower_quality_and_codes_any_band_count(shared: Path) -> None:
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        a = ds.read(window=((100, 164), (100, 164))).astype(np.float32)
    hr = torch.from_numpy(a / 127.5 - 1)[None]
    errs = []
    for q in (95, 60, 20):
        d = Degradation.from_dict({"steps": [{"downscale": {"method": "bicubic"}},
                                             {"jpeg": {"quality": q}}]}, 2)
        lr = d(hr)
        errs.append(float((lr - downscale(hr, 2)).abs().mean()))
    assert errs[0] < errs[1] < errs[2]
    assert errs[0] < 0.02
    four = torch.cat([hr, hr[:, :1]], 1)
    d = Degradation.from_dict({"steps": [{"downscale": {"method": "bicubic"}},
                                         {"jpeg": {"quality": 50}}]}, 2)
    assert d(four).shape == (1, 4, 32, 32)


def test_random_order_shuffles_only_between_resampling_steps() -> None:
    d = Degradation.from_dict({"order": "random", "steps": [
        {"blur": {"sigma": 1.0}}, {"noise": {"read": 0.01}}, {"downscale": {"method": "area"}},
        {"jpeg": {"quality": 80}}, {"noise": {"shot": 0.01}}]}, 4)
    rng = np.random.default_rng(0)
    orders = {tuple(s.kind for s in d._ordered(d.steps, rng)) for _ in range(40)}
    assert len(orders) == 4  # 2 x 2 permutations
    assert all(o[2] == "downscale" for o in orders)


def test_pipeline_files_in_yaml_toml_and_json_round_trip(tmp_path: Path) -> None:
    d = Degradation.resolve("realistic", 4)
    doc = d.to_dict()
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "p.json").write_text(json.dumps(doc))
    (tmp_path / "p.toml").write_text(
        'name = "mine"\n[[steps]]\nblur = { sigma = [0.5, 1.5] }\n'
        '[[steps]]\ndownscale = { method = "area" }\n[[steps]]\njpeg = { quality = [60, 90] }\n')
    for name in ("p.yaml", "p.json"):
        again = Degradation.resolve(str(tmp_path / name), 4)
        assert again.to_dict() == doc
    hr = _hr()
    assert torch.equal(Degradation.resolve(str(tmp_path / "p.yaml"), 4)(
        hr, np.random.default_rng(1)), d(hr, np.random.default_rng(1)))
    toml = Degradation.resolve(str(tmp_path / "p.toml"), 4)
    assert toml.name == "mine" and [s.kind for s in toml.steps] == ["blur", "downscale", "jpeg"]


@pytest.mark.parametrize("doc, key", [
    ({"steps": [{"sharpen": {}}, {"downscale": {}}]}, "'sharpen'"),
    ({"steps": [{"blur": {"sigma": -1}}, {"downscale": {}}]}, "'sigma'"),
    ({"steps": [{"downscale": {}}, {"jpeg": {"quality": 0}}]}, "'quality'"),
    ({"steps": [{"downscale": {}}, {"jpeg": {"quality": [50, 101]}}]}, "'quality'"),
    ({"steps": [{"downscale": {}}, {"noise": {"read": -0.01}}]}, "'read'"),
    ({"steps": [{"downscale": {}}, {"noise": {"read": 0.01, "p": 1.5}}]}, "'p'"),
    ({"steps": [{"downscale": {"method": "lanczos"}}]}, "'method'"),
    ({"steps": [{"blur": {"sigma": 1, "mtf": 0.3}}, {"downscale": {}}]}, "'blur'"),
    ({"steps": [{"blur": {"radius": 2}}, {"downscale": {}}]}, "'radius'"),
    ({"steps": [{"downscale": {"ratio": 1.2}}]}, "ratio other than 1"),
    ({"steps": [{"blur": {"sigma": 1}}]}, "never downscales"),
    ({"steps": [{"downscale": {}}, {"downscale": {}}]}, "two 'downscale'"),
    ({"steps": [{"downscale": {"ratio": [1.5, 1.2]}}, {"resize": {}}]}, "low > high"),
    ({"steps": [{"downscale": {}}, {"noise": {"read": True}}]}, "'read'"),
    ({"stepz": []}, "'stepz'"),
    ({"order": "chaos", "steps": [{"downscale": {}}]}, "'order'"),
])
def test_bad_pipelines_are_refused_in_one_line_naming_the_key(doc: dict, key: str) -> None:
    with pytest.raises(DegradationError) as err:
        Degradation.from_dict(doc, 4)
    msg = str(err.value)
    assert key in msg and "\n" not in msg


def test_unknown_preset_and_unparsable_file_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DegradationError, match="unknown degradation 'sharp'.*bicubic"):
        Degradation.resolve("sharp", 4)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [blur: {sigma: 1\n")
    with pytest.raises(DegradationError, match="cannot parse degradation file") as err:
        Degradation.resolve(str(bad), 4)
    assert "\n" not in str(err.value)


def test_hr_not_a_multiple_of_the_scale_is_refused() -> None:
    with pytest.raises(DegradationError, match="multiple of the scale"):
        Degradation.resolve("sensor", 4)(torch.zeros(1, 3, 30, 30))


def test_eval_families_are_presets() -> None:
    assert set(EVAL_FAMILIES) <= set(PRESETS)
