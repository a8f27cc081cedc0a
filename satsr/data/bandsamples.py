"""Band samples: make-dataset folders -> one dataset of single-band chips in unit range.

A band-by-band model (one network shared by every band of any sensor) learns from single-band
samples. Sources differ in dtype (uint8 NAIP, uint16 Landsat) and in range per band, so each
band of each source is scaled to [-1, 1] by its own [p0.1, p99.9] measured on the *source
raster* with `satsr.bands.estimate_scaling`, the very estimator `satsr upscale --scaling input`
applies to a user's raster: the model sees its inputs scaled in training as at inference.

The result is an ordinary satsr dataset (index.geojson + chips/<split>/*.tif) of float32,
1-band chips whose band scaling is the identity on [-1, 1]; `satsr train` trains on it
unchanged. Values beyond [-1, 1] (clouds above p99.9) are kept in the chips; training crops
are clipped by the band scaling as usual. Each feature records the source band and the range
used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from satsr.data.bands import band_names, estimate_scaling
from satsr.data.index import INDEX_NAME, SPLITS, DatasetIndex
from satsr.data.raster import atomic_dir, check_output, gdal_env, open_raster, read_window
from satsr.data.scaling import BandScaling
from satsr.errors import SatsrError

#: The scaling of band-sample datasets: the chips already hold unit values.
UNIT = BandScaling("float32", (-1.0,), (1.0,))


@dataclass
class BandSampleSummary:
    """What `band_samples` wrote."""

    out: Path
    counts: dict[str, int]
    sources: dict[str, list[tuple[float, float]]]  # source -> per-band (lo, hi) used


def _source_ranges(path: str, bands: Sequence[int]) -> tuple[list[tuple[float, float]],
                                                             list[str | None]]:
    with gdal_env(), open_raster(path) as ds:
        est = estimate_scaling(ds, list(bands), path)
        names = band_names(ds)
    return ([(float(a), float(b)) for a, b in zip(est.scaling.lo, est.scaling.hi, strict=True)],
            [names[b - 1] if b - 1 < len(names) else None for b in bands])


def band_samples(datasets: Sequence[str | Path], out: str | Path, *,
                 overwrite: bool = False) -> BandSampleSummary:
    """Write one single-band, unit-range dataset from the chips of `datasets` (see module doc).

    Every band of every chip becomes one sample in the chip's split; the splits of the inputs
    are kept, so a committed split stays committed.
    """
    if not datasets:
        raise SatsrError("give at least one dataset folder")
    out = Path(out)
    seen: list[Path] = []
    for d in datasets:
        if any(Path(d).resolve() == s for s in seen):
            raise SatsrError(f"datasets: {d} is given twice: every sample would be doubled",
                             option="datasets")
        seen.append(Path(d).resolve())
    check_output(out, overwrite, folder=True, inputs=list(datasets), make_parents=True)
    indexes = [DatasetIndex.read(d) for d in datasets]
    ranges: dict[str, list[tuple[float, float]]] = {}
    names: dict[str, list[str | None]] = {}
    for idx in indexes:
        bands = [int(b) for b in (idx.meta.get("bands") or range(1, idx.band_count + 1))]
        for src in sorted({c.source for c in idx.chips}):
            if src not in ranges:
                ranges[src], names[src] = _source_ranges(src, bands)
    counts = {sp: 0 for sp in SPLITS}
    features: list[dict[str, Any]] = []
    gsd: list[float] = []
    with atomic_dir(out, overwrite, "band-samples") as tmp:
        for sp in SPLITS:
            (tmp / "chips" / sp).mkdir(parents=True)
        n = 0
        for idx in indexes:
            bands = [int(b) for b in (idx.meta.get("bands") or range(1, idx.band_count + 1))]
            for chip in idx.chips:
                with gdal_env(), open_raster(chip.path) as ds:
                    data = read_window(ds, None, None, chip.path).astype(np.float64)
                    profile = {"driver": "GTiff", "width": ds.width, "height": ds.height,
                               "count": 1, "dtype": "float32", "crs": ds.crs,
                               "transform": ds.transform, "compress": "deflate",
                               "predictor": 3}
                for k, b in enumerate(bands):
                    lo, hi = ranges[chip.source][k]
                    unit = (data[k] - lo) / (hi - lo) * 2.0 - 1.0
                    unit = np.where(np.isfinite(unit), unit, -1.0).astype(np.float32)
                    rel = f"chips/{chip.split}/{n:07d}.tif"
                    n += 1
                    with rasterio.open(tmp / rel, "w", **profile) as dst:
                        dst.write(unit[None])
                    counts[chip.split] += 1
                    if chip.gsd:
                        gsd += list(chip.gsd)
                    features.append({"type": "Feature", "geometry": None, "properties": {
                        "path": rel, "split": chip.split, "source": chip.source,
                        "crs": chip.crs, "window": list(chip.window),
                        "gsd": list(chip.gsd) if chip.gsd else None, "georeferenced": False,
                        "band": b, "band_name": names[chip.source][k],
                        "source_range": [lo, hi]}})
        size = {int(i.meta.get("size", 0)) for i in indexes}
        meta = {
            "format": 1, "size": size.pop() if len(size) == 1 else None, "band_count": 1,
            "bands": [1], "dtype": "float32", "scaling": UNIT.to_dict(),
            "stats": [{"band": 1, "p0.1": -1.0, "p99.9": 1.0}], "counts": counts,
            "gsd_range": [min(gsd), max(gsd)] if gsd else None,
            "band_samples": {"from": [str(i.root) for i in indexes],
                             "ranges": {s: [list(r) for r in v] for s, v in ranges.items()},
                             "estimator": "satsr.bands.estimate_scaling"},
        }
        doc = {"type": "FeatureCollection", "satsr": meta, "features": features}
        (tmp / INDEX_NAME).write_text(json.dumps(doc, indent=None, allow_nan=False) + "\n")
    return BandSampleSummary(out, counts, ranges)
