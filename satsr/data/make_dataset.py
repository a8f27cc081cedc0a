"""`make_dataset`: random chips from GeoTIFFs of any size, with spatially disjoint splits.

The flow: open and check every source; cut each into blocks (satsr.data.sampling); count the
usable chip positions of each block (nodata, AOI), streaming block by block; assign whole
blocks to train / val / test; share `count` over the splits by their fractions and, inside a
split, over its blocks by usable area; draw distinct random positions per block from a seeded
generator; then read each chip's window, write it as a GeoTIFF with the window's transform,
and accumulate per-band histograms of the training chips for the index statistics.

Memory is bounded by the block size, the GDAL cache (satsr.data.raster.gdal_env) and the list of
chips, never by the raster's size. The same arguments and seed give byte-identical chips and
index (no timestamps are written anywhere).
"""

from __future__ import annotations

import contextlib
import json
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
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform
from rasterio.windows import Window
from shapely.geometry import Polygon, box
from shapely.geometry.polygon import orient

from satsr.data.index import INDEX_NAME, SPLITS
from satsr.data.raster import (
    atomic_dir,
    atomic_path,
    check_creation_options,
    check_output,
    gdal_env,
    ground_resolution,
    open_raster,
    read_window,
    select_one_dtype,
    valid_mask,
)
from satsr.data.sampling import (
    Block,
    Scanner,
    allocate,
    allocate_capped,
    aoi_in_pixels,
    assign_splits,
    block_grid,
    choose_block,
    max_feasible,
    parse_split,
    read_aoi,
    sample_block,
)
from satsr.data.scaling import BandScaling
from satsr.data.splitfile import SourceSplit, SplitFile
from satsr.errors import SatsrError, SatsrWarning
from satsr.progress import progress_bar
from satsr.validation import check_nodata, check_seed

#: Version of the index layout written here (see satsr.data.index).
INDEX_FORMAT = 1
#: Bins of the fine histogram used for float statistics (range from a pilot pass).
FLOAT_BINS = 1 << 16
#: GDAL block cache while cutting: chips are read block by block, row by row, so a small
#: cache holds every source tile a chip shares with the next ones; keeps peak RSS flat.
CUT_CACHEMAX = 16 * 1024 * 1024
#: Training chips read by the pilot pass that fixes the float histogram range.
PILOT_CHIPS = 32


@dataclass
class Summary:
    """What `make_dataset` did: where, how many chips per split and per source."""

    out: Path
    size: int
    dtype: str
    bands: list[int]
    counts: dict[str, int]
    blocks: dict[str, int]
    area: dict[str, float]  # share of the usable area per split
    per_source: dict[str, dict[str, int]]
    block_side: int
    seconds: float
    stats: list[dict[str, float]] = field(default_factory=list)


@dataclass
class _Source:
    """An open source and what the run needs to know about it."""

    path: str
    ds: rasterio.io.DatasetReader
    bands: list[int]
    dtype: str
    georef: bool
    gsd: tuple[float, float]
    chip_nodata: float | None
    mask_needs_band: bool  # invalid pixels come from alpha / internal mask: write a chip mask
    scanner: Scanner | None = None


@dataclass
class _Chip:
    split: str
    source: int
    col: int
    row: int
    invalid: int
    rel: str = ""


# ----------------------------------------------------------------------------- statistics

