"""The upscale pipeline (issue 21): device-side post-processing, overlapped reading and
writing, the windowed classical baselines, and `--precision`.

"No output changes": every output is compared with the previous path's numbers, computed
here as that path computed them: the tiled engine (`super_resolve`, tiles blended with their
weights) in [-1, 1] units and `BandScaling.from_unit` in float64 numpy on the host. The new
path may differ by 1 DN (a value at exactly .5 may round the other way in float32) for
integer dtypes, and by 1e-3 of the band range for float ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from helpers import FIXTURES

from satsr.data.scaling import BandScaling
from satsr.errors import NonFiniteError, SatsrError
from satsr.inference import writer
from satsr.inference.engine import Engine, super_resolve
from satsr.inference.pipeline import Prefetch, Sink
from satsr.inference.resample import clamp_bands, upsample, upsample_window
from satsr.inference.writer import upscale_raster
from satsr.nn.generator import Generator

#: bf16 against fp32 with the bundled satsr-rgb-x4 on a real 96 x 96 uint8 chip (CPU autocast):
#: at most this many DN apart anywhere, and this many on average (measured: 1 DN at most,
#: 0.08 on average, on 96^2 and 200^2 chips; --help says "within 2 DN").
BF16_MAX_DN = 2
BF16_MEAN_DN = 0.25


def _write(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    c, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c,
                       dtype=data.dtype, crs="EPSG:32633", nodata=nodata,
                       transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000)) as ds:
        ds.write(data)
    return path


def _rgb(h: int = 150, w: int = 170) -> np.ndarray:
    with rasterio.open(FIXTURES / "netherlands_aerial_0.25m.tif") as ds:
        return ds.read([1, 2, 3], window=((0, h), (0, w)))


def _uint16(h: int = 90, w: int = 110) -> np.ndarray:
    with rasterio.open(FIXTURES / "landsat8_rgb16_60m.tif") as ds:
        data = ds.read(window=((0, h), (0, w)))
    return np.concatenate([data, data[:1] // 2 + 7])  # a fourth band


def _previous(data: np.ndarray, engine: Engine, scaling: BandScaling, tile: int = 64,
              overlap: int = 32) -> np.ndarray:
    """The previous path's output: tiled engine in [-1, 1], then from_unit in float64."""
    unit = scaling.to_unit(data, clip=not engine.unclipped)
    out = super_resolve(unit, engine, tile=tile, overlap=overlap, batch_size=2)
    return scaling.from_unit(out, clip=not engine.unclipped)


def _exact(data: np.ndarray) -> BandScaling:
    if data.dtype == np.uint8:
        return BandScaling.for_uint8(data.shape[0])
    flat = data.reshape(data.shape[0], -1).astype(np.float64)
    return BandScaling(str(data.dtype), tuple(flat.min(1)), tuple(flat.max(1)))


def _tolerance(data: np.ndarray) -> float:
    if data.dtype.kind in "ui":
        return 1.0
    return 1e-3 * float(np.ptp(data, axis=(1, 2)).max())


# ------------------------------------------------------------------------------- resampling

