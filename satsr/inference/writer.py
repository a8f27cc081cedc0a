"""The GeoTIFF writer: super-resolve rasters of any size, streaming window by window.

The flow for one raster: open it and check it against the model (band count, dtype, ground
resolution); build the tile grid (satsr.inference.tiling); for each row of tiles read the
input window of each batch of tiles, scale it to [-1, 1] with the model's band scaling (or, for the
classical baselines, the raster's own scaling), fill masked pixels with their nearest valid
value (no dark halos), run the batch, multiply each tile's output by its blend weight and add
it into a small accumulator. As soon as every tile touching a block of output pixels has been
added, the block is normalised by the weight sum, mapped back to the raster's dtype, masked
and written. Peak memory is one batch of tiles, one tile row band and a carry band of
`overlap * scale` output rows: it does not grow with the raster's height, and only that thin
carry band (plus GDAL's bounded cache) grows with its width.

A tile whose input or output holds NaN or inf (a damaged or overflowing model) stops the run
with one NonFiniteError line; the output is written through a temporary file, so nothing is
published at the target path. Sizes are checked, not defaulted: a tile or batch size of 0
or less, or a tile stride (tile - overlap) under satsr.inference.tiling.MIN_STRIDE, is refused.

`super_resolve` runs the very same engine on an in-memory array (eval uses it).

Band scaling
------------
With a model: the model file's own scaling (`model_scaling(meta)`), never recomputed, so the
model sees exactly the numbers it was trained on; the raster's dtype must match the model's.
With `--method bicubic|nearest`: uint8 uses the fixed 0..255 scaling; other dtypes use the
raster's own exact per-band min/max over valid pixels, from one windowed pass (bounded memory),
so the baseline round trip loses nothing but the interpolation itself.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import torch
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from satsr import __version__
from satsr.data import raster
from satsr.data.bands import estimate_scaling
from satsr.data.raster import alpha_bands, atomic_path, gdal_env, open_raster, read_window
from satsr.data.scaling import BandScaling, exact_scaling
from satsr.errors import NonFiniteError, SatsrError, UpscaleWarning
from satsr.inference.decision import JPEG_BLOCK, SAMPLE_SIDE, SAMPLE_TILES, SCOPES, Decision, decide
from satsr.inference.engine import (
    DEFAULT_OVERLAP,
    Engine,
    fill_invalid,
    load_engine,
    run_tiled,
    tile_sizes,
)
from satsr.inference.tiling import TileGrid
from satsr.progress import progress_bar
from satsr.validation import check_nodata

#: How upscale maps a raster to a model's units (see upscale_raster).
SCALING_MODES = ("auto", "model", "input")
#: How a model's forward runs (see upscale_raster).
PRECISIONS = ("fp32", "bf16")

#: Warn when the input's ground resolution is this many times outside the model's range.
GSD_FACTOR = 4.0
#: Output GeoTIFF internal tile size.
BLOCK = 512
SUFFIX_DRIVER = {".tif": "GTiff", ".tiff": "GTiff", ".png": "PNG", ".jpg": "JPEG",
                 ".jpeg": "JPEG"}
RASTER_SUFFIXES = tuple(SUFFIX_DRIVER)
SR_NOTE = "super-resolved: contains synthesised detail, not a measurement"
#: What setting an optional property GDAL may refuse raises (see _write_meta).
_REFUSED: tuple[type[BaseException], ...] = (*raster.GDAL_ERRORS, ValueError)


# ------------------------------------------------------------------------------- rasters

@dataclass
class UpscaleResult:
    """What `upscale_raster` wrote."""

    src: Path
    dst: Path
    width: int
    height: int
    bands: int
    dtype: str
    driver: str
    georeferenced: bool
    tiles: int  # model tiles run; for --method, the windows upsampled
    seconds: float
    size_bytes: int
    decision: Decision | None = None  # the per-raster correction share, when one was decided

    @property
    def mpix_per_s(self) -> float:
        return self.width * self.height / 1e6 / max(self.seconds, 1e-9)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        line = (f"wrote {self.dst}: {self.width}x{self.height} x{self.bands} {self.dtype} "
                f"({_human(self.size_bytes)}) in {self.seconds:.1f} s "
                f"({self.mpix_per_s:.2f} MPix/s)")
        if self.decision is not None:
            line += f"; correction share {self.decision.share:g} ({self.decision.reason})"
        return line


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def output_driver(src_driver: str, dst: Path) -> str:
    """The output format: by OUT's suffix, else the input's format family (GTiff otherwise)."""
    drv = SUFFIX_DRIVER.get(dst.suffix.lower())
    if drv:
        return drv
    return src_driver if src_driver in ("PNG", "JPEG") else "GTiff"


def _gsd_warning(ds: Any, meta: dict[str, Any], src: Path) -> None:
    """Warn when the input's pixel size is far outside the model's training range."""
    rng = meta.get("gsd_range")
    if not rng or ds.crs is None or not ds.crs.is_projected:
        return
    gsd = float(np.mean(raster.ground_resolution(ds)))
    lo, hi = float(min(rng)), float(max(rng))
    if lo > 0 and (gsd < lo / GSD_FACTOR or gsd > hi * GSD_FACTOR):
        warnings.warn(f"{src}: ground resolution {gsd:g} is far outside the model's training "
                      f"range {lo:g}..{hi:g} (CRS units): expect poor results",
                      UpscaleWarning, stacklevel=3)


def upscale_raster(src: str | Path, dst: str | Path, model: Engine | str | Path | None = None,
                   *, method: str | None = None, scale: int | None = None,
                   strength: float | None = None,
                   device: str = "auto", bands: Sequence[int] | None = None,
                   nodata: float | None = None, tile: int | None = None,
                   overlap: int = DEFAULT_OVERLAP,
                   batch_size: int | None = None, cog: bool = False,
                   creation_options: dict[str, str] | None = None, overwrite: bool = False,
                   progress: bool = False, scaling: str = "auto",
                   precision: str = "fp32", adaptive: str | None = None) -> UpscaleResult:
    """Super-resolve one raster into `dst` (see the module docstring); atomic write.

    `model` is a model file, a run folder, a bundled model's name or a loaded Engine
    (default: the bundled model the choice table gives this raster, as `satsr upscale`
    without --model; see satsr.inference.choice); `method` (bicubic, nearest) and `scale` ask for a
    classical baseline instead, and `device` says where a model runs (see load_engine).
    `strength` (residual models, 0 to 1) overrides the model's recorded correction strength,
    as `satsr upscale --strength` does (default: the model's).
    The output keeps the CRS, the footprint (transform * Affine.scale(1 / scale)), the selected
    bands' order, dtype, descriptions and colour interpretation, and the nodata value, alpha
    band or internal mask (upsampled with nearest). Tags record the model and the scale.

    `scaling` says which band scaling maps the raster to the model's units: `model` (the
    numbers the model was trained with), `input` (each band's [p0.1, p99.9] measured on this
    raster: satsr.data.bands.estimate_scaling, recorded in the output's tags), or `auto`
    (the model's when the raster has the dtype the model was trained on, else the input's).

    `precision` says how a model's forward runs: `fp32`, or `bf16` (bfloat16 autocast, where
    the device supports it: faster on a recent GPU; the bundled satsr-rgb-x4 stays within
    2 DN of fp32 on uint8, see tests/test_pipeline.py). It is recorded in the tags
    (SATSR_PRECISION). The classical baselines compute in float32 (float64 for wide dtypes)
    and refuse bf16.

    `adaptive` (models with an aliasing probe): `raster`, `tile` or `off`, where the share of
    the correction is decided (see adaptive_scope; default: the model's `adaptive_scope`).
    """

    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    raster.check_output(dst, overwrite, source=src,
                        inputs=[model] if isinstance(model, (str, Path)) else ())
    engine = _engine(src, model, method, scale, strength, device, bands)
    tile, batch_size = tile_sizes(engine, tile, overlap, batch_size)
    bf16 = check_precision(precision, engine)
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        ds = open_raster(src)
        with ds:
            plan = _plan(ds, src, dst, engine, bands, nodata, cog, scaling)
            plan.bf16 = bf16
            decision = _apply_scope(ds, plan, engine, adaptive, engine.from_choice)
            s = engine.scale
            width, height = ds.width * s, ds.height * s
            if creation_options:  # refused before any work, not ignored
                _check_creation(ds, plan, s, cog, creation_options)
            with atomic_path(dst) as tmp:
                stage = tmp if plan.driver == "GTiff" and not cog else \
                    tmp.with_name(tmp.name + ".stage.tif")
                profile = _profile(ds, plan, s, stage_only=stage != tmp,
                                   extra=None if stage != tmp else creation_options)
                prog = progress_bar(progress, "tiles {task.fields[rate]}")
                with rasterio.open(stage, "w", **profile) as out:
                    _write_meta(out, ds, plan, engine)
                    try:
                        if engine.is_model:
                            n_tiles = TileGrid.build(ds.height, ds.width, s, tile, overlap,
                                                     engine.radius).count
                            _stream(ds, src, out, plan, engine, tile, overlap, batch_size,
                                    prog, n_tiles, t0)
                        else:
                            n_tiles = _stream_windows(ds, out, plan, engine, prog, t0)
                    except NonFiniteError as exc:  # atomic_path drops the partial output
                        raise NonFiniteError(f"{src}: {exc}; nothing was written to "
                                             f"{dst}") from exc
                if stage != tmp:
                    _convert(stage, tmp, plan.driver, cog, creation_options, plan.dtype)
            size = dst.stat().st_size
    return UpscaleResult(src, dst, width, height, profile["count"], plan.dtype,
                         "COG" if cog else plan.driver, plan.georef, n_tiles,
                         time.perf_counter() - t0, size, decision)


def _engine(src: Path, model: Engine | str | Path | None, method: str | None,
            scale: int | None, strength: float | None, device: str,
            bands: Sequence[int] | None) -> Engine:
    """The engine upscale_raster runs: the one given, or loaded (see upscale_raster)."""
    if isinstance(model, Engine):
        if method is not None or scale is not None:
            raise SatsrError("method and scale apply when model is not an Engine",
                             option=("method", "scale"))
        if strength is not None:
            raise SatsrError("strength applies when model is not an Engine (load_engine "
                             "takes it)", option="strength")
        return model
    if model is None and method is None:
        from satsr.inference.choice import choose_model

        return load_engine(choose_model(src, bands).path, None, scale, device, strength,
                           from_choice=True)
    return load_engine(model, method, scale, device, strength)


def check_adaptive_option(adaptive: str | None) -> None:
    """`adaptive` is None or one of the scopes (satsr.inference.decision.SCOPES)."""
    if adaptive is not None and adaptive not in SCOPES:
        raise SatsrError(f"adaptive takes {', '.join(SCOPES)}, not {adaptive!r}",
                         option="adaptive")


def adaptive_scope(engine: Engine, adaptive: str | None, chosen: bool = False) -> str | None:
    """Where the correction share is decided: `raster` (one share from samples of the whole
    raster, JPEG grid included: satsr.inference.decision; recorded in the SATSR_DECISION
    tag), `tile` (each tile's own probe reading) or `off` (the whole correction everywhere);
    `adaptive` or the model's `adaptive_scope` (tile when it has none). None for engines
    without an adaptive probe; `adaptive` given for a baseline is refused, and for a model
    without a probe refused too, or, when the choice table `chosen` it for this raster,
    ignored with a warning."""
    check_adaptive_option(adaptive)
    if adaptive is not None and not engine.is_model:
        raise SatsrError(f"adaptive applies to a model, not to {engine.name} interpolation",
                         option="adaptive")
    gen = engine.generator
    probing = gen is not None and getattr(gen, "probe", None) is not None \
        and getattr(gen, "adaptive", None) is not None
    if not probing:
        if adaptive is not None and chosen:  # e.g. a folder's multispectral rasters
            warnings.warn(f"adaptive does not apply to {Path(engine.name).name} (no aliasing "
                          "probe): ignored for this raster", UpscaleWarning, stacklevel=3)
        elif adaptive is not None:
            raise SatsrError(f"adaptive applies to models with an aliasing probe; "
                             f"{Path(engine.name).name} has none", option="adaptive")
        return None
    return adaptive or str(engine.meta.get("adaptive_scope", "tile"))


def _apply_scope(ds: Any, plan: _Plan, engine: Engine, adaptive: str | None,
                 chosen: bool = False) -> Decision | None:
    """Set the generator's share for this raster (an engine serves several rasters), where
    adaptive_scope(engine, adaptive, chosen) says; the decision when one was made per
    raster."""
    scope = adaptive_scope(engine, adaptive, chosen)
    if scope is None:
        return None
    gen = engine.generator
    gen.fixed_share = 1.0 if scope == "off" else None
    plan.tags["SATSR_ADAPTIVE_SCOPE"] = scope
    if scope != "raster":
        return None
    # the probe sees what the forward's probe sees: the input clipped to the model's range
    tiles = _sample_tiles(ds, plan, not engine.unclipped).clamp(-1.0, 1.0)
    jpeg_share = engine.meta.get("jpeg_share")
    d = decide(gen.probe, tiles.to(engine.device), gen.adaptive,
               None if jpeg_share is None else float(jpeg_share))
    gen.fixed_share = d.share
    plan.tags["SATSR_DECISION"] = d.tag()
    return d


def _sample_tiles(ds: Any, plan: _Plan, clip: bool) -> torch.Tensor:
    """Up to SAMPLE_TILES windows of SAMPLE_SIDE px spread over the raster, their origins on
    the JPEG grid, in the model's units (N, C, side, side); windows holding nodata are left
    out unless every window does (then they are filled as upscale fills them). A raster
    smaller than a window is read whole."""
    h, w = ds.height, ds.width
    side_h, side_w = min(SAMPLE_SIDE, h), min(SAMPLE_SIDE, w)
    per_axis = max(1, int(math.isqrt(SAMPLE_TILES)))
    rows = _spread(h - side_h, min(per_axis, max(1, h // side_h)))
    cols = _spread(w - side_w, min(per_axis, max(1, w // side_w)))
    clean: list[torch.Tensor] = []
    filled: list[torch.Tensor] = []
    for r in rows:
        for c in cols:
            win = Window(c, r, side_w, side_h)
            data = read_window(ds, plan.bands, win)
            ok = raster.valid_mask(ds, win, data, plan.nodata_in)
            unit = fill_invalid(plan.scaling.to_unit(data, clip=clip), ok)
            (clean if ok.all() else filled).append(torch.from_numpy(np.ascontiguousarray(unit)))
    return torch.stack(clean or filled).float()


def _spread(span: int, n: int) -> list[int]:
    """n origins from 0 to `span`, evenly spaced and rounded down to the JPEG grid."""
    if n <= 1 or span <= 0:
        return [0]
    return sorted({int(i * span / (n - 1)) // JPEG_BLOCK * JPEG_BLOCK for i in range(n)})


def _check_creation(ds: Any, plan: _Plan, s: int, cog: bool,
                    creation_options: dict[str, str]) -> None:
    """Refuse creation options the written file's driver would not take, before any work:
    the staging GeoTIFF's when it is the output, else the final copy's."""
    direct = plan.driver == "GTiff" and not cog
    raster.check_creation_options(
        _profile(ds, plan, s, stage_only=not direct,
                 extra=creation_options if direct else None),
        None if direct else _convert_options(plan.driver, cog, creation_options, plan.dtype))


@dataclass
class _Plan:
    """What to read and how to write it, decided once per raster."""

    bands: list[int]
    alpha: list[int]
    dtype: str
    scaling: BandScaling
    nodata_in: float | None  # user nodata for files that declare none
    nodata_out: float | None
    write_mask: bool
    driver: str
    georef: bool
    keep_transform: bool
    bf16: bool
    fill: float  # value of masked output pixels
    nudge: tuple[Any, Any] | None  # (nodata, replacement) for valid pixels equal to nodata
    tags: dict[str, str] = field(default_factory=dict)  # e.g. the input-measured scaling
    empty: tuple[int, ...] = ()  # 0-based bands holding no valid pixel: written as nodata
    gcps: tuple[list[Any], Any] | None = None  # ground control points (scaled) and their CRS


def _plan(ds: Any, src: Path, dst: Path, engine: Engine, bands: Sequence[int] | None,
          nodata: float | None, cog: bool, scaling_mode: str = "auto") -> _Plan:
    """Check the raster against the engine and the output format; decide masks and scaling."""

    sel, dtype = raster.select_one_dtype(ds, list(bands) if bands else None, src, "upscale")
    check_nodata(nodata, dtype)
    _check_band_count(ds, src, sel, engine)
    if scaling_mode not in SCALING_MODES:
        raise SatsrError(f"scaling must be {', '.join(SCALING_MODES)}, not {scaling_mode!r}",
                         option="scaling")
    scaling, tags, empty = _scaling(ds, src, sel, dtype, engine, nodata, scaling_mode)
    alpha = [b for b in alpha_bands(ds) if b not in sel]
    declared = ds.nodatavals[sel[0] - 1]
    nodata_out = declared if declared is not None else nodata
    flags = ds.mask_flag_enums[sel[0] - 1]
    write_mask = (nodata_out is None and not alpha and MaskFlags.per_dataset in flags
                  and MaskFlags.alpha not in flags)
    driver = output_driver(ds.driver, dst)
    _check_driver(driver, dst, cog, len(sel) + len(alpha), dtype)
    if any(ds.colorinterp[b - 1] == ColorInterp.palette for b in sel) and \
            (engine.is_model or engine.name != "nearest"):
        raise SatsrError(f"{src} is a paletted raster (class colours): a model or bicubic "
                         f"would make class values that do not exist in it; use method "
                         f"nearest", option="method")
    georef = ds.crs is not None
    keep_transform = georef or ds.transform != Affine.identity()
    scaled_gcps = _georeferencing(ds, src, driver, engine.scale)
    if engine.is_model:
        _gsd_warning(ds, engine.meta, src)
    bf16 = False  # upscale_raster sets it from its precision
    fill, nudge = _fill_values(np.dtype(dtype), nodata_out, not alpha and not write_mask)
    return _Plan(sel, alpha, dtype, scaling, nodata if declared is None else None, nodata_out,
                 write_mask, driver, georef, keep_transform and driver == "GTiff", bf16,
                 fill, nudge, tags, empty, scaled_gcps)


def _check_band_count(ds: Any, src: Path, sel: list[int], engine: Engine) -> None:
    """Refuse a selection of another number of bands than the model reads, suggesting one."""
    if engine.bands is None or len(sel) == engine.bands:
        return
    n = engine.bands
    if ds.count < n:
        raise SatsrError(f"{src} has too few bands for this model: it reads {n} bands but "
                         f"the file has only {ds.count}; use a model trained on "
                         f"{len(sel)}-band rasters")
    data = [b for b in range(1, ds.count + 1) if b not in alpha_bands(ds)]
    pick = (data + [b for b in range(1, ds.count + 1) if b not in data])[:n]
    raise SatsrError(f"{src}: the model reads {n} bands but {len(sel)} are selected "
                     f"(bands {','.join(map(str, sel))} of {ds.count}); choose {n} with "
                     f"bands, e.g. bands {','.join(map(str, sorted(pick)))}", option="bands")


def _scaling(ds: Any, src: Path, sel: list[int], dtype: str, engine: Engine,
             nodata: float | None, scaling_mode: str,
             ) -> tuple[BandScaling, dict[str, str], tuple[int, ...]]:
    """(band scaling, tags recording it, bands without valid pixels) by `scaling_mode`: a
    baseline's exact range, the model's own numbers, or the input's measured range."""
    if engine.bandwise and scaling_mode == "model":
        raise SatsrError("a band-by-band model has no value ranges of its own: it measures "
                         "each band on the input (give scaling input or auto)",
                         option="scaling")
    if engine.scaling is None and not engine.bandwise:  # a baseline: the exact range
        return exact_scaling(ds, sel, dtype, nodata), {}, ()
    if engine.scaling is not None and (scaling_mode == "model" or (
            scaling_mode == "auto" and np.dtype(engine.scaling.dtype) == np.dtype(dtype))):
        if np.dtype(engine.scaling.dtype) != np.dtype(dtype):
            raise SatsrError(f"{src} is {dtype} but the model was trained on "
                             f"{engine.scaling.dtype} rasters; its band scaling would not fit "
                             f"(scaling input measures the raster's own range)",
                             option="scaling")
        return engine.scaling, {}, ()
    if engine.bandwise or engine.scaling is None:
        advice = ("a band-by-band model needs them: upscale a larger raster, or use "
                  "method bicubic")
    elif np.dtype(engine.scaling.dtype) == np.dtype(dtype):
        advice = "use the model's own ranges with scaling model"
    else:
        advice = (f"the model's own ranges are for {engine.scaling.dtype} rasters: upscale "
                  f"a larger raster, or use method bicubic")
    est = estimate_scaling(ds, sel, src, nodata, advice=advice)
    return est.scaling, est.tags(), tuple(est.empty)


def _check_driver(driver: str, dst: Path, cog: bool, count: int, dtype: str) -> None:
    """Refuse outputs the format cannot hold (COG, JPEG and PNG limits)."""
    if cog and driver != "GTiff":
        raise SatsrError(f"cog writes a GeoTIFF: name the output .tif, not {dst.name}",
                         option="cog")
    if driver == "JPEG" and (dtype != "uint8" or count not in (1, 3)):
        raise SatsrError(f"JPEG output holds 1 or 3 uint8 bands, not {count} x {dtype}: "
                         "write a .tif instead")
    if driver == "PNG" and (dtype not in ("uint8", "uint16") or count > 4):
        raise SatsrError(f"PNG output holds 1 to 4 uint8/uint16 bands, not {count} x {dtype}: "
                         "write a .tif instead")


def _georeferencing(ds: Any, src: Path, driver: str, s: int) -> tuple[list[Any], Any] | None:
    """The input's ground control points scaled to the output (when it has no CRS but has
    them), warning when the output will lack the input's georeferencing."""
    georef = ds.crs is not None
    gcps, gcp_crs = ds.gcps
    if not georef and gcps and gcp_crs is not None:  # control points, scaled to the output
        if driver != "GTiff":
            warnings.warn(f"{driver} output cannot hold the control points of {src}: write "
                          f"a .tif to keep the georeferencing", UpscaleWarning, stacklevel=4)
        return ([GroundControlPoint(row=g.row * s, col=g.col * s, x=g.x, y=g.y,
                                    z=g.z, id=g.id, info=g.info) for g in gcps], gcp_crs)
    if not georef:
        warnings.warn(f"{src} has no CRS: the output is written without georeferencing",
                      UpscaleWarning, stacklevel=4)
    elif driver != "GTiff":
        warnings.warn(f"{driver} output cannot hold the CRS of {src}: write a .tif to keep "
                      "the georeferencing", UpscaleWarning, stacklevel=4)
    return None


def _fill_values(dt: np.dtype[Any], nodata_out: float | None, nan_fill: bool,
                 ) -> tuple[float, tuple[Any, Any] | None]:
    """(value of masked output pixels, (nodata, replacement) for valid pixels equal to
    nodata or None). Without a nodata value, float outputs that hold no mask or alpha
    band (`nan_fill`) fill with NaN, others with 0."""
    if nodata_out is None:
        return (float("nan") if dt.kind == "f" and nan_fill else 0), None
    nudge = None
    if not math.isnan(nodata_out):
        nd = dt.type(nodata_out)
        if dt.kind == "f":
            bump = np.nextafter(nd, dt.type(np.inf if nd < 0 else -np.inf), dtype=dt)
        else:
            bump = nd + 1 if nd < np.iinfo(dt).max else nd - 1
        nudge = (nd, dt.type(bump))
    return nodata_out, nudge


def _profile(ds: Any, plan: _Plan, s: int, stage_only: bool,
             extra: dict[str, str] | None) -> dict[str, Any]:
    """Creation profile of the (staging) GeoTIFF: tiled, DEFLATE, predictor by dtype."""
    kind = np.dtype(plan.dtype).kind
    p: dict[str, Any] = {
        "driver": "GTiff", "width": ds.width * s, "height": ds.height * s,
        "count": len(plan.bands) + len(plan.alpha), "dtype": plan.dtype, "tiled": True,
        "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "predictor": 3 if kind == "f" else 2, "bigtiff": "if_safer", "num_threads": "all_cpus",
    }
    if stage_only:
        p["zlevel"] = 1
    if plan.georef:
        p["crs"] = ds.crs
    if plan.keep_transform or plan.georef:
        p["transform"] = ds.transform @ Affine.scale(1 / s)
    if plan.nodata_out is not None:
        p["nodata"] = plan.nodata_out
    for k, v in (extra or {}).items():
        p[k.lower()] = v
    return p


def _write_meta(out: Any, ds: Any, plan: _Plan, engine: Engine) -> None:
    """Band descriptions, colour interpretation and satsr tags."""
    for i, b in enumerate(plan.bands, start=1):
        if ds.descriptions[b - 1]:
            out.set_band_description(i, ds.descriptions[b - 1])
    for i, b in enumerate(plan.alpha, start=len(plan.bands) + 1):
        out.set_band_description(i, ds.descriptions[b - 1] or "alpha")
    try:
        with raster.gdal_tolerated():
            out.colorinterp = [ds.colorinterp[b - 1] for b in plan.bands] + \
                [ColorInterp.alpha] * len(plan.alpha)
    except _REFUSED:
        # GDAL (or rasterio's check of the list) refuses some interpretations for some band
        # layouts: the output then keeps GDAL's default interpretation, which is all an
        # optional setting can cost; any other error propagates
        pass
    if plan.gcps is not None and out.driver == "GTiff":
        out.gcps = plan.gcps
    meta = engine.meta
    tags = {"SATSR_VERSION": __version__, "SATSR_SCALE": str(engine.scale),
            "SATSR_BANDS": ",".join(map(str, plan.bands))}
    if engine.is_model:
        tags.update(SATSR_MODEL=Path(engine.name).name, SATSR_VARIANT=str(meta.get("variant")),
                    SATSR_NOTE=SR_NOTE)
        if "strength" in meta:
            tags["SATSR_STRENGTH"] = f"{float(meta['strength']):g}"
        if "adaptive" in meta:  # per-tile share of the correction (satsr.nn.aliasing)
            tags["SATSR_ADAPTIVE"] = ",".join(f"{float(v):g}" for v in meta["adaptive"])
        tags["SATSR_PRECISION"] = "bf16" if plan.bf16 else "fp32"
    else:
        tags.update(SATSR_METHOD=engine.name,
                    SATSR_NOTE=f"upsampled by {engine.name} interpolation (no added detail)")
    out.update_tags(**tags, **plan.tags)


def check_precision(precision: str, engine: Engine) -> bool:
    """True for bf16 autocast: `precision` is fp32 or bf16; bf16 needs a model and a device
    that runs bfloat16 (CUDA with bf16 support, or the CPU)."""
    if precision not in PRECISIONS:
        raise SatsrError(f"precision takes {' or '.join(PRECISIONS)}, not {precision!r}",
                         option="precision")
    if precision == "fp32":
        return False
    if not engine.is_model:
        raise SatsrError("precision bf16 applies to a model: the classical baselines compute "
                         "in float32", option=("precision", "method"))
    dev = engine.device
    supported = dev.type == "cpu" or (dev.type == "cuda" and torch.cuda.is_bf16_supported())
    if not supported:
        raise SatsrError(f"precision bf16 is not supported on {dev}: use fp32",
                         option="precision")
    return True


def _to_host(t: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """(a host copy of `t` or `t` itself on the CPU, an event to wait on before reading it):
    on CUDA the copy goes to pinned memory without blocking the device's queue."""
    if t.device.type != "cuda":
        return t, None
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    ev = torch.cuda.Event()
    ev.record()
    return host, ev


def _finish(rd: Any, out: Any, plan: _Plan, s: int, row: int, col: int, h: int, w: int,
            vals: np.ndarray, ok: np.ndarray | None = None,
            alpha: np.ndarray | None = None) -> np.ndarray | None:
    """Mask and write one block of output values (the writer thread's work): `vals` (C,
    h*s, w*s) in the raster's dtype for input window (row, col, h, w); `ok` and `alpha` are
    that window's valid mask and alpha bands, read from `rd` when not given. Returns the
    output's valid mask (None: every pixel valid)."""
    c = len(plan.bands)
    lwin = Window(col, row, w, h)
    owin = Window(col * s, row * s, w * s, h * s)
    if ok is None:
        ok = raster.valid_mask(rd, lwin, read_window(rd, plan.bands, lwin), plan.nodata_in)
    okb = None if ok.all() else np.repeat(np.repeat(ok, s, axis=0), s, axis=1)
    if plan.nudge is not None:  # a valid pixel must not read as nodata
        nd, bump = plan.nudge
        hit = vals == nd
        if okb is not None:
            hit &= okb[None]
        vals[hit] = bump
    if okb is not None:
        vals[:, ~okb] = plan.fill
    for b in plan.empty:  # a band with no data at all stays nodata (fill) everywhere
        vals[b] = plan.fill
    out.write(vals, indexes=list(range(1, c + 1)), window=owin)
    if plan.alpha:
        a = alpha if alpha is not None else read_window(rd, plan.alpha, lwin)
        out.write(np.repeat(np.repeat(a, s, axis=1), s, axis=2),
                  indexes=list(range(c + 1, c + 1 + len(plan.alpha))), window=owin)
    if plan.write_mask:
        out.write_mask(np.full((h * s, w * s), 255, np.uint8) if okb is None
                       else np.where(okb, 255, 0).astype(np.uint8), window=owin)
    return okb


def _host_array(item: tuple[torch.Tensor, Any]) -> np.ndarray:
    t, ev = item
    if ev is not None:
        ev.synchronize()
    return t.numpy()


class _Bar:
    """The one progress bar of an upscale: `total` steps (tiles or windows) and the output
    MPix/s so far."""

    def __init__(self, prog: Any, name: str, total: int, out_mpix: float, t0: float) -> None:
        self.prog, self.total, self.out_mpix, self.t0 = prog, total, out_mpix, t0
        self.done = 0
        self.task = None
        if prog is not None:
            prog.start()
            self.task = prog.add_task(name, total=total, rate="")

    def advance(self, n: int) -> None:
        self.done += n
        if self.prog is not None:
            mpix = self.done / max(self.total, 1) * self.out_mpix
            rate = f"{mpix / max(time.perf_counter() - self.t0, 1e-9):.2f} MPix/s"
            self.prog.update(self.task, advance=n, rate=rate)

    def stop(self) -> None:
        if self.prog is not None:
            self.prog.stop()


def _stream(ds: Any, src: Path, out: Any, plan: _Plan, engine: Engine, tile: int,
            overlap: int, batch_size: int, prog: Any, n_tiles: int, t0: float) -> None:
    """A model: read, fill, run and write the whole raster, window by window.

    Three stages overlap (satsr.inference.pipeline): a reader thread reads, masks and scales
    the next batches' windows (`ds`); the caller's thread runs the model, blends on the
    device and maps the finished blocks back to the raster's dtype there (one transfer of
    that dtype to the host); a writer thread masks and writes them (its own handle on `src`
    for the masks and alpha bands: a GDAL handle is not shared between threads)."""
    from satsr.inference.pipeline import Sink

    s = engine.scale
    clip = not engine.unclipped

    def read(r: int, col: int, h: int, w: int) -> np.ndarray:  # the reader thread
        win = Window(col, r, w, h)
        data = read_window(ds, plan.bands, win)
        ok = raster.valid_mask(ds, win, data, plan.nodata_in)
        _refuse_inf(data, ok, plan.bands, r, col)
        if ok.any():  # the input's value range, for the constant-output check below
            _widen(seen, "in", data[:, ok])
        return fill_invalid(plan.scaling.to_unit(data, clip=clip), ok)

    rd = open_raster(src)
    seen = {"in": (math.inf, -math.inf), "out": (math.inf, -math.inf)}

    def write(item: tuple[int, int, tuple[torch.Tensor, Any]]) -> None:  # the writer thread
        r, col, host = item
        vals = _host_array(host)
        okb = _finish(rd, out, plan, s, r // s, col // s, vals.shape[1] // s,
                      vals.shape[2] // s, vals)
        valid = vals if okb is None else vals[:, okb]
        if valid.size:
            _widen(seen, "out", valid)

    sink: Sink[tuple[int, int, tuple[torch.Tensor, Any]]] = Sink(write, depth=2)

    def emit(r: int, col: int, block: torch.Tensor) -> None:
        sink.put((r, col, _to_host(plan.scaling.from_unit_torch(block, clip=clip))))

    bar = _Bar(prog, str(Path(ds.name).name), n_tiles, ds.width * ds.height * s * s / 1e6, t0)
    ok = False
    try:
        run_tiled(engine, ds.height, ds.width, read, emit, tile=tile, overlap=overlap,
                  batch_size=batch_size, bf16=plan.bf16, on_batch=bar.advance, prefetch=2)
        sink.close()
        ok = True
    finally:
        if not ok:
            sink.abandon()
        bar.stop()
        rd.close()
        if getattr(engine.generator, "fixed_share", None) is not None:
            engine.generator.fixed_share = None  # a raster's share ends with it
    (in_lo, in_hi), (out_lo, out_hi) = seen["in"], seen["out"]
    if engine.is_model and in_hi > in_lo and out_hi == out_lo:
        raise SatsrError(f"the model made every output pixel {out_lo:g} from an input that "
                         f"is not constant ({in_lo:g} to {in_hi:g}): {engine.name} is damaged "
                         f"or unfit for this raster; nothing was written")


def _widen(seen: dict[str, tuple[float, float]], key: str, values: np.ndarray) -> None:
    """Widen seen[key], the (min, max) of the values met so far (NaN ignored)."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    seen[key] = (min(seen[key][0], lo), max(seen[key][1], hi))


#: Input columns per window of the classical baselines (output blocks stay whole).
WINDOW_COLS = 2048


def _stream_windows(ds: Any, out: Any, plan: _Plan, engine: Engine, prog: Any,
                    t0: float) -> int:
    """A classical baseline (bicubic, nearest): upsample window by window, no tiles to blend.

    Each window is one row of output blocks (BLOCK / scale input rows) by WINDOW_COLS input
    columns, read with HALO pixels of context that the output then drops, so it equals the
    whole image's upsampling (satsr.inference.resample), which is what the blended tiles of
    `run_tiled` computed, up to float rounding. Values are clamped to the band scaling's
    range and cast on the engine's device, in float32 (float64 for wide dtypes), as
    `BandScaling.from_unit` does. Reading, computing and writing overlap (a reader and a
    writer thread). Returns the number of windows."""
    from satsr.inference.pipeline import Prefetch, Sink
    from satsr.inference.resample import HALO

    s = engine.scale
    halo = HALO[engine.name]
    height, width = ds.height, ds.width
    rows = max(1, BLOCK // s)
    cols = max(rows, WINDOW_COLS // rows * rows)
    wins = [(r, col, min(rows, height - r), min(cols, width - col))
            for r in range(0, height, rows) for col in range(0, width, cols)]
    dev = engine.device
    upsample = _WindowUpsampler(engine, plan)

    Read = tuple[tuple[int, int, int, int], tuple[int, int], np.ndarray, np.ndarray,
                 np.ndarray | None]

    def read(win: tuple[int, int, int, int]) -> Read:  # the reader thread
        r, col, h, w = win
        r0, r1 = max(0, r - halo), min(height, r + h + halo)
        c0, c1 = max(0, col - halo), min(width, col + w + halo)
        rwin = Window(c0, r0, c1 - c0, r1 - r0)
        data = read_window(ds, plan.bands, rwin)
        ok = raster.valid_mask(ds, rwin, data, plan.nodata_in)
        _refuse_inf(data, ok, plan.bands, r0, c0)
        if not ok.all():
            data = fill_invalid(data, ok)
        core = ok[r - r0:r - r0 + h, col - c0:col - c0 + w]
        alpha = read_window(ds, plan.alpha, Window(col, r, w, h)) if plan.alpha else None
        return win, (r - r0, col - c0), data, core, alpha

    def write(item: tuple[tuple[int, int, int, int], tuple[torch.Tensor, Any], np.ndarray,
                          np.ndarray | None]) -> None:  # the writer thread
        (r, col, h, w), host, ok, alpha = item
        _finish(None, out, plan, s, r, col, h, w, _host_array(host), ok, alpha)

    bar = _Bar(prog, str(Path(ds.name).name), len(wins), width * height * s * s / 1e6, t0)
    sink: Sink[Any] = Sink(write, depth=2)
    reader: Prefetch[Read] = Prefetch(read, wins, depth=2)
    done = False
    threads = torch.get_num_threads()
    if dev.type == "cpu":  # GDAL's compression threads need the other cores
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) // 4)))
    try:
        with torch.inference_mode():
            for win, (oy, ox), data, ok, alpha in reader:
                _r, _c, h, w = win
                vals = upsample(torch.from_numpy(data).to(dev), oy, ox, h, w)
                sink.put((win, _to_host(vals), ok, alpha))
                bar.advance(1)
        sink.close()
        done = True
    finally:
        torch.set_num_threads(threads)
        reader.close()
        if not done:
            sink.abandon()
        bar.stop()
    return len(wins)


class _WindowUpsampler:
    """A classical baseline's upsampling of one window (see _stream_windows), values
    clamped to the band scaling's range and cast to the raster's dtype on the device."""

    def __init__(self, engine: Engine, plan: _Plan) -> None:
        from satsr.data.scaling import torch_dtype

        self.s, self.method, dev = engine.scale, engine.name, engine.device
        self.dt = dt = np.dtype(plan.dtype)
        self.work = torch.float64 if dt.itemsize >= 4 and dt != np.float32 else torch.float32
        lo_np, hi_np = np.asarray(plan.scaling.lo), np.asarray(plan.scaling.hi)
        self.lo = torch.tensor(lo_np, dtype=self.work, device=dev).reshape(-1, 1, 1)
        self.hi = torch.tensor(hi_np, dtype=self.work, device=dev).reshape(-1, 1, 1)
        self.bounds = (float(lo_np.min()), float(hi_np.max()))
        self.half = (torch_dtype(dt) if dt.kind == "u" and self.bounds[0] >= 0
                     and self.bounds[1] <= np.iinfo(dt).max else None)

    def __call__(self, x: torch.Tensor, oy: int, ox: int, h: int, w: int) -> torch.Tensor:
        """The (C, h*s, w*s) output of the core (oy, ox, h, w) of input window `x`."""
        from satsr.data.scaling import cast_torch
        from satsr.inference.resample import clamp_bands, upsample_window

        s, method, work, lo, hi = self.s, self.method, self.work, self.lo, self.hi
        if method == "bicubic" and self.half is not None:
            # unsigned: the weights sum to 1, so +0.5 on the input is +0.5 on the
            # output, and the cast's truncation then rounds (half up: 1 DN at most
            # from np.rint's half to even, at exact halves only); one pass fewer
            half = self.half
            return upsample_window(x.to(work) + 0.5, s, method, oy, ox, h, w,
                                   lambda y: clamp_bands(y, lo + 0.5, hi + 0.5).to(half))
        if method == "bicubic":
            return upsample_window(x.to(work), s, method, oy, ox, h, w,
                                   lambda y: cast_torch(clamp_bands(y, lo, hi), self.dt,
                                                        self.bounds))
        return upsample_window(x, s, method, oy, ox, h, w).contiguous()


def _refuse_inf(data: np.ndarray, ok: np.ndarray, bands: Sequence[int], row: int,
                col: int) -> None:
    """Raise NonFiniteError if a valid pixel is +-inf (NaN is missing data, masked; inf is not).

    Every engine refuses it alike: a clipping band scaling would otherwise turn inf into the
    band's bright end and an unclipped one into a non-finite tile.
    """
    if data.dtype.kind != "f":
        return
    bad = np.isinf(data) & ok[None]
    if bad.any():
        b, y, x = (int(v[0]) for v in np.nonzero(bad))
        raise NonFiniteError(f"band {bands[b]} holds a non-finite value ({data[b, y, x]}) at "
                             f"row {row + y}, column {col + x}, a pixel that is not nodata "
                             f"(set it to the nodata value or mask it)")


def _convert(stage: Path, target: Path, driver: str, cog: bool,
             creation_options: dict[str, str] | None, dtype: str) -> None:
    """Copy the staging GeoTIFF into the final format (COG with overviews, PNG or JPEG)."""
    driver, co = _convert_options(driver, cog, creation_options, dtype)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        rasterio.shutil.copy(stage, target, driver=driver, **co)


def _convert_options(driver: str, cog: bool, creation_options: dict[str, str] | None,
                     dtype: str) -> tuple[str, dict[str, Any]]:
    """The driver and creation options of the final copy (see _convert)."""
    co: dict[str, Any]
    if cog:
        kind = np.dtype(dtype).kind
        co = {"compress": "deflate", "predictor": "floating_point" if kind == "f" else "yes",
              "blocksize": BLOCK, "overviews": "auto", "overview_resampling": "average",
              "bigtiff": "if_safer", "num_threads": "all_cpus"}
        driver = "COG"
    elif driver == "PNG":
        co = {"write_metadata_as_text": "yes"}
    else:
        co = {"quality": 95}
    for k, v in (creation_options or {}).items():
        co[k.lower()] = v
    return driver, co
