"""`satsr upscale` and model files against hostile input (issue 9).

Damaged model files (non-finite weights, flipped header bytes, pickles), models whose output is
not finite, a one-pixel tile stride, a --scale a model cannot honour, zero or negative sizes and
band lists that mean nothing: each must end in one `satsr: error:` line with nothing published
at the target path. Rasters are tiny crops of the real files, models tiny seeded generators.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import assert_clean_failure, upscale_cli
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError
from satsr.inference.bundled import bundled_model
from satsr.inference.engine import Engine, load_engine, super_resolve
from satsr.inference.modelfile import load_model, read_metadata, save_model
from satsr.inference.tiling import TileGrid, axis_tiles
from satsr.inference.writer import upscale_raster
from satsr.nn.generator import Generator

pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(bands: int = 3, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(bands, 4, n_blocks=1, features=4).eval()


def _model(path: Path, gen: Generator | None = None, bands: int = 3,
           scaling: BandScaling | None = None) -> Path:
    """A tiny model file in the satsr format."""
    gen = gen if gen is not None else _gen(bands)
    meta = {"variant": "mse", "scaling": (scaling or BandScaling.for_uint8(gen.bands)).to_dict()}
    return save_model(path, gen, meta)


def _crop(shared: Path, name: str, window: Window, dst: Path, bands: list[int] | None = None,
          dtype: str | None = None, nodata: float | None = None) -> Path:
    """Cut `window` (and `bands`) of a real raster into a small GeoTIFF with its CRS."""
    with rasterio.open(shared / name) as ds:
        data = ds.read(bands, window=window)
        interp = [ds.colorinterp[b - 1] for b in (bands or range(1, ds.count + 1))]
        profile = {"driver": "GTiff", "width": int(window.width),
                   "height": int(window.height), "count": data.shape[0],
                   "dtype": dtype or ds.dtypes[0], "crs": ds.crs,
                   "transform": window_transform(window, ds.transform), "nodata": nodata}
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data.astype(profile["dtype"]))
        out.colorinterp = interp  # GDAL would make a 4th uint8 band alpha
    return dst


@pytest.fixture(scope="module")
def rgb(shared, tmp_path_factory) -> Path:
    """A 24 x 24 uint8 RGB crop of real aerial imagery."""
    root = tmp_path_factory.mktemp("hostile")
    return _crop(shared, "netherlands_aerial_0.25m.tif", Window(300, 300, 24, 24),
                 root / "rgb.tif", bands=[1, 2, 3])


def _header(path: Path) -> tuple[int, dict]:
    """(header length, parsed header) of a safetensors file."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return n, json.loads(raw[8:8 + n])


# ------------------------------------------------------------------------------- damaged weights

def test_non_finite_weights_are_refused_when_the_model_loads(rgb, tmp_path, capsys):
    path = _model(tmp_path / "damaged.safetensors")
    n, header = _header(path)
    start = 8 + n + header["blocks.0.body.0.weight"]["data_offsets"][0]
    raw = bytearray(path.read_bytes())
    raw[start + 4 * 5:start + 4 * 6] = struct.pack("<f", float("nan"))
    raw[start + 4 * 9:start + 4 * 10] = struct.pack("<f", float("inf"))
    path.write_bytes(bytes(raw))
    with pytest.raises(SatsrError, match=r"damaged\.safetensors.*blocks\.0\.body\.0\.weight"):
        load_model(path)
    out = tmp_path / "o.tif"
    code, err = upscale_cli([rgb, "-o", out, "--model", path], capsys)
    line = assert_clean_failure(code, err, tmp_path, "damaged.safetensors",
                                "blocks.0.body.0.weight")
    assert "2 non-finite" in line


def _flip_every(path: Path, dst: Path, step: int = 997) -> Path:
    """Every `step`-th byte of the tensor data inverted (the header left intact)."""
    raw = bytearray(path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    for i in range(8 + n, len(raw), step):
        raw[i] ^= 0xFF
    dst.write_bytes(bytes(raw))
    return dst


def test_non_finite_output_stops_the_run_before_anything_is_published(rgb, tmp_path, capsys):
    # the bundled model with two weights of its first two convolutions set to 1e30: every
    # weight is finite, but the output overflows (the run used to write an all-zero raster
    # and leak a RuntimeWarning)
    import torch

    from satsr.inference.modelfile import save_model

    bundled = bundled_model("satsr-rgb-x4")
    assert bundled is not None
    gen, meta = load_model(bundled.path)
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv2d)][:2]
    with torch.no_grad():
        for conv in convs:
            conv.weight.fill_(1e30)
    damaged = save_model(tmp_path / "huge.safetensors", gen, meta)
    gen, _ = load_model(damaged)  # finite weights: it loads
    out = tmp_path / "o.tif"
    out.write_bytes(b"keep me")
    code, err = upscale_cli([rgb, "-o", out, "--model", damaged, "--overwrite"], capsys)
    assert "RuntimeWarning" not in err
    assert out.read_bytes() == b"keep me"
    out.unlink()
    assert_clean_failure(code, err, tmp_path, "non-finite", str(rgb))


