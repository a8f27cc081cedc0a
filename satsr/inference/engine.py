"""The super-resolution engine: a model (or a classical baseline) run tile by tile.

`Engine` holds the network, its device and band scaling; `run_tiled` runs it over a tile
grid (satsr.inference.tiling), blending overlapping tiles with their weights, and hands each
finished block of output to a callback, so memory does not grow with the raster. A tile whose
input or output holds NaN or inf stops the run with one NonFiniteError line. Sizes are
checked, not defaulted: a tile or batch size of 0 or less, or a tile stride (tile - overlap)
under satsr.inference.tiling.MIN_STRIDE, is refused.

`super_resolve` runs the very same engine on an in-memory array (eval uses it); the GeoTIFF
writer around it is satsr.inference.writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satsr.data.degrade import upsample
from satsr.data.scaling import BandScaling
from satsr.errors import NonFiniteError, SatsrError
from satsr.inference.bundled import default_model_path
from satsr.inference.modelfile import check_strength, load_model, model_scaling, read_metadata
from satsr.inference.tiling import TileGrid, check_tiling, receptive_radius
from satsr.nn.device import resolve_device
from satsr.nn.generator import Generator

#: Default overlap between neighbouring tiles, in input pixels (see satsr.inference.tiling).
DEFAULT_OVERLAP = 32
#: Default tile side in input pixels, by device kind: memory-friendly on CPU, larger on GPU.
DEFAULT_TILE = {"cpu": 256, "cuda": 512}
#: Default tiles per forward pass, by device kind.
DEFAULT_BATCH = {"cpu": 1, "cuda": 4}
METHODS = ("bicubic", "nearest")


# ------------------------------------------------------------------------------- the engine

@dataclass
class Engine:
    """A model or a classical baseline, ready to run on tiles in [-1, 1] units."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    scale: int
    radius: int
    device: torch.device
    name: str
    bands: int | None = None  # None: any band count (baselines)
    scaling: BandScaling | None = None  # None: the raster's own scaling (baselines)
    meta: dict[str, Any] = field(default_factory=dict)
    is_model: bool = True
    #: True when `forward` takes inputs beyond [-1, 1] and keeps them (a residual generator's
    #: `forward_unclipped`): the writer then scales without clipping, so nothing saturates.
    unclipped: bool = False
    #: A band-by-band model: one network applied to each band of any band count, each band
    #: scaled by its own range measured on the input (see satsr.data.bandsamples).
    bandwise: bool = False
    #: The generator behind `forward` (None for baselines): `satsr upscale` sets its
    #: per-raster correction share (satsr.inference.decision) before running a raster.
    generator: Any = None
    #: True when the choice table picked this model for the raster (no --model): options
    #: that do not apply to it are then ignored with a warning rather than refused.
    from_choice: bool = False

    @classmethod
    def from_generator(cls, gen: Generator, scaling: BandScaling | None = None,
                       device: str | torch.device | None = None, name: str = "generator",
                       meta: dict[str, Any] | None = None) -> Engine:
        """Wrap a generator (put in eval mode, moved to `device` if given)."""
        dev = resolve_device(device) if device is not None else next(gen.parameters()).device
        gen = gen.to(dev).eval()
        unclipped = bool(getattr(gen, "residual", False)) and hasattr(gen, "forward_unclipped")
        fwd: Callable[[torch.Tensor], torch.Tensor] = (gen.forward_unclipped if unclipped
                                                       else gen)
        bandwise = bool((meta or {}).get("bandwise")) and int(gen.bands) == 1
        if bandwise:
            fwd = _band_by_band(fwd)
        return cls(fwd, int(gen.scale), receptive_radius(gen), dev, name,
                   None if bandwise else int(gen.bands), None if bandwise else scaling,
                   dict(meta or {}), True, unclipped, bandwise, gen)

    @classmethod
    def baseline(cls, method: str, scale: int = 4,
                 device: str | torch.device = "cpu") -> Engine:
        """Classical upsampling ('bicubic' or 'nearest') through the same tiling engine."""
        if method not in METHODS:
            raise SatsrError(f"method takes bicubic or nearest, not {method!r}", option="method")
        if scale not in (2, 4, 8):
            raise SatsrError(f"scale must be 2, 4 or 8, not {scale}", option="scale")
        radius = 2 if method == "bicubic" else 0

        def fwd(x: torch.Tensor) -> torch.Tensor:
            return upsample(x, scale, method)

        return cls(fwd, scale, radius, resolve_device(device), method, None, None,
                   {"variant": method}, False)