class BandHistograms:
    """Per-band histograms of valid pixels, giving min, max, mean, std and percentiles.

    Integer dtypes up to 16 bits use one exact bin per value (256 or 65536 bins). Other
    dtypes use FLOAT_BINS equal bins over a range fixed beforehand (a pilot pass over a few
    training chips); values outside it fall in the end bins, min / max / mean / std stay exact
    and percentiles are bin centres clipped to [min, max].
    """

    def __init__(self, dtype: str, bands: int, value_range: tuple[float, float] | None = None):
        self.dtype = np.dtype(dtype)
        self.exact = self.dtype.kind in "ui" and self.dtype.itemsize <= 2
        if self.exact:
            info = np.iinfo(self.dtype)
            self.offset, self.nbins = int(info.min), 1 << (8 * self.dtype.itemsize)
            self.lo, self.width = 0.0, 1.0
        else:
            lo, hi = value_range or (0.0, 1.0)
            if not hi > lo:
                hi = lo + 1.0
            self.offset, self.nbins, self.lo = 0, FLOAT_BINS, float(lo)
            self.width = (float(hi) - float(lo)) / FLOAT_BINS
        self.hist = np.zeros((bands, self.nbins), np.int64)
        self.sum = np.zeros(bands)
        self.sumsq = np.zeros(bands)
        self.min = np.full(bands, np.inf)
        self.max = np.full(bands, -np.inf)

    def add(self, data: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Count the pixels of a (bands, H, W) chip (only where `valid`, if given)."""
        for b in range(data.shape[0]):
            v = data[b] if valid is None else data[b][valid]
            v = v.ravel()
            if v.size == 0:
                continue
            if self.exact:
                key = v.astype(np.int64) - self.offset if self.offset else v
                self.hist[b] += np.bincount(key, minlength=self.nbins)
            else:
                x = v.astype(np.float64)
                x = x[np.isfinite(x)]
                if x.size == 0:
                    continue
                idx = np.clip(((x - self.lo) / self.width).astype(np.int64), 0, self.nbins - 1)
                self.hist[b] += np.bincount(idx, minlength=self.nbins)
                self.sum[b] += x.sum()
                self.sumsq[b] += np.square(x).sum()
                self.min[b] = min(self.min[b], x.min())
                self.max[b] = max(self.max[b], x.max())

    def stats(self, bands: Sequence[int]) -> list[dict[str, float]]:
        """One dict per band: band, count, min, max, mean, std, p0.1, p99.9."""
        out = []
        centres = (np.arange(self.nbins, dtype=np.float64) + self.offset if self.exact
                   else self.lo + (np.arange(self.nbins) + 0.5) * self.width)
        for b, band in enumerate(bands):
            h = self.hist[b]
            n = int(h.sum())
            if n == 0:
                raise SatsrError(f"band {band} has no valid pixel in the training chips")
            if self.exact:
                nz = np.flatnonzero(h)
                lo, hi = float(centres[nz[0]]), float(centres[nz[-1]])
                mean = float((h * centres).sum() / n)
                var = float((h * np.square(centres - mean)).sum() / n)
            else:
                lo, hi = float(self.min[b]), float(self.max[b])
                mean = float(self.sum[b] / n)
                var = max(0.0, float(self.sumsq[b] / n - mean * mean))
            cdf = np.cumsum(h)
            pct = {}
            for q, key in ((0.1, "p0.1"), (99.9, "p99.9")):
                k = int(np.searchsorted(cdf, max(1.0, n * q / 100), side="left"))
                pct[key] = float(np.clip(centres[min(k, self.nbins - 1)], lo, hi))
            out.append({"band": int(band), "count": n, "min": lo, "max": hi, "mean": mean,
                        "std": math.sqrt(var), **pct})
        return out


# -------------------------------------------------------------------------------- helpers

def _creation_options(dtype: str, extra: dict[str, str] | None) -> dict[str, Any]:
    """Deterministic GeoTIFF creation options for chips (DEFLATE, predictor by dtype)."""
    kind = np.dtype(dtype).kind
    co: dict[str, Any] = {"compress": "deflate", "predictor": 3 if kind == "f" else 2}
    for k, v in (extra or {}).items():
        co[k.lower()] = v
    return co


def _open_source(path: str | Path, size: int, bands: list[int] | None,
                 nodata: float | None) -> _Source:
    """Open one source and check it against the run's arguments."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        ds = open_raster(path)
    try:
        if ds.width < size or ds.height < size:
            raise SatsrError(f"{path} is {ds.width}x{ds.height} px, smaller than size {size}",
                             option="size")
        sel, dtype = select_one_dtype(ds, bands, path, "learn")
        check_nodata(nodata, dtype)
        georef = ds.crs is not None
        if not georef:
            warnings.warn(f"{path} has no CRS: its chips carry none and its footprints are in "
                          "pixel coordinates", SatsrWarning,
                          stacklevel=4)  # make_dataset's caller
        declared = ds.nodatavals[sel[0] - 1]
        chip_nodata = declared if declared is not None else nodata
        if chip_nodata is None and np.dtype(dtype).kind == "f":
            chip_nodata = float("nan")
        flags = [ds.mask_flag_enums[b - 1] for b in range(1, ds.count + 1)]
        mask_needs_band = any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags) \
            and declared is None
        return _Source(str(path), ds, sel, dtype, georef, ground_resolution(ds), chip_nodata,
                       mask_needs_band)
    except Exception:  # any failure of the checks: close the source, then re-raise it as is
        ds.close()
        raise


