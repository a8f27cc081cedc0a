"""Where chips may be cut: block split, AOI, validity scan and the random window sampler.

Spatially disjoint splits
-------------------------
Every source is cut into a grid of *blocks* (side >= the chip size; the remainder of the
raster is spread evenly over the blocks so no strip is wasted). Whole blocks, pooled over all
sources, are assigned to train / val / test in proportion to their usable area, and a chip is
only ever cut wholly inside one block. Two chips of different splits therefore lie in
different blocks and cannot share a single pixel, whatever the random offsets.

Usable area
-----------
A chip position (top-left pixel) is usable when at most `max_nodata` of its pixels are masked
(nodata value, alpha band, internal mask, NaN, or a user `--nodata` value) and, with an AOI,
every one of its pixels lies wholly inside the AOI. Positions are counted per block from an
integral image of the block's invalid pixels, so memory is bounded by the block size, never
by the raster's size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
import shapely.affinity
import shapely.errors
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from rasterio.windows import Window
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from satsr.data.index import SPLITS
from satsr.data.raster import read_window, valid_mask
from satsr.errors import SatsrError

#: Largest nominal block side (pixels) chosen automatically; keeps a block's scan small.
MAX_AUTO_BLOCK = 1024
#: The automatic block side is the largest multiple of the chip size giving at least this
#: many blocks over all sources (so that a 10 % split still gets a block or two).
MIN_AUTO_BLOCKS = 16


@dataclass
class Block:
    """A rectangle of one source in which chips of a single split are cut."""

    source: int  # index into the list of sources
    col: int
    row: int
    width: int
    height: int
    usable: int = 0  # number of usable chip positions inside the block
    #: usable area in pixels: the block's pixels times the usable fraction of its positions.
    #: Splits and chip counts follow this (not `usable`, which would favour blocks whose side
    #: is well above the chip size: a block exactly one chip wide has a single position).
    area: float = 0.0
    scanned: bool = False  # True when `usable` came from a validity scan (not all valid)
    split: str = ""

    @property
    def window(self) -> Window:
        return Window(self.col, self.row, self.width, self.height)

    def positions(self, size: int) -> int:
        """How many chip positions fit in the block, ignoring validity."""
        return max(0, self.width - size + 1) * max(0, self.height - size + 1)

    def set_usable(self, usable: int, size: int) -> None:
        """Record the usable positions and the usable area they imply."""
        self.usable = int(usable)
        total = self.positions(size)
        self.area = self.width * self.height * (self.usable / total) if total else 0.0


def parse_split(spec: str | Sequence[float]) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1); fractions of area for train, val and test."""
    try:
        parts = [float(s) for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    except ValueError as exc:
        raise SatsrError(f"split takes three fractions like 0.8,0.1,0.1, not {spec!r}",
                         option="split") from exc
    if len(parts) != 3 or any(not math.isfinite(p) or p < 0 for p in parts) or sum(parts) <= 0:
        raise SatsrError(f"split takes three non-negative fractions like 0.8,0.1,0.1, "
                         f"not {spec!r}", option="split")
    total = sum(parts)
    if abs(total - 1.0) > 1e-6:
        raise SatsrError(f"split fractions must add up to 1 (got {total:g} from {spec!r})",
                         option="split")
    return (parts[0], parts[1], parts[2])


def axis_cuts(length: int, nominal: int) -> list[tuple[int, int]]:
    """Cut [0, length) into max(1, length // nominal) near-equal (start, size) pieces."""
    n = max(1, length // nominal)
    edges = [round(i * length / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(n)]


def block_grid(source: int, width: int, height: int, nominal: int) -> list[Block]:
    """The blocks of one source, row-major, for a nominal block side."""
    return [Block(source, c, r, w, h)
            for r, h in axis_cuts(height, nominal) for c, w in axis_cuts(width, nominal)]


def choose_block(shapes: Sequence[tuple[int, int]], size: int) -> int:
    """Nominal block side: the largest multiple of `size` (<= MAX_AUTO_BLOCK, or `size`)
    that still yields MIN_AUTO_BLOCKS blocks over all sources (else the chip size itself)."""
    best = size
    for m in range(2, max(2, MAX_AUTO_BLOCK // size + 1)):
        side = m * size
        n = sum(max(1, w // side) * max(1, h // side) for w, h in shapes)
        if n >= MIN_AUTO_BLOCKS:
            best = side
    return best


def assign_splits(blocks: Sequence[Block], fractions: Sequence[float],
                  rng: np.random.Generator) -> None:
    """Give each usable block a split so usable area per split follows `fractions`.

    Blocks are visited in a seeded random order; each goes to the split furthest below its
    target area, except that the last blocks are kept for splits with a non-zero fraction
    that would otherwise get none.
    """
    order = rng.permutation(len(blocks))
    total = float(sum(b.area for b in blocks))
    target = [f * total for f in fractions]
    got = [0.0] * len(SPLITS)
    empty = {i for i, f in enumerate(fractions) if f > 0}
    for k, bi in enumerate(order):
        left = len(order) - k
        if empty and left <= len(empty):
            s = max(empty, key=lambda i: (target[i], -i))
        else:
            s = max((i for i, f in enumerate(fractions) if f > 0),
                    key=lambda i: (target[i] - got[i], -i))
        blocks[bi].split = SPLITS[s]
        got[s] += blocks[bi].area
        empty.discard(s)


def allocate(n: int, weights: Sequence[float]) -> list[int]:
    """Split the integer `n` in proportion to `weights` (largest remainder, ties by order)."""
    w = np.asarray(weights, np.float64)
    if n <= 0 or w.sum() <= 0:
        return [0] * len(w)
    quota = n * w / w.sum()
    out = np.floor(quota).astype(np.int64)
    rest = n - int(out.sum())
    if rest > 0:
        order = sorted(range(len(w)), key=lambda i: (-(quota[i] - out[i]), i))
        for i in order[:rest]:
            out[i] += 1
    return [int(v) for v in out]


def allocate_systematic(n: int, weights: Sequence[float] | np.ndarray,
                        rng: np.random.Generator) -> list[int]:
    """Split `n` in proportion to `weights` by systematic sampling with a random start.

    Each item gets the floor or the ceiling of its quota, the ceiling with probability equal
    to the quota's fractional part, so small counts spread over many blocks without favouring
    the first ones (largest-remainder ties would always go to the same blocks).
    """
    w = np.asarray(weights, np.float64)
    if n <= 0 or w.sum() <= 0:
        return [0] * len(w)
    cum = np.concatenate([[0.0], np.cumsum(n * w / w.sum())])
    cum[-1] = n  # no rounding drift at the end
    edges = np.floor(cum + rng.random())
    return [int(v) for v in np.diff(edges)]


def allocate_capped(n: int, weights: Sequence[float], caps: Sequence[int],
                    rng: np.random.Generator) -> list[int]:
    """`allocate_systematic`, but no item gets more than its cap; what a full item cannot
    take goes to the others in proportion to their weights. Needs sum(caps) >= n."""
    w = np.asarray(weights, np.float64)
    cap = np.asarray(caps, np.int64)
    if n > int(cap.sum()):
        raise ValueError(f"cannot place {n} items in a total capacity of {int(cap.sum())}")
    out = np.zeros(len(w), np.int64)
    left = n
    while left > 0:  # each round places at least one item
        room = cap - out
        add = np.minimum(allocate_systematic(left, np.where(room > 0, w, 0.0), rng), room)
        if add.sum() == 0:  # only zero-weight items have room left: fill them in order
            before = np.cumsum(room) - room
            add = np.clip(left - before, 0, room)
        out += add
        left = n - int(out.sum())
    return [int(v) for v in out]


def max_feasible(count: int, fractions: Sequence[float], capacity: Sequence[int]) -> int:
    """The largest total <= `count` whose per-split allocation fits every split's capacity."""
    def fits(n: int) -> bool:
        return all(a <= c for a, c in zip(allocate(n, fractions), capacity, strict=True))

    lo, hi = 0, min(count, sum(capacity))
    while lo < hi:  # allocation grows (almost) monotonically with n: binary search
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


# --------------------------------------------------------------------------------------- AOI

def read_aoi(path: str | Path) -> tuple[BaseGeometry, CRS]:
    """Read a GeoJSON file of polygon(s); returns their union and its CRS.

    Coordinates are EPSG:4326 per RFC 7946 unless the file carries a (2008-style) `crs`
    member naming another CRS.
    """
    p = Path(path)
    if not p.is_file():
        raise SatsrError(f"AOI file not found: {p}")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SatsrError(f"AOI {p} is not valid GeoJSON ({str(exc).splitlines()[0]})") from exc
    if not isinstance(doc, dict) or "type" not in doc:
        raise SatsrError(f"AOI {p} is not valid GeoJSON (no 'type')")
    crs = CRS.from_epsg(4326)
    if isinstance(doc.get("crs"), dict):
        try:
            crs = CRS.from_user_input(doc["crs"]["properties"]["name"])
        except (KeyError, TypeError, CRSError) as exc:
            raise SatsrError(f"AOI {p} names a CRS that is not understood: {doc['crs']}") from exc
    geoms = _geometries(doc)
    polys: list[BaseGeometry] = []
    try:
        for g in geoms:
            geom = shape(g)
            if geom.is_empty:
                continue
            if geom.geom_type not in ("Polygon", "MultiPolygon"):
                raise SatsrError(f"AOI {p} must hold polygons, found a {geom.geom_type}")
            if not geom.is_valid:
                raise SatsrError(f"AOI {p} has an invalid polygon "
                                 f"({explain_validity(geom)})")
            polys.append(geom)
    except SatsrError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError,
            shapely.errors.GEOSException) as exc:
        raise SatsrError(f"AOI {p} is not valid GeoJSON ({exc})") from exc
    if not polys:
        raise SatsrError(f"AOI {p} holds no polygon")
    return shapely.union_all(polys), crs


def _geometries(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The geometry objects of a GeoJSON FeatureCollection, Feature or geometry."""
    kind = doc.get("type")
    if kind == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list):
            raise SatsrError("AOI FeatureCollection has no 'features' list")
        return [g for f in feats for g in _geometries(f)]
    if kind == "Feature":
        g = doc.get("geometry")
        return [g] if g else []
    if kind == "GeometryCollection":
        return list(doc.get("geometries") or [])
    return [doc]


def aoi_in_pixels(aoi: BaseGeometry, aoi_crs: CRS, ds: rasterio.io.DatasetReader) -> BaseGeometry:
    """The AOI in the pixel coordinates (col, row) of `ds`."""
    geom = aoi
    if ds.crs != aoi_crs:
        # densify first so long edges follow the reprojection's curvature
        minx, miny, maxx, maxy = aoi.bounds
        step = max(maxx - minx, maxy - miny) / 256 or 1.0
        geom = shape(transform_geom(aoi_crs, ds.crs, mapping(shapely.segmentize(aoi, step))))
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
    inv = ~ds.transform
    return shapely.affinity.affine_transform(geom, [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff])


# ---------------------------------------------------------------------------- validity scan

def _window_sums(bad: np.ndarray, size: int) -> np.ndarray:
    """Number of True pixels of every size x size window of `bad` (top-left indexed)."""
    h, w = bad.shape
    s = np.zeros((h + 1, w + 1), np.int32)
    np.cumsum(bad, axis=0, dtype=np.int32, out=s[1:, 1:])
    np.cumsum(s[1:, 1:], axis=1, out=s[1:, 1:])
    return s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]


@dataclass
class Scanner:
    """Finds the usable chip positions of a block of one source."""

    ds: rasterio.io.DatasetReader
    bands: list[int]
    size: int
    max_invalid: int  # most masked pixels a chip may hold
    nodata: float | None = None  # user value for files that declare none
    read_data: bool = False  # the mask needs the pixel values (NaN, user nodata)
    aoi_px: BaseGeometry | None = None

    def usable(self, block: Block) -> tuple[np.ndarray, np.ndarray]:
        """(ok, invalid): per position whether a chip may start there, and its masked count."""
        win = block.window
        data = read_window(self.ds, self.bands, win) if self.read_data else None
        bad = ~valid_mask(self.ds, win, data, self.nodata)
        del data
        invalid = _window_sums(bad, self.size)
        ok = invalid <= self.max_invalid
        if self.aoi_px is not None:
            ok &= _window_sums(~self._inside(block), self.size) == 0
        return ok, invalid

    def _inside(self, block: Block) -> np.ndarray:
        """Pixels of the block whose whole square lies inside the AOI."""
        shp = (block.height, block.width)
        tr = Affine.translation(block.col, block.row)
        clip = box(block.col - 1, block.row - 1, block.col + block.width + 1,
                   block.row + block.height + 1)
        assert self.aoi_px is not None  # called only with an AOI
        geom = self.aoi_px.intersection(clip)
        if geom.is_empty:
            return np.zeros(shp, bool)
        centre = rasterize([geom], out_shape=shp, transform=tr, fill=0, default_value=1,
                           all_touched=False, dtype="uint8").astype(bool)
        edge = geom.boundary
        if not edge.is_empty:
            touched = rasterize([edge], out_shape=shp, transform=tr, fill=0, default_value=1,
                                all_touched=True, dtype="uint8").astype(bool)
            centre &= ~touched
        return centre


def sample_block(block: Block, n: int, size: int, rng: np.random.Generator,
                 scanner: Scanner | None) -> list[tuple[int, int, int]]:
    """`n` distinct random chip positions in `block`: (col, row, masked pixel count)."""
    if n <= 0:
        return []
    pw = block.width - size + 1
    if scanner is None or not block.scanned:
        flat = rng.choice(block.positions(size), size=n, replace=False)
        return [(block.col + int(i % pw), block.row + int(i // pw), 0) for i in flat]
    ok, invalid = scanner.usable(block)
    cand = np.flatnonzero(ok.ravel())
    flat = cand[rng.choice(cand.size, size=n, replace=False)]
    inv = invalid.ravel()
    return [(block.col + int(i % pw), block.row + int(i // pw), int(inv[i])) for i in flat]