def test_finite_weights_with_non_finite_output_giveassert_clean_failure(rgb, tmp_path, capsys):
    gen = _gen()
    with torch.no_grad():  # finite, but large enough to overflow float32 inside the network
        for name, p in gen.named_parameters():
            if name.endswith("weight") and p.ndim == 4:
                p.copy_(torch.sign(torch.randn_like(p)) * 1e30)
    path = _model(tmp_path / "overflow.safetensors", gen)
    code, err = upscale_cli([rgb, "-o", tmp_path / "o.tif", "--model", path], capsys)
    assert_clean_failure(code, err, tmp_path, "non-finite")
    # the library says so too, for an in-memory image
    x = np.zeros((3, 12, 12), np.float32)
    with pytest.raises(SatsrError, match="non-finite"):
        super_resolve(x, Engine.from_generator(gen))


def test_nan_input_to_a_sound_model_raises_in_the_library():
    x = np.zeros((3, 12, 12), np.float32)
    x[:, 5, 5] = np.nan
    with pytest.raises(SatsrError, match="non-finite"):
        super_resolve(x, _gen())


def _f32_crop(shared: Path, tmp_path: Path) -> tuple[Path, Path]:
    src = _crop(shared, "landsat8_rgb16_60m.tif", Window(100, 100, 20, 20),
                tmp_path / "f32.tif", dtype="float32", nodata=-9999.0)
    scaling = BandScaling("float32", (0.0,) * 3, (30000.0,) * 3)
    return src, _model(tmp_path / "f32.safetensors", scaling=scaling)


def test_float32_nan_pixels_are_masked_not_propagated(shared, tmp_path, capsys):
    src, model = _f32_crop(shared, tmp_path)
    with rasterio.open(src, "r+") as ds:
        data = ds.read()
        data[:, 3, 4] = np.nan  # NaN that is not the declared nodata: missing data
        ds.write(data)
    out = tmp_path / "out.tif"
    code, err = upscale_cli([src, "-o", out, "--model", model], capsys)
    assert code == 0, err
    assert "RuntimeWarning" not in err
    with rasterio.open(out) as ds:
        vals = ds.read()
    assert np.isfinite(vals).all()
    assert (vals[:, 12:16, 16:20] == -9999.0).all()  # the NaN pixel is masked as nodata
    assert (vals != -9999.0).sum() == vals.size - 3 * 16


@pytest.mark.parametrize("how", [["--model"], ["--method", "bicubic"]])
def test_float32_inf_pixel_is_refused_by_every_engine(shared, tmp_path, capsys, how):
    """inf is not missing data: a clipping scaling would make it the band's bright end."""
    src, model = _f32_crop(shared, tmp_path)
    with rasterio.open(src, "r+") as ds:
        data = ds.read()
        data[1, 10, 12] = -np.inf
        ds.write(data)
    out = tmp_path / "out.tif"
    args = how + ([model] if how == ["--model"] else [])
    code, err = upscale_cli([src, "-o", out, *args], capsys)
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1
    assert "band 2 holds a non-finite value (-inf) at row 10, column 12" in lines[0]
    assert "nothing was written" in lines[0]
    assert not out.exists()


