"""rasterio helpers shared by every verb: opening, band selection, validity masks, safe writes."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from satsr.errors import SatsrError

#: Bound GDAL's block cache (bytes) so memory stays flat whatever the raster's size.
GDAL_CACHEMAX = 64 * 1024 * 1024


def gdal_env() -> rasterio.Env:
    """The GDAL environment every verb runs in."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHEMAX, GDAL_TIFF_INTERNAL_MASK=True)


def open_raster(path: str | Path) -> rasterio.io.DatasetReader:
    """Open a raster for reading, or fail with one clear line."""
    p = Path(path)
    if not p.exists():
        raise SatsrError(f"input not found: {p}")
    if p.is_dir():
        raise SatsrError(f"input is a folder, not a raster: {p}")
    try:
        return rasterio.open(p)
    except RasterioIOError as exc:
        raise SatsrError(f"not a readable raster: {p} ({str(exc).splitlines()[0]})") from exc


def parse_bands(spec: str | None) -> list[int] | None:
    """'1,2,3' -> [1, 2, 3] (1-based band indexes); None or '' -> None (the default bands)."""
    if spec is None or not spec.strip():
        return None
    try:
        bands = [int(s) for s in spec.split(",")]
    except ValueError as exc:
        raise SatsrError(f"--bands takes 1-based band numbers like 1,2,3, not {spec!r}") from exc
    if len(set(bands)) != len(bands):
        raise SatsrError(f"--bands lists a band twice: {spec}")
    return bands


def alpha_bands(ds: rasterio.io.DatasetReader) -> list[int]:
    """1-based indexes of the bands GDAL reports as alpha (a mask, not data)."""
    return [i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha]


def select_bands(ds: rasterio.io.DatasetReader, bands: Sequence[int] | None) -> list[int]:
    """Validate `bands` against `ds`; default to every non-alpha band."""
    if bands is None:
        alpha = set(alpha_bands(ds))
        return [i for i in range(1, ds.count + 1) if i not in alpha]
    bad = [b for b in bands if not 1 <= b <= ds.count]
    if bad:
        raise SatsrError(f"band(s) {bad} out of range: {ds.name} has bands 1..{ds.count}")
    return list(bands)


def valid_mask(ds: rasterio.io.DatasetReader, window: Window, data: np.ndarray | None = None,
               nodata: float | None = None) -> np.ndarray:
    """Boolean (H, W) array, True where a pixel holds data.

    A pixel is invalid when GDAL's dataset mask says so (declared nodata in every band, an
    alpha band, an internal mask), when any band of `data` is NaN, or, for a user-supplied
    `nodata` value on a file that declares none, when every band of `data` equals it.
    """
    mask = ds.dataset_mask(window=window, boundless=False) > 0
    if data is not None:
        if np.issubdtype(data.dtype, np.floating):
            mask &= ~np.isnan(data).any(axis=0)
        if nodata is not None:
            if np.isnan(nodata):
                mask &= ~np.isnan(data).any(axis=0)
            else:
                mask &= ~(data == np.asarray(nodata, dtype=data.dtype)).all(axis=0)
    return mask


def ground_resolution(ds: rasterio.io.DatasetReader) -> tuple[float, float]:
    """(x, y) pixel size in CRS units (pixels when there is no georeferencing)."""
    t = ds.transform
    return (float(np.hypot(t.a, t.d)), float(np.hypot(t.b, t.e)))


def publish_mode(path: str | Path) -> None:
    """Give a file made by mkstemp (mode 0600) the mode a plain new file gets (0666 - umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        publish_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)
        # GDAL may leave sidecars (.aux.xml, .msk) beside the temporary file
        for side in tmp_path.parent.glob(tmp_path.name + ".*"):
            side.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder beside `target` and move it into place only on success.

    Refuses a non-empty `target` unless `overwrite`; an interrupted build leaves `target`
    as it was.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise SatsrError(f"output exists and is not a folder: {target}")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise SatsrError(f"output folder {target} is not empty (use --overwrite to replace it)")
    parent = target.resolve().parent
    if not parent.is_dir():
        raise SatsrError(f"output folder's parent does not exist: {parent}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=parent))
    try:
        yield tmp
        if target.exists():
            old = parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
