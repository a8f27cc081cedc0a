"""Split files: one committed block split of a set of rasters, reused by every dataset.

`make-dataset` normally draws its own block split from its seed, so two datasets cut from the
same rasters with other sizes or seeds have different test areas, and one model's training
area can be another model's test area. A split file fixes, per source raster, a grid of
blocks and the split (train / val / test) of each block; `make_dataset(split_file=...)`
cuts every chip wholly inside one of those blocks, whatever its chip size, count or seed.

The format is JSON (``format: "satsr-split"``, ``version: 1``)::

    {"format": "satsr-split", "version": 1, "block": 256, "fractions": [0.7, 0.15, 0.15],
     "seed": 0,
     "sources": [{"name": "manila_aerial_0.1m.tif", "width": 2048, "height": 2048,
                  "crs": "EPSG:3395", "transform": [a, b, c, d, e, f],
                  "blocks": [[col, row, width, height, "train"], ...]}, ...]}

Sources are matched by file name, then checked by size and transform, so a file moved to
another folder still matches and another file with the same name does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.crs

from satsr.data.index import SPLITS
from satsr.data.raster import gdal_env, open_raster
from satsr.data.sampling import Block, axis_cuts, parse_split
from satsr.errors import SatsrError

SPLIT_FORMAT = "satsr-split"
SPLIT_VERSION = 1


@dataclass
class SourceSplit:
    """The blocks of one source raster and the split of each."""

    name: str
    width: int
    height: int
    crs: str | None
    transform: tuple[float, ...]
    blocks: list[tuple[int, int, int, int, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "width": self.width, "height": self.height,
                "crs": self.crs, "transform": list(self.transform),
                "blocks": [list(b) for b in self.blocks]}


@dataclass
class SplitFile:
    """A committed block split of named rasters (see the module docstring)."""

    block: int
    fractions: tuple[float, float, float]
    seed: int
    sources: list[SourceSplit]
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": SPLIT_FORMAT, "version": SPLIT_VERSION, "block": self.block,
                "fractions": list(self.fractions), "seed": self.seed,
                "sources": [s.to_dict() for s in self.sources]}

    def digest(self) -> str:
        """sha256 of the canonical JSON: what dataset indexes and model files record."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def write(self, path: str | Path) -> Path:
        """Write the file (one source per line block, readable in a diff)."""
        p = Path(path)
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise SatsrError("two sources share a file name; a split file matches sources by "
                             "name")
        doc = self.to_dict()
        srcs = doc.pop("sources")
        head = json.dumps(doc)[:-1]
        body = ",\n".join(
            "  " + json.dumps({k: v for k, v in s.items() if k != "blocks"})[:-1]
            + ', "blocks": [\n' + ",\n".join("    " + json.dumps(b) for b in s["blocks"])
            + "]}" for s in srcs)
        p.write_text(head + ', "sources": [\n' + body + "\n]}\n")
        return p

    @classmethod
    def read(cls, path: str | Path) -> SplitFile:
        """Read and check a split file; one line naming the problem otherwise."""
        p = Path(path)
        if not p.is_file():
            raise SatsrError(f"split file not found: {p}")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SatsrError(f"split file {p} is not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != SPLIT_FORMAT:
            raise SatsrError(f"{p} is not a satsr split file (format {SPLIT_FORMAT!r})")
        if doc.get("version") != SPLIT_VERSION:
            raise SatsrError(f"split file {p} has version {doc.get('version')!r}; this satsr "
                             f"reads version {SPLIT_VERSION}")
        try:
            sources = []
            for s in doc["sources"]:
                blocks = [(_whole(c, "block col"), _whole(r, "block row"),
                           _whole(w, "block width"), _whole(h, "block height"), str(sp))
                          for c, r, w, h, sp in s["blocks"]]
                width, height = _whole(s["width"], "width"), _whole(s["height"], "height")
                bad = [b for b in blocks if b[4] not in SPLITS or b[2] < 1 or b[3] < 1
                       or b[0] < 0 or b[1] < 0 or b[0] + b[2] > width or b[1] + b[3] > height]
                if bad:
                    raise ValueError(f"block {list(bad[0])} of {s['name']}")
                crs = s.get("crs")
                if crs is not None and not isinstance(crs, str):
                    raise ValueError(f"crs {crs!r} of {s['name']}")
                sources.append(SourceSplit(str(s["name"]), width, height, crs,
                                           tuple(_number(v, "transform")
                                                 for v in s["transform"]), blocks))
            fractions = parse_split([_number(f, "fractions") for f in doc["fractions"]])
            block = _whole(doc["block"], "block")
            if block < 8:
                raise ValueError(f"block {block} (at least 8 px)")
            out = cls(block, fractions, _whole(doc.get("seed", 0), "seed"), sources, p)
        except SatsrError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SatsrError(f"split file {p} is malformed ({exc})") from None
        names = [s.name for s in out.sources]
        if len(set(names)) != len(names):
            raise SatsrError(f"split file {p} lists a source name twice")
        for s in out.sources:
            clash = _overlap(s.blocks)
            if clash is not None:
                a, b = clash
                raise SatsrError(f"split file {p} leaks: in {s.name}, block {list(a)} overlaps "
                                 f"block {list(b)}; every pixel must be in one split only")
        return out

    def source_for(self, path: str | Path, ds: rasterio.io.DatasetReader) -> SourceSplit:
        """The entry of an open source raster: same file name, size and transform."""
        name = Path(path).name
        entry = next((s for s in self.sources if s.name == name), None)
        where = self.path or "the split file"
        if entry is None:
            known = ", ".join(s.name for s in self.sources[:6])
            raise SatsrError(f"{path} is not in split file {where} (it names {known}"
                             f"{', ...' if len(self.sources) > 6 else ''})")
        if (entry.width, entry.height) != (ds.width, ds.height):
            raise SatsrError(f"{path} is {ds.width}x{ds.height} px but split file {where} "
                             f"describes {entry.name} as {entry.width}x{entry.height}")
        t = tuple(ds.transform)[:6]
        px = max(abs(t[0]), abs(t[4]), 1e-12)
        if any(abs(a - b) > 0.01 * px for a, b in zip(t, entry.transform, strict=False)):
            raise SatsrError(f"{path} has another transform than {entry.name} in split file "
                             f"{where} (a different raster with the same name?)")
        crs = ds.crs.to_string() if ds.crs else None
        if (crs is None) != (entry.crs is None) or (
                crs is not None and entry.crs is not None
                and rasterio.crs.CRS.from_user_input(entry.crs) != ds.crs):
            raise SatsrError(f"{path} has CRS {crs or 'none'} but split file {where} "
                             f"describes {entry.name} in {entry.crs or 'none'} (a different "
                             f"raster with the same name?)")
        return entry

    def blocks_for(self, source: int, entry: SourceSplit) -> list[Block]:
        """Block objects (with their split) of one source, in file order."""
        return [Block(source, c, r, w, h, split=sp) for c, r, w, h, sp in entry.blocks]


def _whole(v: Any, what: str) -> int:
    """A JSON integer (not true/false, not 2.5, not "256")."""
    if type(v) is not int:
        raise ValueError(f"{what} {v!r} is not a whole number")
    return v


def _number(v: Any, what: str) -> float:
    """A JSON number (not true/false, not a string)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} {v!r} is not a number")
    return float(v)


Rect = tuple[int, int, int, int, str]


def _overlap(blocks: Sequence[Rect]) -> tuple[Rect, Rect] | None:
    """Two blocks that share a pixel (a sweep along columns), or None."""
    order = sorted(blocks, key=lambda b: (b[0], b[1]))
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b[0] >= a[0] + a[2]:
                break
            if b[1] < a[1] + a[3] and a[1] < b[1] + b[3]:
                return a, b
    return None


def plan_split(paths: Sequence[str | Path], block: int, fractions: Sequence[float],
               seed: int) -> SplitFile:
    """A new split of `paths`: a grid of ~`block`-px blocks per raster, stratified by source.

    Each source's blocks are shuffled (seeded) and dealt to the split furthest below its share
    of that source's area, so every source with at least three blocks has train, val and test
    area in about the given fractions (rasters with fewer blocks give train first).
    """
    fr = parse_split(list(fractions))
    if block < 8:
        raise SatsrError(f"block side must be at least 8 px, not {block}")
    sources = []
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        raise SatsrError("two sources share a file name; a split file matches sources by name")
    for i, p in enumerate(paths):
        with gdal_env(), open_raster(p) as ds:
            cells = [(c, r, w, h) for r, h in axis_cuts(ds.height, block)
                     for c, w in axis_cuts(ds.width, block)]
            rng = np.random.default_rng([seed, i])
            order = rng.permutation(len(cells))
            total = float(sum(w * h for _, _, w, h in cells))
            got = [0.0, 0.0, 0.0]
            active = [k for k, f in enumerate(fr) if f > 0]
            chosen: list[int] = []
            for ci in order:  # each block to the split furthest below its share of the area
                k = max(active, key=lambda j: (fr[j] * total - got[j], -j))
                chosen.append(k)
                got[k] += cells[ci][2] * cells[ci][3]
            for k in active:  # a split left empty takes a block from the most populous one
                if k not in chosen and len(cells) >= len(active):
                    donor = max(active, key=lambda j: (chosen.count(j), -j))
                    chosen[len(chosen) - 1 - chosen[::-1].index(donor)] = k
            split_of = {int(ci): SPLITS[k] for ci, k in zip(order, chosen, strict=True)}
            crs = ds.crs.to_string() if ds.crs else None
            sources.append(SourceSplit(Path(p).name, ds.width, ds.height, crs,
                                       tuple(ds.transform)[:6],
                                       [(*cells[k], split_of[k]) for k in range(len(cells))]))
    return SplitFile(block, fr, seed, sources)
