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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from satsr.errors import SatsrError


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

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Raster values (bands first: C, ... ) -> float32 in [-1, 1]. NaN stays NaN."""
        self._check(x.shape[0])
        shape = (-1,) + (1,) * (x.ndim - 1)
        lo = np.asarray(self.lo, np.float64).reshape(shape)
        hi = np.asarray(self.hi, np.float64).reshape(shape)
        y = (x.astype(np.float64) - lo) / (hi - lo) * 2.0 - 1.0
        return np.clip(y, -1.0, 1.0).astype(np.float32)

    def from_unit(self, y: np.ndarray) -> np.ndarray:
        """Values in [-1, 1] (bands first) -> raster values in this scaling's dtype, clipped."""
        self._check(y.shape[0])
        shape = (-1,) + (1,) * (y.ndim - 1)
        lo = np.asarray(self.lo, np.float64).reshape(shape)
        hi = np.asarray(self.hi, np.float64).reshape(shape)
        x = (np.clip(y.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0 * (hi - lo) + lo
        dt = np.dtype(self.dtype)
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            x = np.clip(np.rint(x), info.min, info.max)
        elif np.issubdtype(dt, np.floating):
            info = np.finfo(dt)
            x = np.clip(x, info.min, info.max)
        return x.astype(dt)
