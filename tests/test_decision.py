"""One correction share per raster (satsr.inference.decision, `satsr upscale --adaptive`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from helpers import refused, run_cli
from PIL import Image
from test_adaptive import _generator, _set_probe

from satsr.data.degrade import downscale
from satsr.errors import SatsrError
from satsr.inference.decision import (
    JPEG_GRID_RATIO,
    JPEG_MIN_BOUNDARY,
    check_scope,
    check_share,
    decide,
    jpeg_grid_ratio,
)
from satsr.inference.modelfile import load_model, save_model

SAMPLE = Path(__file__).resolve().parents[1] / "satsr" / "assets" / "sample_manila_0.1m.tif"
BUNDLED = Path(__file__).resolve().parents[1] / "satsr" / "assets" / "models" / \
    "satsr-rgb-x4.safetensors"


def _texture(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture in [0, 255] (uint8), no structure tied to any grid."""
    rng = np.random.default_rng(seed)
    side = size // 7 + 1  # knots 7-odd px apart: nothing periodic in 8
    noise = torch.from_numpy(rng.normal(size=(1, 3, side, side)).astype(np.float32))
    up = torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic",
                                         align_corners=False)[0]
    return np.clip(np.round(128 + 40 * up.numpy()), 0, 255).astype(np.uint8)


def _unit(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / 127.5 - 1)[None]


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(buf, "JPEG",
                                                                       quality=quality)
    return np.asarray(Image.open(buf)).transpose(2, 0, 1).copy()


def test_the_ratio_counts_the_grid_boundaries_of_both_axes() -> None:
    x = torch.zeros(2, 3, 24, 40)
    x[..., :, 8:16] = 0.5  # steps at columns 7|8 and 15|16: both on the grid
    ratio, n = jpeg_grid_ratio(x)
    # boundaries j % 8 == 7 among the 39 column steps (4) and the 23 row steps (2), 2 tiles
    assert n == 2 * (24 * 4 + 40 * 2)
    assert ratio > 1e3  # every non-zero step is on the grid
    shifted = torch.roll(x, 3, dims=-1)  # the same steps off the grid
    assert jpeg_grid_ratio(shifted)[0] == 0.0


def test_a_jpeg_coded_texture_reads_above_the_threshold_and_the_clean_one_below() -> None:
    img = _texture(512)
    clean, _ = jpeg_grid_ratio(_unit(img))
    coded, n = jpeg_grid_ratio(_unit(_jpeg(img, 50)))
    assert n >= JPEG_MIN_BOUNDARY
    assert clean < JPEG_GRID_RATIO < coded, (clean, coded)


def test_decide_pools_the_probe_and_reads_the_jpeg_grid_only_with_enough_evidence() -> None:
    gen = _generator()
    assert gen.probe is not None
    img = _texture(512)
    tiles = _unit(_jpeg(img, 50))
    _set_probe(gen, -30.0)  # every tile clean
    d = decide(gen.probe, tiles, (0.3, 0.6), jpeg_share=0.25)
    assert (d.share, d.reason) == (0.25, "jpeg") and d.jpeg_ratio is not None
    d = decide(gen.probe, tiles, (0.3, 0.6), jpeg_share=None)  # measured, not acted on
    assert d.share == 1.0 and d.reason == "clean" and d.jpeg_ratio is not None
    small = tiles[..., :64, :64]  # 896 boundary pixels: not evidence enough
    d = decide(gen.probe, small, (0.3, 0.6), jpeg_share=0.0)
    assert d.jpeg_ratio is None and d.share == 1.0 and d.reason == "clean"
    _set_probe(gen, 30.0)  # every tile aliased
    d = decide(gen.probe, _unit(img), (0.3, 0.6), jpeg_share=0.0)
    assert (d.share, d.reason) == (0.0, "aliased")
    _set_probe(gen, float(np.log(0.45 / 0.55)))  # p = 0.45: half-way between 0.3 and 0.6
    d = decide(gen.probe, _unit(img), (0.3, 0.6), jpeg_share=None)
    assert d.reason == "partly aliased" and abs(d.share - 0.5) < 1e-5
    flat = torch.full((4, 3, 64, 64), 0.1)
    assert decide(gen.probe, flat, (0.3, 0.6), None).reason == "flat"


def test_a_fixed_share_replaces_the_per_tile_probe() -> None:
    gen = _generator()
    gen.adaptive = (0.3, 0.6)
    _set_probe(gen, 30.0)  # per tile: all aliased, share 0
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) - 0.5
    with torch.no_grad():
        assert torch.equal(gen(x), gen._bicubic(x).clamp(-1, 1))
        gen.fixed_share = 1.0
        assert torch.equal(gen(x), (gen._bicubic(x) + gen._body(x)).clamp(-1, 1))
        gen.fixed_share = 0.0
        assert torch.equal(gen(x), gen._bicubic(x).clamp(-1, 1))