def _band_by_band(fwd: Callable[[torch.Tensor], torch.Tensor]
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """(N, C, h, w) -> (N, C, sh, sw) through a 1-band network, each band on its own, N
    band-images per pass: the network's activations then take what a batch of N tiles of a
    1-band raster takes, whatever the band count (a 13-band pass would take 13 times that)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.reshape(n * c, 1, h, w)
        y = torch.cat([fwd(flat[i:i + n]) for i in range(0, n * c, n)])
        return y.reshape(n, c, *y.shape[-2:])

    return run


def load_engine(model: str | Path | None = None, method: str | None = None,
                scale: int | None = None, device: str = "auto",
                strength: float | None = None, from_choice: bool = False) -> Engine:
    """A model file / run folder (`model`) or a baseline (`method`), on `device`.

    `scale` is the baselines' factor (default 4); a model has its own, so with a model
    `scale` must be None or equal to it (silently ignoring it would surprise). `strength`
    (residual models only, 0 to 1) overrides the model's recorded correction strength.
    `from_choice`: the choice table picked `model` (Engine.from_choice).
    """
    if model is not None and method is not None:
        raise SatsrError("give either model or method, not both", option=("model", "method"))
    dev = resolve_device(device)
    if method is not None:
        if strength is not None:
            raise SatsrError("--strength applies to residual models, not to --method",
                             option=("strength", "method"))
        return Engine.baseline(method, 4 if scale is None else scale, dev)
    path = model if model is not None else default_model_path()
    own = int(read_metadata(path)["arch"]["scale"])
    if scale is not None and scale != own:
        raise SatsrError(f"scale {scale} does not apply: the model {path} upscales x{own} "
                         "(scale is for method; omit it with a model)", option=("scale", "method"))
    gen, meta = load_model(path, dev)
    if strength is not None:
        gen.strength = check_strength(strength, gen, f"--strength (model {path})")
        meta = {**meta, "strength": gen.strength}
    engine = Engine.from_generator(gen, model_scaling(meta), dev, name=str(path), meta=meta)
    engine.from_choice = from_choice
    return engine


def _first_non_finite(t: torch.Tensor) -> int | None:
    """Index of the first item of a batch holding NaN or inf, or None."""
    ok = torch.isfinite(t).flatten(1).all(1)
    if bool(ok.all()):
        return None
    return int((~ok).nonzero()[0, 0])


def _forward(engine: Engine, tiles: np.ndarray, weights: torch.Tensor,
             bf16: bool) -> tuple[torch.Tensor, int | None]:
    """One batch (B, C, h, w) in [-1, 1] -> (weighted outputs (B, C, h*s, w*s) float32 on the
    engine's device, index of the first tile whose raw output is not finite, or None).

    `bf16`: the forward runs under bfloat16 autocast on the engine's device (CUDA or CPU)."""
    dev = engine.device
    x = torch.from_numpy(tiles)
    if dev.type == "cuda":
        x = x.pin_memory().to(dev, non_blocking=True)
    else:
        x = x.to(dev)
    with torch.inference_mode():
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            y = engine.forward(x)
        y = y.float()
        bad = _first_non_finite(y)  # before weighting: 0 * inf would hide as NaN anyway
        return y * weights, bad


def read_plan(grid: TileGrid, batch_size: int) -> list[tuple[int, int, int, int]]:
    """The input windows (row, col, h, w) `run_tiled` reads, in its order."""
    xs, tw, nx = grid.xs, grid.tile_w, len(grid.xs)
    return [(y, xs[j0], grid.tile_h, xs[min(j0 + batch_size, nx) - 1] + tw - xs[j0])
            for y in grid.ys for j0 in range(0, nx, batch_size)]


def run_tiled(engine: Engine, height: int, width: int,
              read: Callable[[int, int, int, int], np.ndarray],
              emit: Callable[[int, int, torch.Tensor], None], *, tile: int, overlap: int,
              batch_size: int, bf16: bool = False,
              on_batch: Callable[[int], None] | None = None,
              prefetch: int = 0) -> TileGrid:
    """Run `engine` over a height x width input in overlapping tiles and blend the outputs.

    `read(row, col, h, w)` returns the input window (C, h, w) in [-1, 1] with masked pixels
    already filled. `emit(row, col, block)` receives each finished block of output pixels
    (C, bh, bw) in [-1, 1] at output coordinates, a float32 tensor on the engine's device,
    exactly once per output pixel, in row-major order of tile rows. `on_batch(n)` is called
    after each batch of n tiles. `prefetch` > 0 reads that many windows ahead in a reader
    thread (satsr.inference.pipeline.Prefetch): `read` must then be safe to call from it.

    Blending runs on the engine's device, so only finished blocks leave it.

    Raises NonFiniteError as soon as a tile's input or output holds NaN or inf (a damaged or
    overflowing model, or unfilled NaN input): nothing of that tile row has been emitted.
    """
    from satsr.inference.pipeline import Prefetch

    if batch_size < 1:
        raise SatsrError(f"batch_size must be at least 1, not {batch_size}")
    s = engine.scale
    grid = TileGrid.build(height, width, s, tile, overlap, engine.radius)
    th, tw, ny, nx, xs = grid.tile_h, grid.tile_w, len(grid.ys), len(grid.xs), grid.xs
    dev = engine.device
    wx_t = [torch.from_numpy(w).to(dev) for w in grid.wx]
    sum_y, sum_x = torch.from_numpy(grid.sum_y).to(dev), torch.from_numpy(grid.sum_x).to(dev)
    plan = read_plan(grid, batch_size)
    windows = (Prefetch(lambda w: read(*w), plan, prefetch) if prefetch > 0
               else (read(*w) for w in plan))
    carry: torch.Tensor | None = None  # rows [Y0, end of previous tile row) of pending sums
    try:
        for i, y in enumerate(grid.ys):
            y0, y1 = y * s, (y + th) * s
            yf = grid.ys[i + 1] * s if i + 1 < ny else y1  # rows final after this tile row
            wy_t = torch.from_numpy(grid.wy[i]).to(dev)
            new_carry: torch.Tensor | None = None
            pending: torch.Tensor | None = None  # columns right of the last emitted block
            for j0 in range(0, nx, batch_size):
                js = list(range(j0, min(j0 + batch_size, nx)))
                x0, x1 = xs[js[0]], xs[js[-1]] + tw
                lr = next(windows)
                c = lr.shape[0]
                tiles = _batch_tiles(lr, [xs[j] for j in js], tw, y)
                weights = torch.stack([wy_t[:, None] * wx_t[j][None, :] for j in js])[:, None]
                out = _checked_forward(engine, tiles, weights, bf16, y, [xs[j] for j in js])
                a, b = x0 * s, x1 * s
                buf = torch.zeros((c, y1 - y0, b - a), dtype=torch.float32, device=dev)
                if pending is not None:
                    buf[:, :, :pending.shape[2]] += pending
                for k, j in enumerate(js):
                    o = (xs[j] - x0) * s
                    buf[:, :, o:o + tw * s] += out[k]
                del out
                f = xs[js[-1] + 1] * s if js[-1] + 1 < nx else b  # columns final after batch
                block = buf[:, :, :f - a]
                pending = buf[:, :, f - a:].clone() if f < b else None
                if carry is not None:
                    block[:, :carry.shape[1], :] += carry[:, :, a:f]
                if yf > y0:
                    norm = sum_y[y0:yf, None] * sum_x[None, a:f]
                    emit(y0, a, block[:, :yf - y0] / norm)
                if yf < y1:
                    if new_carry is None:
                        new_carry = torch.zeros((c, y1 - yf, width * s), dtype=torch.float32,
                                                device=dev)
                    new_carry[:, :, a:f] = block[:, yf - y0:]
                del buf, block
                if on_batch is not None:
                    on_batch(len(js))
            carry = new_carry
    finally:
        if isinstance(windows, Prefetch):
            windows.close()
    return grid


def _batch_tiles(lr: np.ndarray, cols: Sequence[int], tw: int, row: int) -> np.ndarray:
    """The tiles at input columns `cols` of the window `lr` (read from column cols[0]), as
    one (N, C, th, tw) batch; NonFiniteError when one holds NaN or inf."""
    x0 = cols[0]
    tiles = np.stack([lr[:, :, x - x0:x - x0 + tw] for x in cols])
    if not np.isfinite(tiles).all():
        k = int(np.argmin(np.isfinite(tiles).reshape(len(cols), -1).all(1)))
        raise NonFiniteError(f"the input holds non-finite values (NaN or inf) in "
                             f"the tile at row {row}, column {cols[k]}")
    return tiles


def _checked_forward(engine: Engine, tiles: np.ndarray, weights: torch.Tensor, bf16: bool,
                     row: int, cols: Sequence[int]) -> torch.Tensor:
    """The weighted outputs of a batch of tiles; NonFiniteError when one is not finite."""
    out, bad = _forward(engine, tiles, weights, bf16)
    if bad is not None:
        who = f"the model {engine.name}" if engine.is_model else engine.name
        raise NonFiniteError(f"{who} gave non-finite output (NaN or inf) for the "
                             f"tile at input row {row}, column {cols[bad]}"
                             + (": its weights may be damaged" if engine.is_model else ""))
    return out


def super_resolve(lr: np.ndarray | torch.Tensor, model: Generator | Engine, *,
                  tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                  batch_size: int | None = None,
                  device: str | torch.device | None = None) -> np.ndarray:
    """Super-resolve an in-memory image (C, H, W) or stack (N, C, H, W) in [-1, 1] units.

    Runs the same tiled engine as `upscale_raster` (for an image no larger than `tile`, that is
    one whole-image forward pass). Returns float32 numpy in [-1, 1], H and W times the scale.
    """
    engine = model if isinstance(model, Engine) else Engine.from_generator(model, device=device)
    arr = lr.detach().cpu().numpy() if isinstance(lr, torch.Tensor) else np.asarray(lr)
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 3:
        return super_resolve(arr[None], engine, tile=tile, overlap=overlap,
                             batch_size=batch_size)[0]
    if arr.ndim != 4:
        raise ValueError(f"expected (C, H, W) or (N, C, H, W), got shape {arr.shape}")
    tile, batch_size = tile_sizes(engine, tile, overlap, batch_size)
    n, c, h, w = arr.shape
    s = engine.scale
    out = np.empty((n, c, h * s, w * s), np.float32)
    for k in range(n):
        img, dst = arr[k], out[k]

        def read(r: int, col: int, hh: int, ww: int, img: np.ndarray = img) -> np.ndarray:
            return img[:, r:r + hh, col:col + ww]

        def emit(r: int, col: int, block: torch.Tensor, dst: np.ndarray = dst) -> None:
            dst[:, r:r + block.shape[1], col:col + block.shape[2]] = block.cpu().numpy()

        run_tiled(engine, h, w, read, emit, tile=tile, overlap=overlap, batch_size=batch_size)
    return out


def tile_sizes(engine: Engine, tile: int | None, overlap: int,
               batch_size: int | None) -> tuple[int, int]:
    """(tile, batch size): the device's defaults for None; 0 or less is refused, not defaulted."""
    kind = engine.device.type
    tile = DEFAULT_TILE.get(kind, 256) if tile is None else int(tile)
    batch_size = DEFAULT_BATCH.get(kind, 1) if batch_size is None else int(batch_size)
    check_tiling(tile, overlap)
    if batch_size < 1:
        raise SatsrError(f"batch_size must be at least 1, not {batch_size}")
    return tile, batch_size


def fill_invalid(unit: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace masked pixels by their nearest valid pixel's values (no dark halos).

    A window with no valid pixel at all is filled with 0 (mid-range); its output is masked.
    """
    if valid.all():
        return unit
    if not valid.any():
        return np.zeros_like(unit)
    from scipy import ndimage  # deferred: 0.3 s of every upscale's start otherwise

    idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return unit[:, idx[0], idx[1]]