def _all_valid(src: _Source, nodata: float | None) -> bool:
    """Whether every pixel of the source is valid without looking at it."""
    ds = src.ds
    if nodata is not None or np.dtype(src.dtype).kind == "f":
        return False
    return all(MaskFlags.all_valid in ds.mask_flag_enums[b - 1] for b in range(1, ds.count + 1))


def _footprints(src: _Source, chips: Sequence[_Chip], size: int) -> list[dict[str, Any]]:
    """GeoJSON geometries of chip footprints: EPSG:4326, or pixel coords without CRS.

    All corners are reprojected in one `rasterio.warp.transform` call (one PROJ transformer
    for the whole source; per-geometry transforms are orders of magnitude slower).
    """
    if not chips:
        return []
    cols = np.array([c.col for c in chips], np.float64)[:, None]
    rows = np.array([c.row for c in chips], np.float64)[:, None]
    # counter-clockwise in a north-up map (RFC 7946): UL, LL, LR, UR, UL
    px = cols + np.array([0, 0, size, size, 0], np.float64)
    py = rows + np.array([0, size, size, 0, 0], np.float64)
    if src.georef:
        t = src.ds.transform
        x, y = t.a * px + t.b * py + t.c, t.d * px + t.e * py + t.f
        lon, lat = transform(src.ds.crs, "EPSG:4326", x.ravel().tolist(), y.ravel().tolist())
        px, py = np.asarray(lon).reshape(px.shape), np.asarray(lat).reshape(py.shape)
    out = []
    for xs, ys in zip(px, py, strict=True):
        poly = orient(Polygon(zip(xs.tolist(), ys.tolist(), strict=True)), 1.0)
        out.append({"type": "Polygon",
                    "coordinates": [[list(xy) for xy in poly.exterior.coords]]})
    return out


# ---------------------------------------------------------------------------------- main

@dataclass
class _Job:
    """The checked arguments of one `make_dataset` run that its steps share."""

    size: int
    count: int
    seed: int
    fractions: tuple[float, float, float]
    max_nodata: float
    nodata: float | None
    aoi: str | Path | None
    aoi_geom: Any
    plan: SplitFile | None

    @property
    def max_invalid(self) -> int:
        """Invalid pixels a chip may hold (max_nodata of its size x size pixels)."""
        return int(math.floor(self.max_nodata * self.size * self.size + 1e-9))


