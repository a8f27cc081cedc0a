"""--strength: how much of a residual model's learned correction is added to bicubic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import run_cli
from rasterio.transform import from_origin

from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError
from satsr.inference.modelfile import load_model, save_model
from satsr.nn import Generator


def _residual(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    g = Generator(3, 4, n_blocks=1, features=8, residual=True, upsample="nearest")
    with torch.no_grad():  # a visible correction
        g.tail.weight.normal_(0, 0.05)
    return g.eval()


def test_strength_scales_the_correction_between_bicubic_and_the_model() -> None:
    g = _residual()
    x = torch.rand(1, 3, 10, 10) * 1.2 - 0.6
    with torch.inference_mode():
        full = g(x)
        g.strength = 0.0
        none = g(x)
        g.strength = 0.5
        half = g(x)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic",
                                              align_corners=False).clamp(-1, 1)
    assert torch.allclose(none, bicubic, atol=1e-6)
    assert (full - bicubic).abs().mean() > 1e-3
    inner = (full.abs() < 0.99) & (bicubic.abs() < 0.99)  # away from the clamp
    assert torch.allclose(half[inner], ((full + bicubic) / 2)[inner], atol=1e-5)


def test_model_file_records_its_strength(tmp_path: Path) -> None:
    p = save_model(tmp_path / "m.safetensors", _residual(),
                   {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict(),
                    "strength": 0.6})
    gen, meta = load_model(p)
    assert gen.strength == 0.6 and meta["strength"] == 0.6
    bad = save_model(tmp_path / "b.safetensors", _residual(),
                     {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict(),
                      "strength": 1.5})
    with pytest.raises(SatsrError, match="b.safetensors.*strength"):
        load_model(bad)
    plain = Generator(3, 4, n_blocks=1, features=8)
    p2 = save_model(tmp_path / "p.safetensors", plain,
                    {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict(),
                     "strength": 0.5})
    with pytest.raises(SatsrError, match="residual"):
        load_model(p2)


def _raster(path: Path) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(30, 220, (3, 40, 40), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 1, 1)) as ds:
        ds.write(data)
    return path


def test_upscale_strength_flag(tmp_path: Path, capsys) -> None:
    src = _raster(tmp_path / "in.tif")
    model = save_model(tmp_path / "m.safetensors", _residual(),
                       {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict()})
    outs = {}
    for s in ("0", "0.5", "1"):
        code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / f"o{s}.tif"), "-m",
                                str(model), "--strength", s, "--overlap", "8"], capsys)
        assert code == 0, err
        with rasterio.open(tmp_path / f"o{s}.tif") as ds:
            outs[s] = ds.read().astype(np.float64)
            assert ds.tags()["SATSR_STRENGTH"] == s
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "b.tif"), "--method",
                            "bicubic"], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "b.tif") as ds:
        bic = ds.read().astype(np.float64)
    assert np.abs(outs["0"] - bic).max() <= 1  # strength 0 is bicubic (up to rounding)
    d_half, d_full = np.abs(outs["0.5"] - bic).mean(), np.abs(outs["1"] - bic).mean()
    assert 0.3 * d_full < d_half < 0.7 * d_full


@pytest.mark.parametrize("args, words", [
    (["--strength", "1.5"], ["--strength", "1.5"]),
    (["--strength", "-0.1"], ["--strength"]),
    (["--strength", "0.5", "--method", "bicubic"], ["--strength", "--method"]),
])
def test_bad_strength_is_refused_in_one_line(tmp_path: Path, capsys, args, words) -> None:
    src = _raster(tmp_path / "in.tif")
    model = save_model(tmp_path / "m.safetensors", _residual(),
                       {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict()})
    model_args = [] if "--method" in args else ["-m", str(model)]
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "o.tif"), *model_args,
                            *args], capsys)
    assert code == 2 and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "o.tif").exists()


def test_strength_on_a_plain_model_is_refused(tmp_path: Path, capsys) -> None:
    src = _raster(tmp_path / "in.tif")
    model = save_model(tmp_path / "p.safetensors", Generator(3, 4, n_blocks=1, features=8),
                       {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict()})
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "o.tif"), "-m",
                            str(model), "--strength", "0.5"], capsys)
    assert code == 2 and "residual" in err and err.count("\n") == 1, err
