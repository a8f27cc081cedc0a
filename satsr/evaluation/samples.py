"""Samples for the eval verb: HR images from a dataset's test split, from rasters cut into
chips, or aligned --pred/--ref pairs (with the check that they share one pixel grid).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satsr.data.index import DatasetIndex
from satsr.data.scaling import BandScaling, percentile_scaling
from satsr.errors import SatsrError

# Deferred imports: rasterio and the satsr modules that import it are imported by the
# functions that use them (see satsr.evaluation.scoring).


@dataclass
class Sample:
    """One HR image to evaluate on: a label and its bands in [-1, 1] (C, H, W)."""

    label: str
    hr: np.ndarray
    preds: dict[str, np.ndarray] | None = None  # given predictions (pair mode), else computed


def samples_have_preds(samples: Iterable[Sample]) -> bool:
    """Whether samples carry given predictions (pair mode); looks at a list's first only."""
    return isinstance(samples, list) and bool(samples) and samples[0].preds is not None


def dataset_samples(folder: str | Path) -> tuple[list[Sample] | Iterator[Sample], int,
                                                 BandScaling, dict[str, Any]]:
    """The test chips of a make-dataset folder, scaled with the dataset's scaling."""
    from satsr.data.raster import gdal_env, open_raster, read_window

    index = DatasetIndex.read(folder)
    chips = index.split("test")
    if not chips:
        raise SatsrError(f"dataset {index.root} has no test split (no chip with split=test)")
    scaling = index.scaling

    def gen() -> Iterator[Sample]:
        with gdal_env():
            for c in chips:
                with open_raster(c.path) as ds:
                    data = read_window(ds, None, None, c.path)
                if data.shape[0] != scaling.bands:
                    raise SatsrError(f"chip {c.path} has {data.shape[0]} bands, the dataset "
                                     f"{scaling.bands}")
                yield Sample(str(c.path.name), scaling.to_unit(data))

    return gen(), len(chips), scaling, {"data": str(index.root), "split": "test"}


def fitting_model_scaling(model: str | Path, raster: str | Path) -> BandScaling | None:
    """The model's band scaling when `raster` has the model's dtype and band count (the model
    then sees its training units), else None (the rasters' own scaling is used)."""
    from satsr.data.raster import gdal_env, open_raster, select_bands
    from satsr.inference.modelfile import model_scaling, read_metadata

    ms = model_scaling(read_metadata(model))
    with gdal_env(), open_raster(raster) as ds:
        idx = select_bands(ds, None)
        if ds.dtypes[idx[0] - 1] == ms.dtype and len(idx) == ms.bands:
            return ms
    return None


