"""Benchmark the upscale and training pipelines against bare baselines measured in the same run
(issue 21). Every function returns a dict of numbers; `examples/gpu_run.py` imports them.

CPU (any session):
* `bicubic_vs_rasterio`: `satsr upscale --method bicubic`, timed as a whole process, vs a
  bare rasterio loop timed inside one (read with `out_shape` and Resampling.cubic, one
  write) on a 4096^2 RGB uint8 and a 2048^2 x 4 uint16 raster. The bare loop writes with
  satsr's own creation options (deflate, predictor 2, 512 px tiles, all CPUs): `ratio`,
  target <= 1.25; and with the issue's literal ones (deflate, 256 px tiles, no predictor):
  `ratio_issue_options`, for reference (the predictor alone doubles deflate's time here).
* `postprocess`: the model path's post-processing alone on one 8192^2 x 3 output, the
  previous float64 numpy `BandScaling.from_unit` vs the torch one on the device.
* `model_path`: `upscale_raster` with the bundled default model (satsr-rgb-x4) on a 2048^2
  RGB uint8 raster vs the bare forward over the same tiles (same tile size, batch and
  precision, inputs already on the device): host-side work = upscale - forward, as a
  fraction of the upscale's wall time (target <= 0.20), and both output MPix/s; with
  `bare_precision="bf16"` also the upscale's MPix/s over the bare bf16 forward's (GPU
  target >= 0.5); the per-raster decision's share of the upscale (`decision_fraction`,
  part of the host-side work), timed again on its own.

GPU (`--device cuda`; each also runs on the CPU, slowly):
* `train_vs_minimal`: `satsr train`'s inner loop (the train loader, its workers making the
  realistic LR, feeding `GCNModel.step`) with `--degradation realistic` (and bicubic; and
  realistic made inside the step, the previous path) vs the minimal loop of
  benchmarks/train_step.py, s/it (target <= 1.15).
* `validation_seconds`: one validation of 48 chips (target <= 2 s on a GPU).
* `sentinel_tile`: a synthetic 10980^2 x 4 uint16 tile upscaled x4 with the bundled default
  model for it, seconds (target <= 90 s).

    .venv/bin/python benchmarks/upscale_pipeline.py                 # CPU: bicubic, post, model
    .venv/bin/python benchmarks/upscale_pipeline.py --quick         # small sizes
    .venv/bin/python benchmarks/upscale_pipeline.py --device cuda   # adds the GPU measurements
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_SHARED = Path(os.environ.get("SATSR_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: Real imagery the test rasters are mosaicked from (the shared copy, else tests/data's).
RGB_SOURCE = next((p for p in (_SHARED / "netherlands_aerial_0.25m.tif",
                               ROOT / "tests" / "data" / "netherlands_aerial_0.25m.tif")
                   if p.is_file()), ROOT / "tests" / "data" / "netherlands_aerial_0.25m.tif")
U16_SOURCE = next((p for p in (_SHARED / "landsat8_rgbn_30m_cloudy_uint16.tif",
                               ROOT / "tests" / "data" / "landsat8_rgb16_60m.tif")
                   if p.is_file()), ROOT / "tests" / "data" / "landsat8_rgb16_60m.tif")


# ------------------------------------------------------------------------------ rasters

def make_raster(path: Path, size: int, kind: str = "rgb8") -> Path:
    """A size x size tiled (256 px), deflated GeoTIFF mosaicked from real imagery: `rgb8`
    (3 x uint8) or `u16x4` (4 x uint16; a 3-band source gets a fourth band derived from its
    first), written window by window."""
    import rasterio
    from mosaic import write_mosaic
    from rasterio.transform import from_origin

    with rasterio.open(RGB_SOURCE if kind == "rgb8" else U16_SOURCE) as src:
        data = src.read()
        crs = src.crs
    if kind == "rgb8":
        data = data[:3]
    elif data.shape[0] < 4:
        data = np.concatenate([data, data[:1] // 2 + 7])[:4]
    else:
        data = data[:4]
    profile = {"driver": "GTiff", "count": data.shape[0],
               "dtype": data.dtype.name, "crs": crs or "EPSG:32633",
               "transform": from_origin(500000, 4000000, 0.5, 0.5), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    return write_mosaic(path, data, size, profile)


def synthetic_raster(path: Path, size: int, bands: int = 4, dtype: str = "uint16",
                     rows: int = 1024) -> Path:
    """A size x size smooth-plus-noise raster (a Sentinel-2-like tile for `sentinel_tile`),
    written in strips of `rows` (memory stays flat)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": bands,
               "dtype": dtype, "crs": "EPSG:32633",
               "transform": from_origin(300000, 5000000, 10, 10), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate",
               "bigtiff": "if_safer"}
    xs = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, rows):
            h = min(rows, size - r)
            ys = np.arange(r, r + h, dtype=np.float32)[:, None]
            base = 1500 + 800 * np.sin(xs / 97.0)[None] * np.cos(ys / 131.0)
            for b in range(bands):
                noise = rng.normal(0, 60, (h, size)).astype(np.float32)
                dst.write(np.clip(base * (1 + 0.2 * b) + noise, 0, 65535).astype(dtype),
                          b + 1, window=Window(0, r, size, h))
    return path


