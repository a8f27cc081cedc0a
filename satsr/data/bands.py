"""What the bands of a raster are, and their value range estimated from the raster itself.

Band meaning
------------
GDAL records a colour interpretation per band (red, green, blue, alpha, grey, ...) and an
optional description ("B4", "red", "nir", "SR_B5"...). `band_names` reads both and returns
a canonical name per band (``red``, ``green``, ``blue``, ``nir``, ``rededge``, ``swir1``,
``swir2``, ``coastal``, ``pan``, ``alpha``, ``gray``) or None where neither says. Sentinel-2
and Landsat 8/9 number their bands differently; ``B2``, ``B3``, ``B4`` are blue, green and
red in both, ``B8``/``B8A`` are read as NIR (Sentinel-2), and ``B5`` is NIR only when the
file says it is Landsat (else unknown). Without names the documented default order applies:
bands 1, 2, 3 are red, green, blue and band 4 is NIR (how NAIP, most 4-band commercial
products and `gdal_translate -b 4 -b 3 -b 2` Sentinel-2 stacks come).

Range from the input
--------------------
`estimate_scaling` measures each band's 0.1 and 99.9 percentiles (the band scaling contract
of satsr.data.scaling) on the raster itself: on its smallest overview of at least
`MIN_OVERVIEW_SIDE` pixels when it has overviews, else on a grid of `windows` evenly spread
windows. Memory stays bounded by that sample, whatever the raster's size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from satsr.data.raster import read_dataset_mask, read_window, valid_mask
from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError

CANONICAL = ("red", "green", "blue", "nir", "rededge", "swir1", "swir2", "coastal", "pan",
             "alpha", "gray")
_INTERP = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue",
           ColorInterp.alpha: "alpha", ColorInterp.gray: "gray"}
#: Words of band descriptions -> canonical name.
_WORDS = {
    "red": "red", "r": "red", "green": "green", "g": "green", "blue": "blue", "b": "blue",
    "nir": "nir", "nearinfrared": "nir", "nearir": "nir", "infrared": "nir", "nir08": "nir",
    "rededge": "rededge", "re": "rededge", "swir": "swir1", "swir1": "swir1",
    "swir16": "swir1", "swir2": "swir2", "swir22": "swir2", "coastal": "coastal",
    "aerosol": "coastal", "pan": "pan", "panchromatic": "pan", "alpha": "alpha",
    "gray": "gray", "grey": "gray",
}
_BAND_CODE = re.compile(r"^(?:sr_|toa_)?b(?:and)?0*(\d+)(a?)$")
#: Band numbers shared by Sentinel-2 and Landsat 8/9.
_COMMON_CODES = {"1": "coastal", "2": "blue", "3": "green", "4": "red"}
_S2_CODES = {"8": "nir", "8a": "nir", "5": "rededge", "6": "rededge", "7": "rededge",
             "11": "swir1", "12": "swir2"}
_LANDSAT_CODES = {"5": "nir", "6": "swir1", "7": "swir2", "8": "pan"}
DEFAULT_ORDER = ("red", "green", "blue", "nir")
MIN_OVERVIEW_SIDE = 256
#: Fewest valid pixels per band that `estimate_scaling` accepts.
MIN_PIXELS = 4096


def _sensor(tags: dict[str, str]) -> str | None:
    text = " ".join(f"{k} {v}" for k, v in tags.items()).lower()
    if "sentinel" in text or "msi" in text.split():
        return "sentinel2"
    if "landsat" in text or "oli" in text.split():
        return "landsat"
    return None


def name_from_description(text: str | None, sensor: str | None = None) -> str | None:
    """Canonical name of a band description ("B4", "Red", "nir", "SR_B5"...), or None."""
    if not text:
        return None
    key = re.sub(r"[\s\-()]", "", text.strip().lower())
    if key in _WORDS:
        return _WORDS[key]
    m = _BAND_CODE.match(key)
    if m:
        code = m.group(1) + m.group(2)
        if code in _COMMON_CODES:
            return _COMMON_CODES[code]
        if sensor == "landsat":
            return _LANDSAT_CODES.get(code)
        if code in ("8", "8a", "11", "12") or sensor == "sentinel2":
            return _S2_CODES.get(code)
        return None
    for word, name in _WORDS.items():  # "Band 4 (Red)" style descriptions
        if len(word) > 2 and re.search(rf"\b{word}\b", text.lower()):
            return name
    return None


def band_names(ds: Any) -> list[str | None]:
    """A canonical name (or None) for every band of an open raster."""
    tags: dict[str, str] = dict(ds.tags())
    sensor = _sensor(tags)
    names: list[str | None] = []
    for i in range(ds.count):
        from_desc = name_from_description((ds.descriptions or [None] * ds.count)[i], sensor)
        from_interp = _INTERP.get(ds.colorinterp[i]) if ds.colorinterp else None
        names.append(from_desc or from_interp)
    return names


def rgb_bands(names: Sequence[str | None], selected: Sequence[int]) -> list[int] | None:
    """0-based positions, within `selected` (1-based band numbers), of red, green and blue.

    Named bands win; otherwise the default order (the first three selected bands); None when
    fewer than three bands are selected.
    """
    sel_names = [names[b - 1] if b - 1 < len(names) else None for b in selected]
    pos = {n: i for i, n in reversed(list(enumerate(sel_names))) if n}
    if all(c in pos for c in ("red", "green", "blue")):
        return [pos["red"], pos["green"], pos["blue"]]
    if len(selected) >= 3:
        return [0, 1, 2]
    return None


@dataclass
class RangeEstimate:
    """A band scaling measured on the input raster, and how."""

    scaling: BandScaling
    method: str  # "overview WxH" or "N windows of S px"
    pixels: list[int]  # valid pixels measured, per band
    empty: list[int]  # 0-based bands with no valid pixel (given a placeholder range)

    def tags(self) -> dict[str, str]:
        """GeoTIFF tags recording the range used (written into upscale's output)."""
        return {"SATSR_SCALING": "input", "SATSR_SCALING_METHOD": self.method,
                "SATSR_SCALING_LO": ",".join(f"{v:.6g}" for v in self.scaling.lo),
                "SATSR_SCALING_HI": ",".join(f"{v:.6g}" for v in self.scaling.hi)}


def _sample_windows(width: int, height: int, n: int, side: int) -> list[Window]:
    per = max(1, math.isqrt(n))
    w, h = min(side, width), min(side, height)
    cols = sorted({round(i * (width - w) / max(1, per - 1)) for i in range(per)})
    rows = sorted({round(i * (height - h) / max(1, per - 1)) for i in range(per)})
    return [Window(c, r, w, h) for r in rows for c in cols]


def estimate_scaling(ds: Any, bands: Sequence[int], path: str | Path | None = None,
                     nodata: float | None = None, windows: int = 64, side: int = 256,
                     min_pixels: int = MIN_PIXELS,
                     advice: str = "use a larger raster") -> RangeEstimate:
    """Per-band [p0.1, p99.9] of `bands` (1-based) measured on the raster (see module doc).

    A band whose sample holds no valid pixel gets a placeholder range (it is all nodata and
    is written back as nodata); a raster whose sample holds fewer than `min_pixels` valid
    pixels in every band is too small to estimate a range: one clear error.
    """
    where = path or getattr(ds, "name", "raster")
    dtype = ds.dtypes[bands[0] - 1]
    per_band = [ds.nodatavals[b - 1] if ds.nodatavals[b - 1] is not None else nodata
                for b in bands]
    ov = ds.overviews(bands[0]) if ds.count else []
    samples: list[np.ndarray] = []
    if ov:
        factor = max((f for f in ov if min(ds.width // f, ds.height // f) >= MIN_OVERVIEW_SIDE),
                     default=None)
        if factor is not None:
            shape = (len(bands), ds.height // factor, ds.width // factor)
            data = read_window(ds, list(bands), None, path, out_shape=shape)
            valid = read_dataset_mask(ds, None, path, out_shape=shape[1:]) > 0
            samples.append(_valid_columns(data, valid, per_band))
            method = f"overview {shape[2]}x{shape[1]}"
    if not samples:
        wins = _sample_windows(ds.width, ds.height, windows, side)
        for win in wins:
            data = read_window(ds, list(bands), win, path)
            samples.append(_valid_columns(data, valid_mask(ds, win, data, nodata), per_band))
        method = f"{len(wins)} windows of {min(side, ds.width)}x{min(side, ds.height)} px"
    pix = np.concatenate(samples, axis=1)  # (bands, N), NaN where invalid for that band
    lo, hi, counts, empty = [], [], [], []
    for b in range(len(bands)):
        v = pix[b][np.isfinite(pix[b])]
        counts.append(int(v.size))
        if v.size == 0:
            empty.append(b)
            lo.append(0.0)
            hi.append(1.0)
            continue
        a, z = (float(x) for x in np.percentile(v, [0.1, 99.9]))
        if z <= a:  # a constant band: a unit-wide range around its value
            a, z = a - 0.5, a + 0.5
        lo.append(a)
        hi.append(z)
    if max(counts, default=0) < min_pixels:
        raise SatsrError(f"{where} is too small to estimate its value range from the input "
                         f"({max(counts, default=0)} valid pixels per band, at least "
                         f"{min_pixels} needed): {advice}", option=("method", "scaling"))
    return RangeEstimate(BandScaling(str(np.dtype(dtype)), tuple(lo), tuple(hi)), method,
                         counts, empty)


def _valid_columns(data: np.ndarray, valid: np.ndarray, nodata: Sequence[float | None]
                   ) -> np.ndarray:
    """(bands, N) float64 pixel values with NaN where a pixel is invalid for that band
    (dataset mask, NaN, or that band's nodata value)."""
    x = data.reshape(data.shape[0], -1).astype(np.float64)
    ok = np.broadcast_to(valid.reshape(1, -1), x.shape).copy()
    ok &= np.isfinite(x)
    for b, nd in enumerate(nodata):
        if nd is not None and not np.isnan(nd):
            ok[b] &= x[b] != nd
    return np.where(ok, x, np.nan)