@pytest.mark.parametrize("scale", [2, 4, 8])
def test_phase_bicubic_equals_interpolate(scale: int) -> None:
    x = torch.rand(2, 3, 23, 31, generator=torch.Generator().manual_seed(scale)) * 200 - 50
    ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    assert torch.allclose(upsample(x, scale, "bicubic"), ref, atol=2e-4)
    near = F.interpolate(x, scale_factor=scale, mode="nearest")
    assert torch.equal(upsample(x, scale, "nearest"), near)
    win = upsample_window(x[0], scale, "bicubic", 3, 5, 11, 20)
    assert torch.allclose(win, ref[0, :, 3 * scale:14 * scale, 5 * scale:25 * scale], atol=2e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("same", [True, False])
def test_scalar_band_clamp_equals_the_broadcast_one(dtype: torch.dtype, same: bool) -> None:
    y = torch.randn(3, 7, 9, generator=torch.Generator().manual_seed(0), dtype=dtype) * 900
    lo = torch.tensor([0.5, 0.5, 0.5] if same else [-100.25, 3.1, 0.5], dtype=dtype)
    hi = torch.tensor([255.5] * 3 if same else [300.7, 65535.5, 1e-3], dtype=dtype)
    lo, hi = lo.reshape(-1, 1, 1), hi.reshape(-1, 1, 1)
    want = y.clone().clamp_(lo, hi)
    assert torch.equal(clamp_bands(y, lo, hi), want) and torch.equal(y, want)  # in place


@pytest.mark.parametrize("dtype", ["uint16", "int16", "int32"])
@pytest.mark.parametrize("nodata", [None, 7])
def test_exact_scaling_is_the_valid_pixels_min_max(tmp_path: Path, dtype: str,
                                                   nodata: int | None) -> None:
    from satsr.data.scaling import exact_scaling

    rng = np.random.default_rng(1)
    data = rng.integers(-3000 if dtype != "uint16" else 0, 40000 if dtype != "int16" else 9000,
                        (3, 40, 50)).astype(dtype)
    if nodata is not None:
        data[:, :5, :5] = nodata
        data[1, 10, 10] = 32000 if dtype != "int16" else 9001  # the largest valid value
    src = _write(tmp_path / "in.tif", data, nodata)
    with rasterio.open(src) as ds:
        got = exact_scaling(ds, [1, 2, 3], dtype)
    ok = np.ones(data.shape[1:], bool) if nodata is None else ~(data == nodata).all(0)
    assert got.lo == tuple(float(data[b][ok].min()) for b in range(3))
    assert got.hi == tuple(float(data[b][ok].max()) for b in range(3))


# ------------------------------------------------------------------ the classical baselines

@pytest.mark.parametrize("method", ["bicubic", "nearest"])
@pytest.mark.parametrize("kind", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("scale", [2, 4])
def test_baseline_windows_equal_previous_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              method: str, kind: str, scale: int) -> None:
    monkeypatch.setattr(writer, "WINDOW_COLS", 48)  # several windows across, not only down
    data = {"uint8": _rgb, "uint16": _uint16}.get(kind, _uint16)()
    if kind == "float32":
        data = data.astype(np.float32) / 3.7 - 900.0
    src = _write(tmp_path / "in.tif", data)
    engine = Engine.baseline(method, scale)
    res = upscale_raster(src, tmp_path / "out.tif", engine)
    with rasterio.open(res.dst) as ds:
        got = ds.read()
        assert ds.tags()["SATSR_METHOD"] == method and "SATSR_PRECISION" not in ds.tags()
    ref = _previous(data, engine, _exact(data))
    assert got.dtype == ref.dtype and got.shape == ref.shape
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    assert diff.max() <= _tolerance(data), (kind, method, diff.max())


def test_baseline_windows_keep_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodata stays nodata; valid pixels away from it equal the previous path's."""
    monkeypatch.setattr(writer, "WINDOW_COLS", 64)
    data = _rgb(140, 150).copy()
    data[:, (data == 0).all(0)] = 1  # no stray nodata pixels elsewhere
    data[:, 30:60, 40:90] = 0
    src = _write(tmp_path / "in.tif", data, nodata=0)
    engine = Engine.baseline("bicubic", 4)
    res = upscale_raster(src, tmp_path / "out.tif", engine)
    with rasterio.open(res.dst) as ds:
        got = ds.read()
        assert ds.nodata == 0
    hole = np.zeros(data.shape[1:], bool)
    hole[30:60, 40:90] = True
    big = np.repeat(np.repeat(hole, 4, 0), 4, 1)
    assert (got[:, big] == 0).all() and (got[:, ~big] != 0).all()
    far = np.ones_like(hole)
    far[27:63, 37:93] = False
    far_big = np.repeat(np.repeat(far, 4, 0), 4, 1)
    ref = _previous(np.where(hole, data[:, :1, :1], data), engine, _exact(data))
    diff = np.abs(got.astype(int) - ref.astype(int))[:, far_big]
    assert diff.max() <= 1


# ---------------------------------------------------------------------------- a model

def _model_engine(seed: int = 0) -> Engine:
    torch.manual_seed(seed)
    gen = Generator(3, 4, n_blocks=2, features=16)
    return Engine.from_generator(gen, BandScaling.for_uint8(3), device="cpu", name="tiny.st")


def test_model_path_equals_previous_path(tmp_path: Path) -> None:
    data = _rgb(100, 130)
    src = _write(tmp_path / "in.tif", data)
    engine = _model_engine()
    res = upscale_raster(src, tmp_path / "out.tif", engine, tile=64, overlap=32, batch_size=2)
    with rasterio.open(res.dst) as ds:
        got = ds.read()
        assert ds.tags()["SATSR_PRECISION"] == "fp32"
    ref = _previous(data, engine, BandScaling.for_uint8(3))
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_bf16_within_tolerance_of_fp32(tmp_path: Path) -> None:
    """The bundled model under CPU bf16 autocast stays within BF16_MAX_DN of fp32."""
    from satsr.inference.engine import load_engine

    src = _write(tmp_path / "in.tif", _rgb(96, 96))
    engine = load_engine(None, device="cpu")
    out = {}
    for precision in ("fp32", "bf16"):
        res = upscale_raster(src, tmp_path / f"{precision}.tif", engine, precision=precision)
        with rasterio.open(res.dst) as ds:
            out[precision] = ds.read().astype(int)
            assert ds.tags()["SATSR_PRECISION"] == precision
    diff = np.abs(out["bf16"] - out["fp32"])
    assert diff.max() <= BF16_MAX_DN and diff.mean() <= BF16_MEAN_DN, (diff.max(), diff.mean())


def test_precision_refusals(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.tif", _rgb(40, 40))
    with pytest.raises(SatsrError, match="precision"):
        upscale_raster(src, tmp_path / "a.tif", Engine.baseline("bicubic"), precision="bf16")
    with pytest.raises(SatsrError, match="precision"):
        upscale_raster(src, tmp_path / "b.tif", _model_engine(), precision="fp16")
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "b.tif").exists()


def test_reader_error_stops_run_and_publishes_nothing(tmp_path: Path) -> None:
    data = _uint16(60, 60).astype(np.float32)
    data[1, 50, 7] = np.inf
    src = _write(tmp_path / "in.tif", data)
    for engine in (Engine.baseline("bicubic"), Engine.baseline("nearest")):
        with pytest.raises(NonFiniteError, match="row 50, column 7"):
            upscale_raster(src, tmp_path / "out.tif", engine)
        assert not (tmp_path / "out.tif").exists()


# ------------------------------------------------------------------------ the threads

def test_prefetch_and_sink_order_and_errors() -> None:
    assert list(Prefetch(lambda v: v * 2, range(7), depth=2)) == [0, 2, 4, 6, 8, 10, 12]

    def boom(v: int) -> int:
        if v == 3:
            raise ValueError("bad read")
        return v

    seen = []
    with pytest.raises(ValueError, match="bad read"):
        for v in Prefetch(boom, range(10), depth=1):
            seen.append(v)
    assert seen == [0, 1, 2]
    got: list[int] = []
    sink: Sink[int] = Sink(got.append, depth=2)
    for v in range(5):
        sink.put(v)
    sink.close()
    assert got == [0, 1, 2, 3, 4]

    def fail(v: int) -> None:
        raise OSError("disk full")

    bad: Sink[int] = Sink(fail, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for v in range(50):
            bad.put(v)
        bad.close()