def satsr_profile(count: int, dtype: str, issue_options: bool = False) -> dict[str, Any]:
    """The creation options satsr's output gets (satsr.inference.writer._profile), or the
    issue's literal bare-loop ones (deflate, 256 px tiles)."""
    from satsr.inference.writer import BLOCK

    if issue_options:
        return {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    return {"tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
            "predictor": 3 if np.dtype(dtype).kind == "f" else 2, "bigtiff": "if_safer",
            "num_threads": "all_cpus"}


def bare_loop(src: Path, dst: Path, scale: int = 4, issue_options: bool = False) -> float:
    """Seconds of the bare rasterio loop: read(out_shape, Resampling.cubic), one write."""
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling

    t = time.perf_counter()
    with rasterio.open(src) as ds:
        data = ds.read(out_shape=(ds.count, ds.height * scale, ds.width * scale),
                       resampling=Resampling.cubic)
        profile = {"driver": "GTiff", "width": ds.width * scale, "height": ds.height * scale,
                   "count": ds.count, "dtype": ds.dtypes[0], "crs": ds.crs,
                   "transform": ds.transform * Affine.scale(1 / scale),
                   **satsr_profile(ds.count, ds.dtypes[0], issue_options)}
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
    del data
    return time.perf_counter() - t


def satsr_process(src: Path, dst: Path, *args: str) -> float:
    """Seconds of `python -m satsr upscale SRC -o DST ARGS` as a whole process (this
    checkout's satsr first on the path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "satsr", "upscale", str(src), "-o", str(dst),
                    "--overwrite", *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - t


# ------------------------------------------------------------------ CPU: the bicubic path

def bicubic_vs_rasterio(quick: bool = False, repeats: int = 2,
                        workdir: str | Path | None = None) -> dict[str, dict[str, float]]:
    """`satsr upscale --method bicubic` (whole process) vs the bare rasterio loop, both
    interleaved `repeats` times, best of each. Returns {case: {satsr_s, bare_s, ratio,
    bare_issue_options_s, ratio_issue_options, out_mpix}} for cases rgb8_4096 and
    u16x4_2048 (quick: 1024 and 512)."""
    cases = [("rgb8", 1024 if quick else 4096), ("u16x4", 512 if quick else 2048)]
    res: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for kind, size in cases:
            src = make_raster(Path(tmp) / f"{kind}_{size}.tif", size, kind)
            out = Path(tmp) / "out.tif"
            times: dict[str, list[float]] = {"satsr": [], "bare": [], "bare_issue": []}
            for _ in range(repeats):
                times["satsr"].append(satsr_process(src, out, "--method", "bicubic"))
                out.unlink()
                times["bare"].append(bare_loop(src, out))
                out.unlink()
                times["bare_issue"].append(bare_loop(src, out, issue_options=True))
                out.unlink()
            best = {k: min(v) for k, v in times.items()}
            res[f"{kind}_{size}"] = {
                "satsr_s": best["satsr"], "bare_s": best["bare"],
                "ratio": best["satsr"] / best["bare"],
                "bare_issue_options_s": best["bare_issue"],
                "ratio_issue_options": best["satsr"] / best["bare_issue"],
                "out_mpix": (size * 4) ** 2 / 1e6}
            src.unlink()
    return res


# ------------------------------------------------------------- the model path's host work

def postprocess(quick: bool = False, repeats: int = 3,
                device: str = "cpu") -> dict[str, float]:
    """BandScaling.from_unit (float64 numpy, the previous path) vs from_unit_torch (float32 on
    `device`, then the uint8 moved to the host) on one (3, S, S) output, S = 8192 (quick 2048).
    Returns {numpy_s, torch_s, speedup, mpix}."""
    import torch

    from satsr.data.scaling import BandScaling

    s = 2048 if quick else 8192
    sc = BandScaling.for_uint8(3)
    gen = torch.Generator().manual_seed(0)
    y = (torch.rand((3, s, s), generator=gen) * 2.2 - 1.1)
    yd = y.to(device)
    old, new = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        sc.from_unit(y.numpy())
        old.append(time.perf_counter() - t)
        _sync(device)
        t = time.perf_counter()
        sc.from_unit_torch(yd).cpu()
        _sync(device)
        new.append(time.perf_counter() - t)
    return {"numpy_s": min(old), "torch_s": min(new), "speedup": min(old) / min(new),
            "mpix": s * s / 1e6}


def _sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bare_forward(engine: Any, height: int, width: int, tile: int, overlap: int,
                 batch_size: int, bf16: bool, repeats: int = 1) -> float:
    """Seconds of the engine's forward alone over the tile grid of a height x width raster
    (same tiles and batches as `run_tiled`), inputs made once on the device; best of
    `repeats` after one warm-up batch."""
    import torch

    from satsr.inference.tiling import TileGrid

    grid = TileGrid.build(height, width, engine.scale, tile, overlap, engine.radius)
    dev = engine.device
    c = engine.bands or 3
    x = torch.rand((batch_size, c, grid.tile_h, grid.tile_w), device=dev) * 2 - 1
    batches = [min(batch_size, len(grid.xs) - j) for _ in grid.ys
               for j in range(0, len(grid.xs), batch_size)]
    best = float("inf")
    with torch.inference_mode(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16,
                                                enabled=bf16):
        engine.forward(x[:1])
        _sync(dev)
        for _ in range(repeats):
            t = time.perf_counter()
            for n in batches:
                engine.forward(x[:n]).float()
            _sync(dev)
            best = min(best, time.perf_counter() - t)
    return best


def model_path(size: int | None = None, quick: bool = False, device: str = "cpu",
               precision: str = "fp32", bare_precision: str | None = None,
               workdir: str | Path | None = None, bare: bool = True) -> dict[str, float]:
    """`upscale_raster` with the bundled default model (satsr-rgb-x4, loaded once, one warm-up
    run on a small raster) on a size^2 RGB uint8 raster (default 2048, quick 256) vs the bare
    forward over the same tiles at the same precision (and at `bare_precision`, when given).
    On the CPU the forward calls inside the upscale are timed too (`in_run_forward_s`,
    `in_run_host_fraction`: the same split without the load changing between two runs).
    Returns {size, upscale_s, upscale_mpix_s, [forward_s, host_s, host_fraction,
    forward_mpix_s unless bare=False], [in_run_forward_s, in_run_host_fraction on the CPU],
    [bare_forward_s, bare_mpix_s, ratio_vs_bare with bare_precision]}."""
    from satsr.inference.engine import DEFAULT_OVERLAP, load_engine, tile_sizes
    from satsr.inference.writer import upscale_raster

    size = size or (256 if quick else 2048)
    engine = load_engine(None, device=device)
    tile, batch = tile_sizes(engine, None, DEFAULT_OVERLAP, None)
    in_run: list[float] = []
    forward = engine.forward
    if engine.device.type == "cpu":  # synchronous: the calls can be timed without a sync

        def timed(x: Any) -> Any:
            t = time.perf_counter()
            y = forward(x)
            in_run.append(time.perf_counter() - t)
            return y

        engine.forward = timed
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        warm = make_raster(Path(tmp) / "warm.tif", 96, "rgb8")
        upscale_raster(warm, Path(tmp) / "warm_x4.tif", engine, precision=precision)
        in_run.clear()
        src = make_raster(Path(tmp) / "in.tif", size, "rgb8")
        t = time.perf_counter()
        upscale_raster(src, Path(tmp) / "out.tif", engine, precision=precision)
        up = time.perf_counter() - t
        decision = decision_seconds(engine, src)
    engine.forward = forward
    out_mpix = (size * engine.scale) ** 2 / 1e6
    res = {"size": float(size), "upscale_s": up, "upscale_mpix_s": out_mpix / up}
    if decision is not None:  # part of upscale_s: the per-raster share's pre-pass
        res.update(decision_s=decision, decision_fraction=decision / up)
    if bare:  # `bare=False` (CPU only): the in-run split alone, half the time
        fwd = bare_forward(engine, size, size, tile, DEFAULT_OVERLAP, batch,
                           precision == "bf16")
        res.update(forward_s=fwd, host_s=up - fwd, host_fraction=(up - fwd) / up,
                   forward_mpix_s=out_mpix / fwd)
    if in_run:  # the same split inside the one run: immune to the load changing in between
        res.update(in_run_forward_s=sum(in_run),
                   in_run_host_fraction=(up - sum(in_run)) / up)
    if bare_precision is not None:
        bare_s = res["forward_s"] if bare and bare_precision == precision else bare_forward(
            engine, size, size, tile, DEFAULT_OVERLAP, batch, bare_precision == "bf16")
        res.update(bare_forward_s=bare_s, bare_mpix_s=out_mpix / bare_s,
                   bare_bf16=float(bare_precision == "bf16"),
                   ratio_vs_bare=(out_mpix / up) / (out_mpix / bare_s))
    return res


def decision_seconds(engine: Any, src: Path) -> float | None:
    """Seconds of the per-raster decision (satsr.inference.decision: sampling the raster and
    the probe's median) that `upscale_raster` runs before the tiles for a model deciding per
    raster; None for other engines."""
    import rasterio

    from satsr.inference import writer

    if writer.adaptive_scope(engine, None) != "raster":
        return None
    with rasterio.open(src) as ds:
        plan = writer._plan(ds, src, src.with_name("unused.tif"), engine, None, None, False)
        t = time.perf_counter()
        writer._apply_scope(ds, plan, engine, None)
        return time.perf_counter() - t


# ------------------------------------------------------------------- training (GPU targets)

def _train_source(tmp: Path, size: int) -> Path:
    return make_raster(tmp / "mosaic.tif", size, "rgb8")


def train_vs_minimal(device: str = "cuda", quick: bool = False, hr_size: int | None = None,
                     batch_size: int = 10, iterations: int | None = None,
                     rounds: int | None = None, workers: int | None = None
                     ) -> dict[str, float]:
    """s/it of `satsr train`'s inner loop (adv+rec; benchmarks/train_step.py loader_round: the
    train loader over the chips, in `workers` processes, default as `satsr train` picks them
    (satsr.data.crops.default_workers), feeding GCNModel.step) with --degradation realistic
    (made in the loader) and bicubic (on the device), the previous path (realistic made
    inside the step, step_round) and the minimal loop (minimal_round), same process, medians
    of interleaved rounds. HR 256 on CUDA (96 on the CPU), quick: fewer iterations. Returns
    {hr_size, workers, realistic_s_it, bicubic_s_it, realistic_in_step_s_it, minimal_s_it,
    ratio_realistic (target <= 1.15), ratio_bicubic, ratio_realistic_in_step}."""
    import statistics

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import write_dataset
    from train_step import loader_round, minimal_round, step_round

    from satsr.data.crops import TrainCrops, default_workers
    from satsr.data.index import DatasetIndex
    from satsr.nn.device import resolve_device
    from satsr.training.config import TrainConfig

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    hr = hr_size or (256 if cuda else 96)
    n = iterations or ((20 if quick else 100) if cuda else (3 if quick else 6))
    rounds = rounds or (2 if quick else 3)
    workers = default_workers(cuda) if workers is None else workers
    warm = 2 + 2 * (workers > 0)  # the workers' start-up stays out of the timing
    with tempfile.TemporaryDirectory() as tmp:
        chip = max(128, hr)
        src = _train_source(Path(tmp), 2048)
        ds = write_dataset(Path(tmp) / "ds", src, chip, {"train": 20})
        index = DatasetIndex.read(ds)
        paths = [c.path for c in index.split("train")]
        chips = TrainCrops(paths, index.scaling, chip, 0, (chip, chip))
        crops = torch.stack([chips[p][0] for p in range(len(chips))])
        train_crops = TrainCrops(paths, index.scaling, hr, 0, (chip, chip))
        cfgs = {deg: TrainConfig(data=str(ds), out=str(Path(tmp) / "run"), variant="adv+rec",
                                 hr_size=hr, batch_size=batch_size, val_every=0,
                                 checkpoint_every=0, device=device, degradation=deg,
                                 workers=workers)
                for deg in ("realistic", "bicubic")}
        times: dict[str, list[float]] = {"realistic": [], "bicubic": [], "realistic_in_step": [],
                                         "minimal": []}
        for _ in range(rounds):
            for deg, cfg in cfgs.items():
                times[deg].append(loader_round(train_crops, cfg, dev, warm, n, workers))
            times["realistic_in_step"].append(step_round(crops, cfgs["realistic"], dev, 2, n))
            times["minimal"].append(minimal_round(crops, cfgs["bicubic"], dev, 2, n))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"hr_size": float(hr), "workers": float(workers),
            "realistic_s_it": med["realistic"], "bicubic_s_it": med["bicubic"],
            "realistic_in_step_s_it": med["realistic_in_step"], "minimal_s_it": med["minimal"],
            "ratio_realistic": med["realistic"] / med["minimal"],
            "ratio_bicubic": med["bicubic"] / med["minimal"],
            "ratio_realistic_in_step": med["realistic_in_step"] / med["minimal"]}


def validation_seconds(device: str = "cuda", chips: int = 48, quick: bool = False,
                       hr_size: int | None = None) -> dict[str, float]:
    """Seconds of one `Trainer.validate()` over `chips` val chips (HR 256 on CUDA, 96 on the
    CPU; quick: 8 chips), best of two after a first one (which also scores bicubic and
    degrades the val crops once). Returns {chips, first_s, validation_s}."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import write_dataset

    from satsr.nn.device import resolve_device
    from satsr.training.config import TrainConfig
    from satsr.training.loop import Trainer

    dev = resolve_device(device)
    hr = hr_size or (256 if dev.type == "cuda" else 96)
    chips = 8 if quick else chips
    with tempfile.TemporaryDirectory() as tmp:
        chip = max(128, hr)
        src = _train_source(Path(tmp), 4096 if chip * 9 > 2048 else 2048)
        ds = write_dataset(Path(tmp) / "ds", src, chip, {"train": 20, "val": chips})
        cfg = TrainConfig(data=str(ds), out=str(Path(tmp) / "run"), variant="adv+rec",
                          hr_size=hr, batch_size=10, val_every=1, val_chips=chips,
                          checkpoint_every=0, device=device, degradation="realistic",
                          workers=0, iterations=1)
        trainer = Trainer(cfg, overwrite=True)
        trainer._prepare()
        t = time.perf_counter()
        trainer.validate()
        _sync(dev)
        first = time.perf_counter() - t
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            trainer.validate()
            _sync(dev)
            best = min(best, time.perf_counter() - t)
        del trainer
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return {"chips": float(chips), "hr_size": float(hr), "first_s": first,
            "validation_s": best}


def sentinel_tile(device: str = "cuda", quick: bool = False, size: int | None = None,
                  precision: str = "fp32",
                  workdir: str | Path | None = None) -> dict[str, float]:
    """Seconds to upscale a synthetic size^2 x 4 uint16 tile x4 (10980, quick 1098) with the
    bundled model `satsr upscale` picks for it, in-process. Returns {size, make_s,
    upscale_s, out_mpix_s}."""
    from satsr.inference.writer import upscale_raster

    size = size or (1098 if quick else 10980)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        t = time.perf_counter()
        src = synthetic_raster(Path(tmp) / "s2.tif", size)
        made = time.perf_counter() - t
        t = time.perf_counter()
        upscale_raster(src, Path(tmp) / "s2_x4.tif", device=device, precision=precision)
        up = time.perf_counter() - t
    return {"size": float(size), "make_s": made, "upscale_s": up,
            "out_mpix_s": (size * 4) ** 2 / 1e6 / up}


def run_all(device: str = "cpu", quick: bool = False) -> dict[str, Any]:
    """Every measurement for `device`: the CPU proxy always; on CUDA also the GPU targets."""
    cuda = device.startswith("cuda")
    res: dict[str, Any] = {
        "bicubic_vs_rasterio": bicubic_vs_rasterio(quick),
        "postprocess": postprocess(quick, device=device),
        "model_path": model_path(quick=quick, device=device,
                                 precision="bf16" if cuda else "fp32",
                                 bare_precision="bf16" if cuda else None),
    }
    if cuda:
        res["train_vs_minimal"] = train_vs_minimal(device, quick)
        res["validation"] = validation_seconds(device, quick=quick)
        res["sentinel_tile"] = sentinel_tile(device, quick, precision="bf16")
    return res


#: The issue's targets: (result key, value key, label, "<=" or ">=", bound). The bicubic
#: proxy's cases are matched by prefix (rgb8_*, u16x4_*).
TARGETS: list[tuple[str, str, str, str, float]] = [
    ("bicubic_vs_rasterio", "ratio", "CPU: satsr upscale --method bicubic / bare rasterio loop",
     "<=", 1.25),
    ("model_path", "host_fraction", "CPU: the model path's host-side share of the wall time",
     "<=", 0.20),
    ("model_path", "ratio_vs_bare", "GPU: satsr upscale (default model) / bare bf16 forward, "
     "output MPix/s", ">=", 0.5),
    ("train_vs_minimal", "ratio_realistic", "GPU: satsr train --degradation realistic / "
     "minimal loop, s/it", "<=", 1.15),
    ("validation", "validation_s", "GPU: one validation of 48 chips, s", "<=", 2.0),
    ("sentinel_tile", "upscale_s", "GPU: 10980^2 x 4 uint16 tile x4, s", "<=", 90.0),
]


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Each measured value of `res` against its target: {name, value, target, met}."""
    out = []
    for key, field, label, op, bound in TARGETS:
        r = res.get(key)
        if not isinstance(r, dict):
            continue
        cases = ({c: v for c, v in r.items() if isinstance(v, dict)} if key ==
                 "bicubic_vs_rasterio" else {"": r})
        for case, v in cases.items():
            if field not in v:
                continue
            value = float(v[field])
            met = value <= bound if op == "<=" else value >= bound
            out.append({"name": f"{label}{f' ({case})' if case else ''}", "value": value,
                        "target": f"{op} {bound:g}", "met": met})
    return out


def target_lines(res: dict[str, Any]) -> list[str]:
    """`targets` as one line each: `TARGET name: value (target <= x): met|MISSED`."""
    return [f"TARGET {t['name']}: {t['value']:.3g} (target {t['target']}): "
            f"{'met' if t['met'] else 'MISSED'}" for t in targets(res)]


def report(res: dict[str, Any]) -> list[str]:
    """One line per measurement, with its target."""
    lines = []
    for case, r in res.get("bicubic_vs_rasterio", {}).items():
        lines.append(f"upscale --method bicubic {case}: satsr {r['satsr_s']:.2f} s (process) vs "
                     f"bare rasterio loop {r['bare_s']:.2f} s (satsr's creation options): "
                     f"ratio {r['ratio']:.2f} (target <= 1.25); vs the loop with deflate/256 px "
                     f"tiles and no predictor {r['bare_issue_options_s']:.2f} s: "
                     f"{r['ratio_issue_options']:.2f}")
    if "postprocess" in res:
        r = res["postprocess"]
        lines.append(f"post-processing of {r['mpix']:.0f} MPix x 3 uint8: float64 numpy "
                     f"from_unit {r['numpy_s']:.2f} s, torch {r['torch_s']:.2f} s "
                     f"({r['speedup']:.1f}x)")
    if "model_path" in res:
        r = res["model_path"]
        line = (f"model path {int(r['size'])}^2 RGB uint8 (satsr-rgb-x4): upscale "
                f"{r['upscale_s']:.2f} s ({r['upscale_mpix_s']:.2f} MPix/s)")
        if "forward_s" in r:
            line += (f", forward alone {r['forward_s']:.2f} s, host-side {r['host_s']:.2f} s = "
                     f"{100 * r['host_fraction']:.1f} % of the wall time (target <= 20 %)")
        if "in_run_host_fraction" in r:
            line += (f"; inside the same run the forward calls took {r['in_run_forward_s']:.2f}"
                     f" s: host-side {100 * r['in_run_host_fraction']:.1f} %")
        if "ratio_vs_bare" in r:
            prec = "bf16" if r.get("bare_bf16", 1.0) else "fp32"
            line += (f"; vs the bare {prec} forward {r['bare_mpix_s']:.1f} MPix/s: "
                     f"{r['ratio_vs_bare']:.2f}x (target >= 0.5)")
        if "decision_s" in r:
            line += (f"; the per-raster decision took {r['decision_s']:.3f} s of it "
                     f"({100 * r['decision_fraction']:.1f} %)")
        lines.append(line)
    if "train_vs_minimal" in res:
        r = res["train_vs_minimal"]
        lines.append(f"train adv+rec HR {int(r['hr_size'])}, {int(r['workers'])} loader workers: "
                     f"realistic {r['realistic_s_it']:.4f} s/it, bicubic "
                     f"{r['bicubic_s_it']:.4f}, minimal loop {r['minimal_s_it']:.4f}: ratio "
                     f"realistic {r['ratio_realistic']:.2f} (target <= 1.15), bicubic "
                     f"{r['ratio_bicubic']:.2f}; realistic made inside the step (the previous "
                     f"path) {r['realistic_in_step_s_it']:.4f} s/it, ratio "
                     f"{r['ratio_realistic_in_step']:.2f}")
    if "validation" in res:
        r = res["validation"]
        lines.append(f"validation of {int(r['chips'])} chips (HR {int(r['hr_size'])}): "
                     f"{r['validation_s']:.2f} s (first {r['first_s']:.2f} s; target <= 2 s)")
    if "sentinel_tile" in res:
        r = res["sentinel_tile"]
        lines.append(f"{int(r['size'])}^2 x 4 uint16 tile x4: {r['upscale_s']:.1f} s "
                     f"({r['out_mpix_s']:.1f} MPix/s; target <= 90 s)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--only", default="", help="comma-separated: bicubic, post, model, "
                                               "train, validation, sentinel")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    if args.only:
        want = set(args.only.split(","))
        res: dict[str, Any] = {}
        cuda = args.device.startswith("cuda")
        if "bicubic" in want:
            res["bicubic_vs_rasterio"] = bicubic_vs_rasterio(args.quick)
        if "post" in want:
            res["postprocess"] = postprocess(args.quick, device=args.device)
        if "model" in want:
            res["model_path"] = model_path(quick=args.quick, device=args.device,
                                           precision="bf16" if cuda else "fp32",
                                           bare_precision="bf16" if cuda else None)
        if "train" in want:
            res["train_vs_minimal"] = train_vs_minimal(args.device, args.quick)
        if "validation" in want:
            res["validation"] = validation_seconds(args.device, quick=args.quick)
        if "sentinel" in want:
            res["sentinel_tile"] = sentinel_tile(args.device, args.quick,
                                                 precision="bf16" if cuda else "fp32")
    else:
        res = run_all(args.device, args.quick)
    for line in report(res) + target_lines(res):
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