def _header_variants(path: Path) -> list[tuple[int, bytes]]:
    """(offset, file bytes) with one header byte damaged, at a spread of offsets."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    text = raw[8:8 + n]
    offsets = list(range(0, 8)) + [8 + i for i in range(0, n, 61)]
    # every byte of the satsr metadata values that steer the run (quotes escaped in the JSON
    # string that holds them)
    meta = text.index(b'"satsr"')
    for key in (b"n_blocks", b"features", b"bands", b"scale", b"dtype", b"lo", b"hi",
                b"upsample", b"residual", b"gsd_range"):
        at = text.find(b'\\"' + key + b'\\"', meta)
        while at >= 0:
            offsets += [8 + at + k for k in range(len(key) + 12)]
            at = text.find(b'\\"' + key + b'\\"', at + 1)
    out = []
    for off in sorted(set(offsets)):
        for mask in (0xFF, 0x01):
            b = bytearray(raw)
            b[off] ^= mask
            out.append((off, bytes(b)))
    return out


def test_damaged_header_bytes_give_a_satsr_error_not_a_traceback(shared, tmp_path):
    good = _model(tmp_path / "good.safetensors")
    src = _crop(shared, "netherlands_aerial_0.25m.tif", Window(300, 300, 8, 8),
                tmp_path / "tiny.tif", bands=[1, 2, 3])
    bad = tmp_path / "bad.safetensors"
    loaded = 0
    for off, data in _header_variants(good):
        bad.write_bytes(data)
        try:
            read_metadata(bad)
            engine = load_engine(bad, device="cpu")
        except SatsrError as exc:
            assert "\n" not in str(exc) and str(bad) in str(exc), (off, exc)
            continue
        except Exception as exc:  # noqa: BLE001  (the failure this test is about)
            pytest.fail(f"byte {off}: {type(exc).__name__}: {exc}")
        loaded += 1
        try:  # a file that still loads must still run, or fail in one line
            upscale_raster(src, tmp_path / "o.tif", engine, overwrite=True)
        except SatsrError as exc:
            assert "\n" not in str(exc), (off, exc)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"byte {off} loads but the run fails: {type(exc).__name__}: {exc}")
    assert loaded > 0  # some flips (inside free text) are harmless


# ------------------------------------------------------------------------------- pickles

class _Evil:
    """Unpickling this makes a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_pickle_checkpoints_are_refused_unread_with_the_code_caution(rgb, tmp_path, capsys):
    marker = tmp_path / "code_ran"
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"state": _gen().state_dict(), "evil": _Evil(marker)}, ckpt)  # zip format
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Evil(marker), protocol=2))  # legacy bare pickle
    for path in (ckpt, raw):
        code, err = upscale_cli([rgb, "-o", tmp_path / "o.tif", "--model", path], capsys)
        line = assert_clean_failure(code, err, tmp_path, str(path), "pickle", "could run code")
        assert "safetensors" in line
        with pytest.raises(SatsrError, match="could run code"):
            read_metadata(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------- arguments

def test_a_tile_stride_below_16_pixels_is_refused(rgb, tmp_path, capsys):
    with pytest.raises(SatsrError, match=r"tile 33.*overlap 32") as info:
        axis_tiles(40, 33, 32)
    assert "--" not in str(info.value)  # the library speaks of values, not flags
    with pytest.raises(SatsrError, match="overlap"):
        TileGrid.build(64, 64, 4, 33, 32, 3)
    axis_tiles(100, 48, 32)  # a 16 px stride is fine
    code, err = upscale_cli([rgb, "-o", tmp_path / "o.tif", "--method", "nearest", "--tile", 33,
                      "--overlap", 32], capsys)
    assert_clean_failure(code, err, tmp_path, "--tile 33", "--overlap 32", "16")
    # the default tile (256) with a huge overlap
    code, err = upscale_cli([rgb, "-o", tmp_path / "o.tif", "--method", "nearest",
                             "--overlap", 250], capsys)
    assert_clean_failure(code, err, tmp_path, "--overlap 250", "256")


def test_scale_that_the_model_cannot_honour_is_refused(rgb, tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors")
    code, err = upscale_cli([rgb, "-o", tmp_path / "o.tif", "--model", model, "--scale", 2], capsys)
    assert_clean_failure(code, err, tmp_path, "--scale 2", "x4")
    with pytest.raises(SatsrError, match="scale"):
        load_engine(model, scale=2, device="cpu")
    code, err = upscale_cli([rgb, "-o", tmp_path / "o.tif", "--model", model, "--scale", 4], capsys)
    assert code == 0, err
    code, err = upscale_cli([rgb, "-o", tmp_path / "b.tif", "--method", "nearest", "--scale",
                             2], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "b.tif") as ds:
        assert ds.width == 48


@pytest.mark.parametrize("args,needles", [
    (["--tile", "0"], ["--tile", "0"]),
    (["--tile", "-8"], ["--tile", "-8"]),
    (["--batch-size", "0"], ["--batch-size", "0"]),
    (["--batch-size", "-1"], ["--batch-size", "-1"]),
    (["--overlap", "-1"], ["--overlap", "-1"]),
    (["--bands", ""], ["--bands"]),
    (["--bands", " "], ["--bands"]),
    (["--scale", "0"], ["--scale", "0"]),
    (["--scale", "-4"], ["--scale", "-4"]),
])
def test_zero_negative_and_empty_values_are_refused(rgb, tmp_path, capsys, args, needles):
    code, err = upscale_cli([rgb, "-o", tmp_path / "o.tif", "--method", "nearest", *args], capsys)
    assert_clean_failure(code, err, tmp_path, *needles)


def test_library_refuses_zero_tile_and_batch(rgb, tmp_path):
    engine = Engine.baseline("nearest")
    for kw in ({"tile": 0}, {"batch_size": 0}):
        with pytest.raises(SatsrError):
            upscale_raster(rgb, tmp_path / "o.tif", engine, **kw)
        with pytest.raises(SatsrError):
            super_resolve(np.zeros((3, 8, 8), np.float32), engine, **kw)
    assert not list(tmp_path.iterdir())


def test_band_count_advice_is_always_possible(shared, rgb, tmp_path, capsys):
    four = _model(tmp_path / "four.safetensors", bands=4)
    code, err = upscale_cli([rgb, "-o", tmp_path / "o.tif", "--model", four], capsys)
    line = assert_clean_failure(code, err, tmp_path, "4 bands", "3")
    assert "--bands 1,2,3,4" not in line and "too few" in line
    naip = _crop(shared, "naip_rgbn_5m.tif", Window(200, 150, 16, 16), tmp_path / "naip.tif")
    three = _model(tmp_path / "three.safetensors")
    code, err = upscale_cli([naip, "-o", tmp_path / "o.tif", "--model", three], capsys)
    assert_clean_failure(code, err, tmp_path, "--bands 1,2,3")