def _even_windows(n: int, size: int, scale: int) -> list[tuple[int, int]]:
    """Split 0..n into near-equal (offset, length) pieces of at most `size`, multiples of scale."""
    usable = n - n % scale
    k = max(1, math.ceil(usable / size))
    edges = [int(round(i * usable / k / scale)) * scale for i in range(k + 1)]
    return [(a, b - a) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def raster_samples(paths: Sequence[str | Path], chip: int, scale: int,
                   scaling: BandScaling | None = None
                   ) -> tuple[Iterator[Sample], int, BandScaling, dict[str, Any]]:
    """Rasters/images as HR, cut into near-equal chips of at most `chip` px (wholly valid only)."""
    from rasterio.windows import Window

    from satsr.data.raster import gdal_env, open_raster, read_window, select_bands, valid_mask

    ps = [Path(p) for p in paths]
    plan: list[tuple[Path, list[int], Window]] = []
    counts = set()
    with gdal_env():
        for p in ps:
            with open_raster(p) as ds:
                idx = select_bands(ds, None)
                counts.add(len(idx))
                if ds.width < scale or ds.height < scale:
                    raise SatsrError(f"{p} ({ds.width}x{ds.height}) is smaller than the scale")
                for y, h in _even_windows(ds.height, chip, scale):
                    for x, w in _even_windows(ds.width, chip, scale):
                        plan.append((p, idx, Window(x, y, w, h)))
    if len(counts) != 1:
        raise SatsrError(f"the rasters have different band counts ({sorted(counts)})")
    bands = counts.pop()
    scaling = scaling or percentile_scaling(ps, bands)
    if scaling.bands != bands:
        raise SatsrError(f"the rasters have {bands} bands, the scaling {scaling.bands}")

    info: dict[str, Any] = {"data": [str(p) for p in ps], "skipped": 0}

    def gen() -> Iterator[Sample]:
        used = 0
        with gdal_env():
            for p, idx, win in plan:
                with open_raster(p) as ds:
                    data = read_window(ds, idx, win, p)
                    if not valid_mask(ds, win, data).all():
                        info["skipped"] += 1  # nodata/NaN inside: metrics would compare fill
                        continue
                used += 1
                yield Sample(f"{p.name}@{win.col_off},{win.row_off}", scaling.to_unit(data))
        if not used:
            raise SatsrError(f"nothing to evaluate: every chip of {', '.join(map(str, ps))} "
                             "holds nodata or NaN")

    return gen(), len(plan), scaling, info


#: --pred/--ref pairs of up to this many pixels are scored whole, in one pass (VGG LPIPS needs
#: about 600 bytes per pixel on CPU: ~2.5 GB at this size).
PAIR_MAX_PIXELS = 2048 * 2048
#: How far (in pixels) --pred's grid may sit from --ref's and still count as the same grid.
GRID_TOLERANCE = 0.01


def _georeferenced(ds: Any) -> bool:
    """Whether a dataset has a CRS or a non-identity geotransform."""
    from affine import Affine

    return ds.crs is not None or ds.transform != Affine.identity()


def _grid(ds: Any) -> str:
    t = ds.transform
    crs = ds.crs.to_string() if ds.crs else "no CRS"
    return f"{crs}, origin ({t.c:.6g}, {t.f:.6g}), pixel {abs(t.a):.6g} x {abs(t.e):.6g}"


def check_same_grid(dp: Any, dr: Any, pred: str | Path, ref: str | Path) -> None:
    """Refuse --pred/--ref that do not lie on the same ground pixels (to GRID_TOLERANCE px).

    Two rasters without georeferencing (plain images) are taken as aligned.
    """
    gp, gr = _georeferenced(dp), _georeferenced(dr)
    if not gp and not gr:
        return
    if gp != gr:
        has, lacks = (pred, ref) if gp else (ref, pred)
        raise SatsrError(f"{has} is georeferenced but {lacks} is not: cannot tell that they "
                         "cover the same ground")
    if dp.crs != dr.crs:
        raise SatsrError(f"pred and ref are in different CRSs: {pred} ({_grid(dp)}) vs "
                         f"{ref} ({_grid(dr)})", option=("pred", "ref"))
    to_ref = ~dr.transform @ dp.transform  # pred pixel -> ref pixel
    w, h = dr.width, dr.height
    off = max(math.hypot(*(np.subtract(to_ref @ (x, y), (x, y))))
              for x, y in ((0, 0), (w, 0), (0, h), (w, h)))
    if off > GRID_TOLERANCE:
        raise SatsrError(f"pred and ref are not on the same pixel grid (up to {off:.3g} px "
                         f"apart): {pred} ({_grid(dp)}) vs {ref} ({_grid(dr)})",
                         option=("pred", "ref"))


def pair_samples(pred: str | Path, ref: str | Path, chip: int = 256, name: str | None = None,
                 max_pixels: int = PAIR_MAX_PIXELS,
                 ) -> tuple[Iterator[Sample], int, BandScaling, str, dict[str, Any]]:
    """Two aligned rasters (SR and HR): the whole image as one sample, or pieces above a budget.

    A pair of at most `max_pixels` pixels, valid everywhere, is one sample: every metric is
    computed on the whole image in one pass. A larger pair, or one holding nodata/NaN, is cut
    into near-equal windows of at most `chip` px; windows holding nodata/NaN are skipped and
    every metric is the mean over the remaining windows (`info["scored"]` says which).
    """
    from rasterio.windows import Window

    from satsr.data.raster import gdal_env, open_raster, read_window, select_bands, valid_mask

    with gdal_env(), open_raster(pred) as dp, open_raster(ref) as dr:
        ip, ir = select_bands(dp, None), select_bands(dr, None)
        if (dp.height, dp.width, len(ip)) != (dr.height, dr.width, len(ir)):
            raise SatsrError(f"pred and ref differ in shape: {pred} is {dp.width}x"
                             f"{dp.height}x{len(ip)} bands, {ref} is {dr.width}x{dr.height}x"
                             f"{len(ir)} bands", option=("pred", "ref"))
        if dp.dtypes[ip[0] - 1] != dr.dtypes[ir[0] - 1]:
            raise SatsrError(f"pred is {dp.dtypes[ip[0] - 1]} but ref is "
                             f"{dr.dtypes[ir[0] - 1]}", option=("pred", "ref"))
        check_same_grid(dp, dr, pred, ref)
        width, height = dr.width, dr.height
        wins = [Window(x, y, w, h) for y, h in _even_windows(height, chip, 1)
                for x, w in _even_windows(width, chip, 1)]
    scaling = percentile_scaling([Path(ref)], len(ir))
    label = name or Path(pred).stem
    whole = width * height <= max_pixels
    info: dict[str, Any] = {"pred": str(pred), "ref": str(ref), "skipped": 0,
                            "scored": "whole image" if whole else
                            f"mean over {chip}-px pieces (image above {max_pixels} pixels)"}

    def sample(lbl: str, a: np.ndarray, b: np.ndarray) -> Sample:
        return Sample(lbl, scaling.to_unit(b), {label: scaling.to_unit(a)})

    def gen() -> Iterator[Sample]:
        bad = {str(pred): 0, str(ref): 0}
        used = 0
        with gdal_env(), open_raster(pred) as dp, open_raster(ref) as dr:
            if whole:
                full = Window(0, 0, width, height)
                a, b = read_window(dp, ip, None, pred), read_window(dr, ir, None, ref)
                va, vb = valid_mask(dp, full, a), valid_mask(dr, full, b)
                if va.all() and vb.all():
                    yield sample("whole", a, b)
                    return
                info["scored"] = f"mean over {chip}-px pieces without nodata/NaN"
            for win in wins:
                sl = win.toslices()
                if whole:
                    band_sl = (slice(None), *sl)
                    pa, pb, ma, mb = a[band_sl], b[band_sl], va[sl], vb[sl]
                else:
                    pa, pb = read_window(dp, ip, win, pred), read_window(dr, ir, win, ref)
                    ma, mb = valid_mask(dp, win, pa), valid_mask(dr, win, pb)
                if not (ma.all() and mb.all()):
                    bad[str(pred)] += int(not ma.all())
                    bad[str(ref)] += int(not mb.all())
                    info["skipped"] += 1
                    continue
                used += 1
                yield sample(f"{win.col_off},{win.row_off}", pa, pb)
        if not used:
            culprits = [p for p, n in bad.items() if n] or [str(pred), str(ref)]
            raise SatsrError(f"nothing to evaluate: {' and '.join(culprits)} "
                             f"{'holds' if len(culprits) == 1 else 'hold'} nodata or NaN in "
                             f"every {chip}-px piece")

    return gen(), 1 if whole else len(wins), scaling, label, info
