"""Which bundled model serves a raster: one committed table, read top to bottom.

`satsr/assets/models/choice.json` lists rows of (model, band kind, dtypes, ground sample
distance range in metres, whether an unknown GSD matches); the first row that fits the
raster's data bands (alpha excluded, after `bands`), dtype and GSD wins. `satsr upscale`
without `--model` prints the chosen model and why in one line; `satsr models` prints the
table. The GSD is in metres from a projected CRS, converted from degrees for a geographic one
(at the raster's centre latitude), and unknown without a CRS.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satsr.data.bands import band_names, rgb_bands
from satsr.data.raster import gdal_env, open_raster, select_bands
from satsr.errors import SatsrError
from satsr.inference.bundled import MODELS_DIR, bundled_model

TABLE = MODELS_DIR / "choice.json"
BAND_KINDS = ("rgb", "any")


@dataclass(frozen=True)
class Row:
    """One row of the table."""

    model: str
    bands: str  # "rgb": exactly three data bands; "any": any band count
    dtypes: tuple[str, ...]
    gsd_min: float | None  # metres, inclusive; None: no bound
    gsd_max: float | None
    unknown_gsd: bool  # whether a raster without a known GSD matches
    note: str = ""

    def fits(self, n_bands: int, dtype: str, gsd: float | None) -> bool:
        if self.bands == "rgb" and n_bands != 3:
            return False
        if dtype not in self.dtypes:
            return False
        if gsd is None:
            return self.unknown_gsd
        return ((self.gsd_min is None or gsd >= self.gsd_min)
                and (self.gsd_max is None or gsd <= self.gsd_max))

    def describe(self) -> str:
        lo = "0" if self.gsd_min is None else f"{self.gsd_min:g}"
        hi = "any" if self.gsd_max is None else f"{self.gsd_max:g} m"
        gsd = f"GSD {lo}-{hi}" + (" or unknown" if self.unknown_gsd else "")
        kind = "3 bands (RGB)" if self.bands == "rgb" else "any band count"
        return f"{kind}, {'/'.join(self.dtypes)}, {gsd}"


def read_table(path: str | Path = TABLE) -> list[Row]:
    """The rows of a choice table; one clear line for a malformed one."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        rows = []
        for r in doc["rows"]:
            row = Row(str(r["model"]), str(r["bands"]), tuple(str(d) for d in r["dtypes"]),
                      None if r.get("gsd_min_m") is None else float(r["gsd_min_m"]),
                      None if r.get("gsd_max_m") is None else float(r["gsd_max_m"]),
                      bool(r.get("unknown_gsd", False)), str(r.get("note", "")))
            if row.bands not in BAND_KINDS:
                raise ValueError(f"bands must be rgb or any, not {row.bands!r}")
            rows.append(row)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SatsrError(f"model choice table {p} is unreadable ({exc})") from None
    return rows


def gsd_metres(ds: Any) -> float | None:
    """The raster's ground sample distance in metres (mean of x and y), or None.

    Metres whatever the CRS: a projected CRS's units are scaled by its linear-unit factor,
    degrees converted at the centre latitude; None without a CRS or linear units. (The pixel
    size in CRS units, as make-dataset and upscale's resolution check compare it, is
    satsr.data.raster.ground_resolution.)
    """
    if ds.crs is None:
        return None
    t = ds.transform
    gx, gy = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    if ds.crs.is_geographic:
        lat = math.radians(ds.xy(ds.height / 2, ds.width / 2)[1])
        return (gx * 111_320.0 * math.cos(lat) + gy * 110_574.0) / 2
    try:
        factor = float(ds.crs.linear_units_factor[1])
    except ValueError:  # rasterio's CRSError: a CRS without linear units (unknown GSD)
        return None
    return (gx + gy) / 2 * factor


@dataclass
class Choice:
    """The chosen model and the one line that says why."""

    model: str
    path: Path
    reason: str


def choose_model(raster: str | Path, bands: Sequence[int] | None = None,
                 table: str | Path = TABLE) -> Choice:
    """The bundled model the table gives `raster` (with `bands` selected), and why."""
    with gdal_env(), open_raster(raster) as ds:
        sel = select_bands(ds, list(bands) if bands else None)
        dtypes = {ds.dtypes[b - 1] for b in sel}
        dtype = dtypes.pop() if len(dtypes) == 1 else "mixed"
        gsd = gsd_metres(ds)
        names = band_names(ds)
    rgb = rgb_bands(names, sel) if len(sel) == 3 else None
    facts = (f"{len(sel)} {dtype} band{'s' if len(sel) != 1 else ''}"
             + (" (RGB)" if rgb is not None and len(sel) == 3 else "")
             + (f" at {gsd:.3g} m" if gsd is not None else " of unknown GSD"))
    for row in read_table(table):
        if not row.fits(len(sel), dtype, gsd):
            continue
        found = bundled_model(row.model)
        if found is None:
            continue  # a row for a model this install lacks
        why = f"{facts}: {row.note or row.describe()}"
        return Choice(row.model, found.path, why)
    hint = (" (choose 3 with bands, e.g. bands 1,2,3)" if len(sel) > 3 else "")
    raise SatsrError(f"no bundled model fits {raster}: {facts}{hint}; give a model",
                     option=("model", "bands"))
