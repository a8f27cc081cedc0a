"""The dataset index written by `satsr make-dataset` and read by `train` and `eval`.

`OUT/index.geojson` is an RFC 7946 FeatureCollection, one Feature per chip, geometry = chip
footprint in EPSG:4326 (or pixel coordinates for sources without CRS, flagged by
`georeferenced: false`). Feature properties:

    path      chip file, relative to OUT (e.g. "chips/train/000017.tif")
    split     "train" | "val" | "test"
    source    source raster path as given
    crs       the source's CRS as a string (e.g. "EPSG:32618"), or null
    window    [col_off, row_off, width, height] in source pixels
    gsd       source ground resolution [x, y] in CRS units (pixels if no CRS)
    georeferenced  whether the footprint is geographic

The collection carries one foreign member `satsr` (allowed by RFC 7946 section 6.1) with the
dataset-wide facts: size, band_count, bands (1-based source band indexes), dtype, per-band
stats over the training chips (min, max, mean, std, p0.1, p99.9), the band `scaling`
(see satsr.data.scaling), counts per split, gsd_range over train chips, seed and arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError

INDEX_NAME = "index.geojson"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Chip:
    """One chip of a dataset."""

    path: Path  # absolute path of the chip GeoTIFF
    split: str
    source: str
    crs: str | None
    window: tuple[int, int, int, int]
    gsd: tuple[float, float] | None


@dataclass
class DatasetIndex:
    """A make-dataset folder: its chips and the dataset-wide metadata."""

    root: Path
    chips: list[Chip]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def band_count(self) -> int:
        return int(self.meta["band_count"])

    @property
    def dtype(self) -> str:
        return str(self.meta["dtype"])

    @property
    def scaling(self) -> BandScaling:
        return BandScaling.from_dict(self.meta["scaling"])

    @property
    def gsd_range(self) -> tuple[float, float] | None:
        r = self.meta.get("gsd_range")
        return (float(r[0]), float(r[1])) if r else None

    def split(self, name: str) -> list[Chip]:
        return [c for c in self.chips if c.split == name]

    @classmethod
    def read(cls, folder: str | Path) -> DatasetIndex:
        """Read OUT/index.geojson, with one clear error for anything that is not a dataset."""
        root = Path(folder)
        if not root.exists():
            raise SatsrError(f"dataset folder not found: {root}")
        path = root / INDEX_NAME if root.is_dir() else root
        if root.is_file():
            root = root.parent
        if not path.is_file():
            raise SatsrError(f"{root} is not a satsr dataset (no {INDEX_NAME}; make one with "
                             "`satsr make-dataset`)")
        try:
            doc = json.loads(path.read_text())
            meta = doc["satsr"]
            chips = []
            for f in doc["features"]:
                p = f["properties"]
                chips.append(Chip(
                    path=(root / p["path"]).resolve(),
                    split=str(p["split"]),
                    source=str(p["source"]),
                    crs=p.get("crs"),
                    window=tuple(int(v) for v in p["window"]),  # type: ignore[arg-type]
                    gsd=tuple(float(v) for v in p["gsd"]) if p.get("gsd") else None,  # type: ignore[arg-type]
                ))
            for key in ("band_count", "dtype", "scaling"):
                meta[key]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SatsrError(f"{path} is not a valid satsr dataset index ({exc!s})") from exc
        return cls(root=root, chips=chips, meta=meta)