def make_dataset(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    size: int = 256,
    count: int = 1000,
    seed: int = 0,
    split: str | Sequence[float] = (0.8, 0.1, 0.1),
    aoi: str | Path | None = None,
    max_nodata: float = 0.0,
    nodata: float | None = None,
    bands: Sequence[int] | None = None,
    block: int | None = None,
    creation_options: dict[str, str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    split_file: str | Path | SplitFile | None = None,
    write_split: str | Path | None = None,
) -> Summary:
    """Cut `count` random `size`-px chips from `sources` into `out` (chips + index.geojson).

    With `split_file` (see satsr.data.splitfile) the blocks and their splits come from that file
    instead of being drawn from `seed`; `split` then only shares `count` between the splits.
    `write_split` saves the blocks and splits this run used as such a file.
    """
    t0 = time.perf_counter()
    _check_numbers(sources, size, count, seed, max_nodata, block)
    plan = (split_file if isinstance(split_file, SplitFile) or split_file is None
            else SplitFile.read(split_file))
    if plan is not None and block is not None:
        raise SatsrError("a split file fixes the blocks: give either a block side or a split "
                         "file, not both")
    fractions = parse_split(split)
    out = Path(out)
    _check_outputs(out, overwrite, write_split,
                   [*sources, aoi, split_file if not isinstance(split_file, SplitFile) else None])
    band_list = list(bands) if bands is not None else None
    job = _Job(size, count, seed, fractions, max_nodata, nodata, aoi,
               read_aoi(aoi) if aoi is not None else None, plan)

    with gdal_env(), rasterio.Env(GDAL_CACHEMAX=CUT_CACHEMAX), contextlib.ExitStack() as stack, \
            progress_bar(progress) as bar:
        srcs = _open_sources(sources, size, band_list, nodata, stack)
        first = srcs[0]
        dtype = first.dtype
        if creation_options:  # refused before any work, not ignored
            check_creation_options({"driver": "GTiff", "count": len(first.bands),
                                    "dtype": dtype, **_creation_options(dtype,
                                                                        creation_options)})
        side = (plan.block if plan is not None else
                block or choose_block([(s.ds.width, s.ds.height) for s in srcs], size))
        blocks = _blocks(job, srcs, side)
        _scan(blocks, srcs, size, bar)
        usable = _usable(job, blocks)
        if write_split is not None:
            _save_split(job, srcs, blocks, side, write_split)
        per_split, chips = _draw_chips(job, srcs, blocks, usable)

        stat_split = "train" if per_split[0] > 0 else None  # the chips the statistics see
        hist = _histograms(srcs, chips, stat_split, size, nodata)
        co = _creation_options(dtype, creation_options)
        args = _run_args(job, sources, band_list, side, co)
        with atomic_dir(out, overwrite, "make-dataset") as tmp:
            _make_folders(tmp)
            task = bar.add_task("cutting chips", total=len(chips))
            for c in chips:
                _write_chip(srcs[c.source], c, size, tmp, co, nodata,
                            hist if (stat_split is None or c.split == stat_split) else None)
                bar.advance(task)
            stats = hist.stats(first.bands)
            meta, features = _index(srcs, chips, size, dtype, first.bands, stats, per_split,
                                    stat_split, seed, args)
            _write_index(tmp / INDEX_NAME, meta, features)
    seconds = time.perf_counter() - t0
    return _summary(out, size, srcs, usable, chips, per_split, side, seconds, stats)


def _run_args(job: _Job, sources: Sequence[str | Path], bands: list[int] | None, side: int,
              co: dict[str, Any]) -> dict[str, Any]:
    """The run's arguments as the index records them."""
    plan = job.plan
    return {"sources": [str(s) for s in sources], "size": job.size, "count": job.count,
            "seed": job.seed, "split": list(job.fractions),
            "aoi": str(job.aoi) if job.aoi else None, "max_nodata": job.max_nodata,
            "nodata": job.nodata, "bands": bands, "block": side,
            "split_file": None if plan is None else {
                "path": str(plan.path) if plan.path else None, "sha256": plan.digest()},
            "creation_options": {k: str(v) for k, v in co.items()}}


def _histograms(srcs: Sequence[_Source], chips: Sequence[_Chip], stat_split: str | None,
                size: int, nodata: float | None) -> BandHistograms:
    """Empty histograms for the statistics; for non-integer data their range comes from a
    pilot pass over a few of the chips of `stat_split` (None: every chip)."""
    first = srcs[0]
    stat_chips = [c for c in chips if stat_split is None or c.split == stat_split]
    value_range = None
    hist_probe = BandHistograms(first.dtype, len(first.bands))
    if not hist_probe.exact:
        value_range = _pilot_range(srcs, stat_chips, size, nodata)
    return BandHistograms(first.dtype, len(first.bands), value_range)


def _summary(out: Path, size: int, srcs: Sequence[_Source], usable: Sequence[Block],
             chips: Sequence[_Chip], per_split: list[int], side: int, seconds: float,
             stats: list[dict[str, float]]) -> Summary:
    """What the run did, per split and per source."""
    first = srcs[0]
    total_area = float(sum(b.area for b in usable))
    area = [sum(b.area for b in usable if b.split == sp) for sp in SPLITS]
    return Summary(
        out=out, size=size, dtype=first.dtype, bands=first.bands,
        counts=dict(zip(SPLITS, per_split, strict=True)),
        blocks={sp: sum(1 for b in usable if b.split == sp) for sp in SPLITS},
        area={sp: area[i] / total_area for i, sp in enumerate(SPLITS)},
        per_source={s.path: {sp: sum(1 for c in chips if c.source == i and c.split == sp)
                             for sp in SPLITS} for i, s in enumerate(srcs)},
        block_side=side, seconds=seconds, stats=stats)


def _check_numbers(sources: Sequence[str | Path], size: int, count: int, seed: int,
                   max_nodata: float, block: int | None) -> None:
    """Refuse impossible sources, sizes, counts, seeds, nodata fractions and block sides."""
    if not sources:
        raise SatsrError("give at least one source raster")
    if len({str(s) for s in sources}) != len(sources):
        raise SatsrError("a source is listed twice")
    if size < 8:
        raise SatsrError(f"size must be at least 8 px, not {size}", option="size")
    if count < 1:
        raise SatsrError(f"count must be at least 1, not {count}", option="count")
    check_seed(seed)
    if not 0.0 <= max_nodata <= 1.0:
        raise SatsrError(f"max_nodata is a fraction from 0 to 1, not {max_nodata}",
                         option="max_nodata")
    if block is not None and block < size:
        raise SatsrError(f"block ({block}) must be at least size ({size})",
                         option=("block", "size"))


def _check_outputs(out: Path, overwrite: bool, write_split: str | Path | None,
                   given: list[Any]) -> None:
    """The output folder and the split file to write: never onto an input, the split file
    never into the folder (all before any work)."""
    check_output(out, overwrite, folder=True, inputs=given, make_parents=True)
    if write_split is not None:
        check_output(write_split, overwrite, inputs=given, option="write_split")
        if Path(write_split).absolute().parent == out.absolute() or \
                out.absolute() in Path(write_split).absolute().parents:
            raise SatsrError(f"write_split {write_split} lies inside the output folder {out}, "
                             f"which this run replaces: save it beside it",
                             option=("write_split", "out"))


def _open_sources(sources: Sequence[str | Path], size: int, bands: list[int] | None,
                  nodata: float | None, stack: contextlib.ExitStack) -> list[_Source]:
    """Open every source (closed by `stack`); they must give the same bands and dtype."""
    srcs: list[_Source] = []
    for p in sources:
        s = _open_source(p, size, bands, nodata)
        stack.callback(s.ds.close)
        srcs.append(s)
    first = srcs[0]
    for s in srcs[1:]:
        if len(s.bands) != len(first.bands) or s.dtype != first.dtype:
            raise SatsrError(f"sources differ: {first.path} gives {len(first.bands)} "
                             f"{first.dtype} bands, {s.path} gives {len(s.bands)} {s.dtype}")
    return srcs


def _blocks(job: _Job, srcs: Sequence[_Source], side: int) -> list[Block]:
    """Every source's blocks (the split file's, or a grid of `side`); the usable positions of
    blocks that need no look at the pixels, and a Scanner on the sources that do."""
    blocks: list[Block] = []
    hits = 0
    dtype = srcs[0].dtype
    for i, s in enumerate(srcs):
        aoi_px = None
        if job.aoi_geom is not None:
            if not s.georef:
                raise SatsrError(f"aoi needs georeferenced sources; {s.path} has no CRS",
                                 option="aoi")
            aoi_px = aoi_in_pixels(job.aoi_geom[0], job.aoi_geom[1], s.ds)
            bounds = box(0, 0, s.ds.width, s.ds.height)
            if not aoi_px.intersects(bounds):
                warnings.warn(f"the AOI misses {s.path}", SatsrWarning, stacklevel=3)
                continue
            hits += 1
        grid = (job.plan.blocks_for(i, job.plan.source_for(s.path, s.ds))
                if job.plan is not None else block_grid(i, s.ds.width, s.ds.height, side))
        if aoi_px is None and _all_valid(s, job.nodata):
            for b in grid:
                b.set_usable(b.positions(job.size), job.size)
        else:
            s.scanner = Scanner(s.ds, s.bands, job.size, job.max_invalid, job.nodata,
                                read_data=job.nodata is not None or np.dtype(dtype).kind == "f",
                                aoi_px=aoi_px)
        blocks.extend(grid)
    if job.aoi_geom is not None and hits == 0:
        raise SatsrError(f"the AOI {job.aoi} does not overlap any source raster")
    return blocks


def _scan(blocks: Sequence[Block], srcs: Sequence[_Source], size: int, bar: Any) -> None:
    """Count the usable positions of the blocks of scanned sources, block by block."""
    to_scan = [b for b in blocks if srcs[b.source].scanner is not None]
    if not to_scan:
        return
    task = bar.add_task("scanning masks", total=len(to_scan))
    for b in to_scan:
        scanner = srcs[b.source].scanner
        assert scanner is not None  # to_scan holds only blocks of scanned sources
        ok, invalid = scanner.usable(b)
        b.set_usable(int(ok.sum()), size)
        b.scanned = not (b.usable == ok.size and int(invalid.max(initial=0)) == 0)
        bar.advance(task)


def _usable(job: _Job, blocks: Sequence[Block]) -> list[Block]:
    """The blocks holding a usable position, each assigned to a split."""
    usable = [b for b in blocks if b.usable > 0]
    if not usable:
        raise SatsrError(f"no {job.size}x{job.size} chip can be cut: every position breaks "
                         f"max_nodata {job.max_nodata:g}" + (" or the AOI" if job.aoi else ""),
                         option="max_nodata")
    if job.plan is None:
        assign_splits(usable, job.fractions, np.random.default_rng([job.seed, 1]))
    return usable


def _save_split(job: _Job, srcs: Sequence[_Source], blocks: Sequence[Block], side: int,
                write_split: str | Path) -> None:
    """Write the blocks and splits this run used as a split file (satsr.data.splitfile)."""
    used = job.plan or SplitFile(side, job.fractions, job.seed, [
        SourceSplit(Path(s.path).name, s.ds.width, s.ds.height,
                    s.ds.crs.to_string() if s.georef else None,
                    tuple(s.ds.transform)[:6],
                    [(b.col, b.row, b.width, b.height, b.split or "train")
                     for b in blocks if b.source == i])
        for i, s in enumerate(srcs)])
    with atomic_path(Path(write_split)) as tmp_split:
        used.write(tmp_split)


def _draw_chips(job: _Job, srcs: Sequence[_Source], blocks: Sequence[Block],
                usable: Sequence[Block]) -> tuple[list[int], list[_Chip]]:
    """(chips per split, the chips): `count` shared over the splits by their fractions and,
    inside a split, over its blocks by usable area; distinct seeded positions per block."""
    count, fractions, seed, size = job.count, job.fractions, job.seed, job.size
    per_split = allocate(count, fractions)
    capacity = [sum(b.usable for b in usable if b.split == sp) for sp in SPLITS]
    if any(n > c for n, c in zip(per_split, capacity, strict=True)):
        most = max_feasible(count, fractions, capacity)
        short = ", ".join(f"{sp} holds {c}" for sp, c, f in zip(SPLITS, capacity, fractions,
                                                                 strict=True) if f > 0)
        raise SatsrError(f"count {count} cannot be met with split "
                         f"{','.join(f'{f:g}' for f in fractions)} and max_nodata "
                         f"{job.max_nodata:g} ({short} distinct positions): at most {most} "
                         f"chips could be cut (a smaller size or block, or a larger "
                         f"max_nodata, gives more)",
                         option=("count", "split", "max_nodata", "size", "block"))
    uid = {id(b): k for k, b in enumerate(blocks)}
    chips: list[_Chip] = []
    for si, sp in enumerate(SPLITS):
        members = [b for b in usable if b.split == sp]
        shares = allocate_capped(per_split[si], [b.area for b in members],
                                 [b.usable for b in members],
                                 np.random.default_rng([seed, 3, si]))
        for b, n in zip(members, shares, strict=True):
            rng = np.random.default_rng([seed, 2, uid[id(b)]])
            for col, row, inv in sorted(sample_block(b, n, size, rng, srcs[b.source].scanner),
                                        key=lambda p: (p[1], p[0])):
                chips.append(_Chip(sp, b.source, col, row, inv))
    digits = max(6, len(str(len(chips) - 1)))
    for i, c in enumerate(chips):
        c.rel = f"chips/{c.split}/{i:0{digits}d}.tif"
    return per_split, chips


def _make_folders(tmp: Path) -> None:
    """The chip folders of every split, in a staging folder given a folder's usual mode."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; give it a folder's usual mode
    for sp in SPLITS:
        (tmp / "chips" / sp).mkdir(parents=True)


def _pilot_range(srcs: Sequence[_Source], chips: Sequence[_Chip], size: int,
                 nodata: float | None) -> tuple[float, float]:
    """Min and max over up to PILOT_CHIPS evenly spread chips: the float histogram range."""
    if not chips:
        return (0.0, 1.0)
    step = max(1, len(chips) // PILOT_CHIPS)
    lo, hi = np.inf, -np.inf
    for c in chips[::step][:PILOT_CHIPS]:
        s = srcs[c.source]
        win = Window(c.col, c.row, size, size)
        data = read_window(s.ds, s.bands, win, s.path)
        ok = valid_mask(s.ds, win, data, nodata)
        v = data[:, ok].astype(np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            lo, hi = min(lo, v.min()), max(hi, v.max())
    return (float(lo), float(hi)) if np.isfinite(lo) else (0.0, 1.0)


def _write_chip(src: _Source, c: _Chip, size: int, root: Path, co: dict[str, Any],
                nodata: float | None, hist: BandHistograms | None) -> None:
    """Read one chip window and write it as a GeoTIFF carrying the window's georeferencing."""
    win = Window(c.col, c.row, size, size)
    data = read_window(src.ds, src.bands, win, src.path)
    valid = valid_mask(src.ds, win, data, nodata) if c.invalid else None
    profile: dict[str, Any] = {"driver": "GTiff", "width": size, "height": size,
                               "count": len(src.bands), "dtype": src.dtype,
                               "nodata": src.chip_nodata, **co}
    if src.georef:
        profile["crs"] = src.ds.crs
        t = src.ds.transform
        profile["transform"] = Affine(t.a, t.b, t.c + t.a * c.col + t.b * c.row,
                                      t.d, t.e, t.f + t.d * c.col + t.e * c.row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(root / c.rel, "w", **profile) as dst:
            dst.write(data)
            if valid is not None and src.mask_needs_band:
                dst.write_mask(valid)
    if hist is not None:
        hist.add(data, valid)


def _index(srcs: Sequence[_Source], chips: Sequence[_Chip], size: int, dtype: str,
           bands: list[int], stats: list[dict[str, float]], per_split: list[int],
           stat_split: str | None, seed: int, args: dict[str, Any],
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The index's `satsr` member and its features (see satsr.data.index for the format)."""
    features: list[dict[str, Any]] = [{}] * len(chips)
    for i, s in enumerate(srcs):
        idx = [k for k, c in enumerate(chips) if c.source == i]
        geoms = _footprints(s, [chips[k] for k in idx], size)
        crs = s.ds.crs.to_string() if s.georef else None
        for k, g in zip(idx, geoms, strict=True):
            c = chips[k]
            features[k] = {"type": "Feature", "geometry": g, "properties": {
                "path": c.rel, "split": c.split, "source": s.path, "crs": crs,
                "window": [c.col, c.row, size, size], "gsd": list(s.gsd),
                "georeferenced": s.georef}}
    train_gsd = [v for c in chips if c.split == (stat_split or c.split)
                 for v in srcs[c.source].gsd]
    meta = {
        "format": INDEX_FORMAT, "size": size, "band_count": len(bands), "bands": bands,
        "dtype": dtype, "stats": stats, "stats_split": stat_split or "all",
        "scaling": BandScaling.from_stats(dtype, stats).to_dict(),
        "counts": dict(zip(SPLITS, per_split, strict=True)),
        "gsd_range": [min(train_gsd), max(train_gsd)] if train_gsd else None,
        "seed": seed, "args": args,
    }
    return meta, features


def _write_index(path: Path, meta: dict[str, Any], features: list[dict[str, Any]]) -> None:
    """Write the FeatureCollection: readable metadata, then one feature per line."""
    lines = ['{"type": "FeatureCollection",',
             '"satsr": ' + json.dumps(meta, indent=1) + ",",
             '"features": [']
    lines.append(",\n".join(json.dumps(f, separators=(",", ":")) for f in features))
    lines.append("]}")
    path.write_text("\n".join(lines) + "\n")