def test_model_files_check_the_scope_records(tmp_path: Path) -> None:
    gen, meta = load_model(BUNDLED)
    meta = {k: v for k, v in meta.items() if k not in ("adaptive_scope", "jpeg_share")}
    for bad in ({"adaptive_scope": "image"}, {"jpeg_share": 0.5},
                {"adaptive_scope": "tile", "jpeg_share": 0.5},
                {"adaptive_scope": "raster", "jpeg_share": 2.0},
                {"adaptive_scope": "raster", "jpeg_share": True}):
        path = save_model(tmp_path / "m.safetensors", gen, {**meta, **bad}, half=True)
        with pytest.raises(SatsrError, match="adaptive_scope|jpeg_share"):
            load_model(path)
    bare = {k: v for k, v in meta.items() if k != "adaptive"}
    path = save_model(tmp_path / "m.safetensors", gen, {**bare, "adaptive_scope": "raster"},
                      half=True)
    with pytest.raises(SatsrError, match="'adaptive_scope' needs 'adaptive'"):
        load_model(path)
    assert check_scope("tile") == "tile" and check_share(0) == 0.0
    with pytest.raises(ValueError):
        check_share(float("nan"))


def _lr(tmp: Path, name: str, method: str) -> Path:
    """The bundled sample downscaled by 4 (anti-aliased bicubic, or nearest decimation)."""
    with rasterio.open(SAMPLE) as ds:
        hr = ds.read([1, 2, 3]).astype(np.float32)
        prof = {"driver": "GTiff", "count": 3, "dtype": "uint8", "crs": ds.crs,
                "transform": ds.transform @ Affine.scale(4)}
    t = torch.from_numpy(hr / 127.5 - 1)[None]
    lr = (downscale(t, 4)[0].numpy() if method == "bicubic" else t[0, :, ::4, ::4].numpy())
    out = tmp / name
    with rasterio.open(out, "w", width=lr.shape[2], height=lr.shape[1], **prof) as dst:
        dst.write(np.clip(np.round((lr + 1) * 127.5), 0, 255).astype(np.uint8))
    return out


def _up(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[np.ndarray, dict[str, str]]:
    code, out, err = run_cli(["upscale", *map(str, args), "--overwrite"], capsys)
    assert code == 0, err
    dst = Path(str(args[args.index("-o") + 1]))
    with rasterio.open(dst) as ds:
        return ds.read(), ds.tags()


def test_upscale_decides_once_per_raster_and_records_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen, meta = load_model(BUNDLED)
    model = save_model(tmp_path / "m.safetensors", gen,
                       {**meta, "adaptive_scope": "raster", "jpeg_share": 0.0}, half=True)
    near, clean = _lr(tmp_path, "near.tif", "nearest"), _lr(tmp_path, "clean.tif", "bicubic")
    o = tmp_path / "o.tif"
    # nearest decimation: the probe's median over the raster (about 1.0 here) is far above
    # the model's hi, so the share is 0 and the output is the model at strength 0 exactly
    out, tags = _up(capsys, near, "-o", o, "--model", model)
    assert tags["SATSR_ADAPTIVE_SCOPE"] == "raster"
    assert tags["SATSR_DECISION"].startswith("aliased; share 0;")
    bic, _ = _up(capsys, near, "-o", o, "--model", model, "--strength", "0")
    assert np.array_equal(out, bic)
    # the clean raster (probe median about 0.02, far below lo): the whole correction, as
    # --adaptive off gives it
    out, tags = _up(capsys, clean, "-o", o, "--model", model)
    assert tags["SATSR_DECISION"].startswith("clean; share 1;")
    full, tags_off = _up(capsys, clean, "-o", o, "--model", model, "--adaptive", "off")
    assert np.array_equal(out, full) and "SATSR_DECISION" not in tags_off
    assert not np.array_equal(out, _up(capsys, clean, "-o", o, "--model", model,
                                       "--strength", "0")[0])
    from satsr.inference.engine import load_engine
    from satsr.inference.writer import upscale_raster

    engine = load_engine(model, device="cpu")
    res = upscale_raster(near, tmp_path / "api.tif", engine)
    assert res.decision is not None and res.decision.share == 0.0
    assert engine.generator.fixed_share is None  # the engine is per tile again afterwards
    _, tags = _up(capsys, near, "-o", o, "--model", model, "--adaptive", "tile")
    assert tags["SATSR_ADAPTIVE_SCOPE"] == "tile" and "SATSR_DECISION" not in tags


def test_upscale_refuses_adaptive_where_it_does_not_apply(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lr = _lr(tmp_path, "clean.tif", "bicubic")
    o = tmp_path / "o.tif"
    code, _, err = run_cli(["upscale", str(lr), "-o", str(o), "--adaptive", "image"], capsys)
    refused(code, err, "--adaptive takes raster, tile, off")
    code, _, err = run_cli(["upscale", str(lr), "-o", str(o), "--method", "bicubic",
                            "--adaptive", "tile"], capsys)
    refused(code, err, "--adaptive applies to a model")
    code, _, err = run_cli(["upscale", str(lr), "-o", str(o), "--model", "satsr-ms-x4",
                            "--adaptive", "raster"], capsys)
    refused(code, err, "aliasing probe")
    assert not o.exists()


def test_a_folder_with_rasters_the_table_gives_a_probe_less_model_warns_and_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    _lr(src, "rgb.tif", "bicubic")
    shutil.copy(Path(__file__).parent / "data" / "landsat8_rgb16_60m.tif", src / "u16.tif")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_cli(["upscale", str(src), "-o", str(out), "--adaptive", "off"], capsys)
    assert code == 0, err
    assert "adaptive does not apply to satsr-ms-x4" in err
    with rasterio.open(out / "rgb.tif") as ds:
        assert ds.tags()["SATSR_ADAPTIVE_SCOPE"] == "off"
    with rasterio.open(out / "u16.tif") as ds:
        assert "SATSR_ADAPTIVE_SCOPE" not in ds.tags()

