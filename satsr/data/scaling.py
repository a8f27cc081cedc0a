"""The band scaling contract: the one place that maps raster values to [-1, 1] and back.

Every verb (make-dataset statistics, train, upscale, eval) and every model file uses this
code and these numbers, so a model always sees its inputs scaled exactly as in training.

Contract
--------
* uint8 bands: 0..255 maps linearly to [-1, 1] (x / 127.5 - 1).
* Any other dtype (uint16, int16, float32 reflectance, ...): the per-band range
  [p0.1, p99.9] recorded over the training chips maps linearly to [-1, 1]. Values outside
  that range saturate at -1 / +1 (the 0.2 % tails are clipped, by design: the generator's
  tanh output cannot leave [-1, 1] either).
* The inverse maps [-1, 1] back to the recorded range, rounds for integer dtypes and clips
  to the dtype's own range, restoring the original dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satsr.errors import SatsrError

# Deferred imports: rasterio (satsr.data.raster) is imported by the functions that read
# rasters; this module is on the CLI's start-up path (satsr eval), which stays rasterio-free.


@dataclass(frozen=True)
class BandScaling:
    """Per-band linear map between raster values and [-1, 1]."""

    dtype: str
    lo: tuple[float, ...]
    hi: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi) or not self.lo:
            raise SatsrError("band scaling needs one (lo, hi) pair per band")
        for a, b in zip(self.lo, self.hi, strict=True):
            if not (np.isfinite(a) and np.isfinite(b)) or b <= a:
                raise SatsrError(f"band scaling range [{a}, {b}] is empty or not finite")

    @property
    def bands(self) -> int:
        return len(self.lo)

    @classmethod
    def for_uint8(cls, bands: int) -> BandScaling:
        return cls("uint8", (0.0,) * bands, (255.0,) * bands)

    @classmethod
    def from_stats(cls, dtype: str, stats: Sequence[dict[str, float]]) -> BandScaling:
        """Build the scaling for `dtype` from per-band statistics (keys `p0.1`, `p99.9`)."""
        if np.dtype(dtype) == np.uint8:
            return cls.for_uint8(len(stats))
        lo, hi = [], []
        for s in stats:
            a, b = float(s["p0.1"]), float(s["p99.9"])
            if b <= a:  # a constant band: give it a unit-wide range around its value
                a, b = a - 0.5, a + 0.5
            lo.append(a)
            hi.append(b)
        return cls(str(np.dtype(dtype)), tuple(lo), tuple(hi))

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BandScaling:
        try:
            return cls(str(d["dtype"]), tuple(map(float, d["lo"])), tuple(map(float, d["hi"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise SatsrError(f"malformed band scaling record: {d!r}") from exc

    def select(self, idx: Sequence[int]) -> BandScaling:
        """The scaling of a subset of bands (0-based positions)."""
        lo = tuple(self.lo[i] for i in idx)
        return BandScaling(self.dtype, lo, tuple(self.hi[i] for i in idx))

    def _check(self, bands: int) -> None:
        if bands != self.bands:
            raise SatsrError(f"band scaling is for {self.bands} bands, data has {bands}")

    def to_unit(self, x: np.ndarray, clip: bool = True) -> np.ndarray:
        """Raster values (bands first: C, ... ) -> float32 in [-1, 1] (beyond it with
        `clip=False`: values outside the range keep their distance). NaN stays NaN."""
        self._check(x.shape[0])
        shape = (-1,) + (1,) * (x.ndim - 1)
        lo = np.asarray(self.lo, np.float64).reshape(shape)
        hi = np.asarray(self.hi, np.float64).reshape(shape)
        y = (x.astype(np.float64) - lo) / (hi - lo) * 2.0 - 1.0
        return (np.clip(y, -1.0, 1.0) if clip else y).astype(np.float32)

    def from_unit(self, y: np.ndarray, clip: bool = True) -> np.ndarray:
        """Values in [-1, 1] (bands first) -> raster values in this scaling's dtype, clipped
        to the range (with `clip=False`, only to what the dtype can hold)."""
        self._check(y.shape[0])
        shape = (-1,) + (1,) * (y.ndim - 1)
        lo = np.asarray(self.lo, np.float64).reshape(shape)
        hi = np.asarray(self.hi, np.float64).reshape(shape)
        u = y.astype(np.float64)
        x = ((np.clip(u, -1.0, 1.0) if clip else u) + 1.0) / 2.0 * (hi - lo) + lo
        dt = np.dtype(self.dtype)
        if np.issubdtype(dt, np.integer):
            whole = np.iinfo(dt)
            x = np.clip(np.rint(x), whole.min, whole.max)
        elif np.issubdtype(dt, np.floating):
            real = np.finfo(dt)
            x = np.clip(x, real.min, real.max)
        return x.astype(dt)


    def from_unit_torch(self, y: Any, clip: bool = True) -> Any:
        """`from_unit` in torch, on `y`'s device: values in [-1, 1] (bands first, a float
        tensor) -> a tensor of raster values in this scaling's dtype (`y` is not changed).

        The work is float32 (float64 for dtypes float32 cannot hold exactly: int32, uint32,
        int64, uint64, float64), so it equals `from_unit` within 1 DN for integer dtypes
        (a value at exactly .5 may round the other way) and within float32 rounding of
        the range for float dtypes. Moving this dtype to the host, rather than float
        values, moves 4x fewer bytes for uint8.
        """
        import torch

        self._check(y.shape[0])
        dt = np.dtype(self.dtype)
        work = torch.float64 if dt.itemsize >= 4 and dt != np.float32 else torch.float32
        shape = (-1,) + (1,) * (y.dim() - 1)
        lo = np.asarray(self.lo, np.float64)
        hi = np.asarray(self.hi, np.float64)
        a = torch.tensor((hi - lo) / 2.0, dtype=work, device=y.device).reshape(shape)
        b = torch.tensor((hi + lo) / 2.0, dtype=work, device=y.device).reshape(shape)
        u = y.to(work)
        u = u.clamp(-1.0, 1.0) if clip else (u.clone() if u is y else u)
        x = u.mul_(a).add_(b)
        return cast_torch(x, dt, None if not clip else (float(lo.min()), float(hi.max())))


def torch_dtype(dt: np.dtype[Any]) -> Any:
    """The torch dtype of a raster dtype, or None where torch has none."""
    import torch

    names = {"uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16,
             "uint16": torch.uint16, "int32": torch.int32, "uint32": torch.uint32,
             "int64": torch.int64, "uint64": torch.uint64, "float16": torch.float16,
             "float32": torch.float32, "float64": torch.float64}
    return names.get(dt.name)


def cast_torch(x: Any, dt: np.dtype[Any], bounds: tuple[float, float] | None = None) -> Any:
    """A float tensor of raster values -> `dt`, as `from_unit` does it: integer dtypes
    rounded (half to even, as np.rint) and clipped to the dtype's range, float dtypes clipped
    to their finite range. `bounds` (the lowest and highest value `x` can hold, when known)
    skips the clip when it cannot change anything. Changes `x` in place."""
    if np.issubdtype(dt, np.integer):
        whole = np.iinfo(dt)
        x = x.round_()
        if bounds is None or bounds[0] < whole.min or bounds[1] > whole.max:
            x = x.clamp_(float(whole.min), float(whole.max))
    elif np.issubdtype(dt, np.floating):
        real = np.finfo(dt)
        if bounds is None or bounds[0] < real.min or bounds[1] > real.max:
            x = x.clamp_(float(real.min), float(real.max))  # NaN stays NaN
    target = torch_dtype(dt)
    if target is None:  # pragma: no cover  (no torch dtype: cast on the host)
        return x
    return x.to(target)


def exact_scaling(ds: Any, bands: Sequence[int], dtype: str,
                  nodata: float | None = None) -> BandScaling:
    """One open raster's exact scaling (upscale's baselines): fixed for uint8, else the exact
    per-band min/max of its valid pixels.

    One windowed pass of about 4 M pixels per read, so memory stays flat.
    """
    from rasterio.windows import Window

    from satsr.data.raster import read_window, valid_mask

    if np.dtype(dtype) == np.uint8:
        return BandScaling.for_uint8(len(bands))
    lo = np.full(len(bands), np.inf)
    hi = np.full(len(bands), -np.inf)
    rows = max(1, (1 << 22) // max(ds.width, 1))
    for r in range(0, ds.height, rows):
        win = Window(0, r, ds.width, min(rows, ds.height - r))
        data = read_window(ds, bands, win)
        ok = valid_mask(ds, win, data, nodata)
        if data.dtype.kind in "iu" and ok.all():  # exact in the native dtype, no copy
            lo = np.minimum(lo, data.min(axis=(1, 2)))
            hi = np.maximum(hi, data.max(axis=(1, 2)))
        elif ok.any():
            v = data[:, ok].astype(np.float64)
            lo = np.minimum(lo, np.nanmin(v, axis=1))
            hi = np.maximum(hi, np.nanmax(v, axis=1))
    stats = [{"p0.1": a if np.isfinite(a) else 0.0, "p99.9": b if np.isfinite(b) else 1.0}
             for a, b in zip(lo, hi, strict=True)]
    return BandScaling.from_stats(dtype, stats)


def percentile_scaling(paths: Sequence[Path], bands: int) -> BandScaling:
    """Several rasters' common scaling (eval): uint8 -> the fixed map; other dtypes ->
    [p0.1, p99.9] of the valid pixels (decimated).

    NaN counts as nodata (as in satsr.data.raster.valid_mask): it is left out of the statistics.
    """
    from satsr.data.raster import (
        gdal_env,
        open_raster,
        read_dataset_mask,
        read_window,
        select_bands,
    )

    dtypes, px = set(), []
    with gdal_env():
        for p in paths:
            with open_raster(p) as ds:
                idx = select_bands(ds, None)
                dtypes.add(ds.dtypes[idx[0] - 1])
                f = max(1, int(math.ceil(max(ds.width, ds.height) / 1024)))
                shape = (len(idx), max(1, ds.height // f), max(1, ds.width // f))
                data = read_window(ds, idx, None, p, out_shape=shape)
                mask = read_dataset_mask(ds, None, p, out_shape=shape[1:]) > 0
                if np.issubdtype(data.dtype, np.floating):
                    mask &= np.isfinite(data).all(axis=0)
                if not mask.any():
                    raise SatsrError(f"{p} holds no valid pixels (all nodata or NaN)")
                px.append(data[:, mask].astype(np.float64))
    if len(dtypes) != 1:
        raise SatsrError(f"the rasters have different dtypes ({', '.join(sorted(dtypes))})")
    dtype = dtypes.pop()
    if np.dtype(dtype) == np.uint8:
        return BandScaling.for_uint8(bands)
    allpx = np.concatenate(px, axis=1)
    stats = [{"p0.1": float(np.percentile(b, 0.1)), "p99.9": float(np.percentile(b, 99.9))}
             for b in allpx]
    return BandScaling.from_stats(dtype, stats)
