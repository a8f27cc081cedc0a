"""`satsr make-dataset` on the real rasters of tests/data (windows of ../shared/data)."""

from __future__ import annotations

import hashlib
import json
import math
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform, transform_geom
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import Polygon, box, mapping, shape

from satsr.cli.app import main
from satsr.data.index import DatasetIndex
from satsr.data.make_dataset import BandHistograms, SatsrWarning, make_dataset
from satsr.data.sampling import Block, allocate, assign_splits, axis_cuts
from satsr.errors import SatsrError


def _features(out: Path) -> list[dict]:
    return json.loads((out / "index.geojson").read_text())["features"]


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in-process; return (exit code, stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def landsat_ds(shared, tmp_path_factory) -> Path:
    """A small dataset from the Landsat 7 scene with its nodata collar."""
    out = tmp_path_factory.mktemp("landsat") / "ds"
    make_dataset([shared / "landsat7_bahamas_300m.tif"], out, size=48, count=30, seed=3)
    return out


# ----------------------------------------------------------------------- georeferencing

def test_chips_carry_crs_transform_and_pixels_of_their_source_window(landsat_ds, shared):
    idx = DatasetIndex.read(landsat_ds)
    assert len(idx.chips) == 30 and idx.band_count == 3 and idx.dtype == "uint8"
    feats = _features(landsat_ds)
    with rasterio.open(shared / "landsat7_bahamas_300m.tif") as src:
        for chip, feat in zip(idx.chips, feats, strict=True):
            win = Window(*chip.window)
            with rasterio.open(chip.path) as c:
                assert c.crs == src.crs and chip.crs == "EPSG:32618"
                assert c.transform == window_transform(win, src.transform)  # exactly
                assert c.count == 3 and c.dtypes[0] == "uint8"
                np.testing.assert_array_equal(c.read(), src.read(window=win))
                # the EPSG:4326 footprint is the chip's bounds reprojected: every corner
                # within 0.01 chip pixel (a pixel's side in degrees, measured at the chip)
                fp = shape(feat["geometry"])
                ref = shape(transform_geom(src.crs, "EPSG:4326", mapping(box(*c.bounds))))
                lon, lat = transform(src.crs, "EPSG:4326", *zip(
                    c.transform @ (0, 0), c.transform @ (1, 0), c.transform @ (0, 1),
                    strict=True))
                px_deg = min(math.hypot(lon[k] - lon[0], lat[k] - lat[0]) for k in (1, 2))
                assert fp.hausdorff_distance(ref) <= 0.01 * px_deg
            assert feat["properties"]["georeferenced"] is True
            assert round(src.res[0], 2) == 300.04
            assert chip.gsd == pytest.approx(src.res, rel=0, abs=0.01 * min(src.res))


def test_landsat_collar_never_enters_a_chip_by_default(landsat_ds, shared):
    with rasterio.open(shared / "landsat7_bahamas_300m.tif") as src:
        for chip in DatasetIndex.read(landsat_ds).chips:
            assert (src.dataset_mask(window=Window(*chip.window)) == 255).all()


def test_max_nodata_lets_chips_hold_up_to_that_fraction_of_collar(shared, tmp_path):
    src_path = shared / "landsat7_bahamas_300m.tif"
    out = tmp_path / "ds"
    make_dataset([src_path], out, size=48, count=20, seed=0, max_nodata=0.25)
    fracs = []
    with rasterio.open(src_path) as src:
        for chip in DatasetIndex.read(out).chips:
            fracs.append((src.dataset_mask(window=Window(*chip.window)) == 0).mean())
            with rasterio.open(chip.path) as c:
                assert c.nodata == 0
    assert max(fracs) <= 0.25 and max(fracs) > 0


# --------------------------------------------------------------------------- splitting

def _overlap(a: list[int], b: list[int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_val_and_test_chips_never_share_a_pixel_with_train_chips(shared, tmp_path):
    out = tmp_path / "ds"
    s = make_dataset([shared / "netherlands_aerial_0.25m.tif"], out, size=32, count=150, seed=5)
    assert s.counts == {"train": 120, "val": 15, "test": 15}
    chips = DatasetIndex.read(out).chips
    by = {sp: [list(c.window) for c in chips if c.split == sp] for sp in ("train", "val", "test")}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not any(_overlap(x, y) for x, y in product(by[a], by[b])), (a, b)
    # chips are random crops (not a fixed grid) and distinct
    assert len({tuple(w) for w in by["train"]}) == 120
    assert len({w[0] % 32 for w in by["train"]}) > 4


def test_block_split_follows_fractions_and_keeps_every_requested_split():
    blocks = [Block(0, i * 10, 0, 10, 10, usable=100, area=100.0) for i in range(40)]
    assign_splits(blocks, (0.8, 0.1, 0.1), np.random.default_rng(0))
    got = [sum(b.split == sp for b in blocks) for sp in ("train", "val", "test")]
    assert got == [32, 4, 4]
    few = [Block(0, i * 10, 0, 10, 10, usable=100, area=100.0) for i in range(3)]
    assign_splits(few, (0.98, 0.01, 0.01), np.random.default_rng(0))
    assert sorted(b.split for b in few) == ["test", "train", "val"]
    assert allocate(10, [0.8, 0.1, 0.1]) == [8, 1, 1] and sum(allocate(7, [1, 1, 1])) == 7
    assert axis_cuts(383, 128) == [(0, 192), (192, 191)]


def test_count_is_shared_between_sources_by_usable_area(shared, tmp_path):
    a, b = shared / "neon" / "HARV_001.tif", shared / "neon" / "OSBS_005.tif"
    s = make_dataset([a, b], tmp_path / "ds", size=64, count=16, seed=0, split="1,0,0")
    per = [sum(v.values()) for v in s.per_source.values()]
    assert sum(per) == 16 and abs(per[0] - per[1]) <= 4


# ------------------------------------------------------------------------ AOI and nodata

def _aoi_file(path: Path, geom: Polygon, crs: str | None = None) -> Path:
    doc: dict = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": mapping(geom)}]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def test_every_chip_lies_wholly_inside_the_aoi(shared, tmp_path):
    src_path = shared / "netherlands_aerial_0.25m.tif"
    with rasterio.open(src_path) as src:
        left, b, r, t = src.bounds
        tri = Polygon([(left + 20, b + 20), (r - 20, b + 60), (left + 100, t - 10)])
        crs = src.crs
    # in EPSG:4326 (the GeoJSON default) ...
    aoi4326 = shape(transform_geom(crs, "EPSG:4326", mapping(tri)))
    out = tmp_path / "a"
    make_dataset([src_path], out, size=32, count=12, seed=1, split="1,0,0",
                 aoi=_aoi_file(tmp_path / "a.geojson", aoi4326))
    for f in _features(out):
        assert aoi4326.buffer(1e-7).contains(shape(f["geometry"]))
    # ... and in the raster's own CRS, named by the file: exact containment in pixels
    out = tmp_path / "b"
    make_dataset([src_path], out, size=32, count=12, seed=1, split="1,0,0",
                 aoi=_aoi_file(tmp_path / "b.geojson", tri, crs.to_string()))
    with rasterio.open(src_path) as src:
        for chip in DatasetIndex.read(out).chips:
            c, r_, w, h = chip.window
            xs, ys = rasterio.transform.xy(src.transform, [r_, r_ + h, r_, r_ + h],
                                           [c, c, c + w, c + w], offset="ul")
            assert all(tri.covers(shape({"type": "Point", "coordinates": p}))
                       for p in zip(xs, ys, strict=True))


def test_aoi_that_misses_the_raster_or_is_not_geojson_is_an_error(shared, tmp_path):
    src_path = shared / "netherlands_aerial_0.25m.tif"
    far = _aoi_file(tmp_path / "far.geojson", box(100, -10, 101, -9))
    with pytest.raises(SatsrError, match="does not overlap"):
        make_dataset([src_path], tmp_path / "x", size=32, count=5, aoi=far)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(SatsrError, match="not valid GeoJSON"):
        make_dataset([src_path], tmp_path / "x", size=32, count=5, aoi=bad)
    assert not (tmp_path / "x").exists()


def test_manila_black_corners_are_rejected_with_nodata_0(shared, tmp_path):
    src_path = shared / "manila_aerial_0.1m.tif"
    out = tmp_path / "ds"
    make_dataset([src_path], out, size=128, count=10, seed=2, nodata=0, block=256)
    with rasterio.open(src_path) as src:
        # the corners are really there (undeclared): the test would catch a sampler ignoring them
        corner = src.read(window=Window(0, 0, 64, 64))
        assert src.nodata is None and (corner == 0).all(axis=0).mean() > 0.5
        for chip in DatasetIndex.read(out).chips:
            data = src.read(window=Window(*chip.window))
            assert not (data == 0).all(axis=0).any()
            with rasterio.open(chip.path) as c:
                assert c.nodata == 0


def test_alpha_band_is_a_mask_not_a_band_to_learn(shared, tmp_path):
    src_path = shared / "bali_drone_rgba_0.35m.tif"
    out = tmp_path / "ds"
    make_dataset([src_path], out, size=64, count=10, seed=0)
    idx = DatasetIndex.read(out)
    assert idx.band_count == 3 and idx.meta["bands"] == [1, 2, 3]
    with rasterio.open(src_path) as src:
        assert (src.read(4) == 0).any()
        for chip in idx.chips:
            assert (src.read(4, window=Window(*chip.window)) == 255).all()
            with rasterio.open(chip.path) as c:
                assert c.count == 3


# ------------------------------------------------------------------ bands and data types

def test_naip_keeps_its_four_bands_and_bands_selects_some(shared, tmp_path):
    src_path = shared / "naip_rgbn_5m.tif"
    make_dataset([src_path], tmp_path / "all", size=64, count=6, seed=0)
    assert DatasetIndex.read(tmp_path / "all").band_count == 4
    make_dataset([src_path], tmp_path / "sel", size=64, count=6, seed=0, bands=[4, 1])
    idx = DatasetIndex.read(tmp_path / "sel")
    assert idx.band_count == 2 and idx.meta["bands"] == [4, 1]
    with rasterio.open(src_path) as src:
        chip = idx.chips[0]
        with rasterio.open(chip.path) as c:
            np.testing.assert_array_equal(c.read(), src.read([4, 1], window=Window(*chip.window)))
    with pytest.raises(SatsrError, match="out of range"):
        make_dataset([src_path], tmp_path / "bad", size=64, count=10, bands=[5])


def test_uint16_stats_from_histograms_match_the_training_pixels(shared, tmp_path):
    out = tmp_path / "ds"
    make_dataset([shared / "landsat8_rgb16_60m.tif"], out, size=64, count=12, seed=4)
    idx = DatasetIndex.read(out)
    assert idx.dtype == "uint16"
    px = np.concatenate([rasterio.open(c.path).read().reshape(3, -1)
                         for c in idx.split("train")], axis=1)
    for b, st in enumerate(idx.meta["stats"]):
        x = px[b]
        assert st["min"] == x.min() and st["max"] == x.max() and st["count"] == x.size
        assert st["mean"] == pytest.approx(x.mean()) and st["std"] == pytest.approx(x.std())
        assert st["p0.1"] == np.percentile(x, 0.1, method="inverted_cdf")
        assert st["p99.9"] == np.percentile(x, 99.9, method="inverted_cdf")
    sc = idx.scaling
    assert sc.dtype == "uint16"
    assert list(sc.lo) == [s["p0.1"] for s in idx.meta["stats"]]
    assert list(sc.hi) == [s["p99.9"] for s in idx.meta["stats"]]


def test_float32_with_nan_nodata_works(shared, tmp_path):
    src_path = tmp_path / "refl.tif"
    with rasterio.open(shared / "landsat8_rgb16_60m.tif") as src:
        data = src.read().astype(np.float32) / 10000
        profile = src.profile | {"dtype": "float32", "nodata": None, "compress": "deflate"}
    data[:, :100, :100] = np.nan
    with rasterio.open(src_path, "w", **profile) as dst:
        dst.write(data)
    out = tmp_path / "ds"
    make_dataset([src_path], out, size=64, count=12, seed=0)
    idx = DatasetIndex.read(out)
    assert idx.dtype == "float32"
    px = np.concatenate([rasterio.open(c.path).read().reshape(3, -1)
                         for c in idx.split("train")], axis=1)
    assert np.isfinite(px).all()
    for b, st in enumerate(idx.meta["stats"]):
        span = st["max"] - st["min"]  # percentiles are fine-histogram bin centres
        for q in (0.1, 99.9):
            ref = np.percentile(px[b], q, method="inverted_cdf")
            assert st[f"p{q}"] == pytest.approx(ref, abs=span * 1e-4)
    assert idx.scaling.dtype == "float32"


def test_histogram_percentiles_for_int16():
    h = BandHistograms("int16", 1)
    x = np.arange(-500, 500, dtype=np.int16).reshape(1, 10, 100)
    h.add(x)
    st = h.stats([1])[0]
    assert st["min"] == -500 and st["max"] == 499 and st["p0.1"] == -500 and st["p99.9"] == 498


def test_raster_shorter_than_size_is_an_error_but_fine_at_128(shared, tmp_path):
    src_path = shared / "colorado_aerial_0.15m.tif"
    with pytest.raises(SatsrError, match="smaller than size 256"):
        make_dataset([src_path], tmp_path / "x", size=256, count=4)
    # 383x232 holds two disjoint 128-px blocks: a three-way split cannot be met
    with pytest.raises(SatsrError, match="at most 6 chips could be cut"):
        make_dataset([src_path], tmp_path / "x", size=128, count=10)
    assert not (tmp_path / "x").exists()
    s = make_dataset([src_path], tmp_path / "ok", size=128, count=10, split="0.5,0.5,0")
    assert s.counts == {"train": 5, "val": 5, "test": 0}


def test_raster_without_crs_warns_and_flags_pixel_footprints(shared, tmp_path):
    src_path = tmp_path / "plain.tif"
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as src:
        data = src.read(window=Window(0, 0, 300, 300))
    with rasterio.open(src_path, "w", driver="GTiff", width=300, height=300, count=3,
                       dtype="uint8") as dst:
        dst.write(data)
    out = tmp_path / "ds"
    with pytest.warns(SatsrWarning, match="no CRS"):
        make_dataset([src_path], out, size=32, count=6, seed=0)
    f = _features(out)[0]
    assert f["properties"]["crs"] is None and f["properties"]["georeferenced"] is False
    c, r, w, h = f["properties"]["window"]
    assert shape(f["geometry"]).equals(box(c, r, c + w, r + h))
    with rasterio.open(out / f["properties"]["path"]) as chip:
        assert chip.crs is None


# ------------------------------------------------------------ determinism and the CLI

def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_arguments_and_seed_give_byte_identical_output(shared, tmp_path):
    args = dict(size=32, count=12, seed=7, max_nodata=0.1)
    src = [shared / "landsat7_bahamas_300m.tif"]
    make_dataset(src, tmp_path / "a", **args)
    make_dataset(src, tmp_path / "b", **args)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(a) == 14 and a == b  # 12 chips, the index and satsr's .satsr-output marker
    make_dataset(src, tmp_path / "c", **(args | {"seed": 8}))
    assert _digest(tmp_path / "c") != a


def test_cli_cuts_a_dataset_and_prints_the_summary(shared, tmp_path, capsys):
    out = tmp_path / "ds"
    code = 0
    try:
        main(["make-dataset", str(shared / "netherlands_aerial_0.25m.tif"), "-o", str(out),
              "--size", "32", "--count", "10", "--seed", "1"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert code == 0 and "train" in captured.out and "8" in captured.out
    assert len(DatasetIndex.read(out).chips) == 10


@pytest.mark.parametrize("case", ["missing", "not_raster", "bands", "small", "count", "split"])
def test_cli_bad_input_is_one_error_line_and_writes_nothing(case, shared, tmp_path, capsys):
    txt = tmp_path / "notes.tif"
    txt.write_text("hello")
    src = str(shared / "netherlands_aerial_0.25m.tif")
    args = {
        "missing": [str(tmp_path / "nope.tif")],
        "not_raster": [str(txt)],
        "bands": [src, "--bands", "1,9"],
        "small": [str(shared / "colorado_aerial_0.15m.tif")],
        "count": [src, "--count", "100000", "--size", "256"],
        "split": [src, "--split", "0.8,0.3"],
    }[case]
    out = tmp_path / "out"
    code, err = _run_cli(["make-dataset", *args, "-o", str(out)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("satsr: error: "), err
    if case == "count":
        assert "at most" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_cli_refuses_a_non_empty_output_without_overwrite(shared, tmp_path, capsys):
    src = str(shared / "netherlands_aerial_0.25m.tif")
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    base = ["make-dataset", src, "-o", str(out), "--size", "32", "--count", "6"]
    code, err = _run_cli(base, capsys)
    assert code == 2 and "--overwrite" in err and (out / "keep.txt").exists()
    # issue 19: --overwrite never deletes a folder satsr did not write
    code, err = _run_cli([*base, "--overwrite"], capsys)
    assert code == 2 and "not written by satsr" in err and (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    assert _run_cli(base, capsys)[0] == 0  # empty: made; then satsr's own: replaced
    code, err = _run_cli([*base, "--overwrite", "--seed", "4"], capsys)
    assert code == 0, err
    assert len(DatasetIndex.read(out).chips) == 6 and (out / ".satsr-output").is_file()


def test_chip_counts_follow_area_not_the_number_of_positions():
    from satsr.data.sampling import allocate_capped

    # a block one chip wide has a single position but as much area as its neighbour
    a, b = Block(0, 0, 0, 32, 32), Block(1, 0, 0, 63, 32)
    a.set_usable(a.positions(32), 32)
    b.set_usable(b.positions(32), 32)
    assert (a.usable, b.usable) == (1, 32) and b.area == pytest.approx(63 * 32)
    got = allocate_capped(20, [a.area, b.area], [a.usable, b.usable], np.random.default_rng(0))
    assert got[0] == 1 and sum(got) == 20  # capped at its one position, the rest moves over
    got = allocate_capped(300, [1.0, 1.0, 0.0], [1000, 1000, 5], np.random.default_rng(1))
    assert sum(got) == 300 and abs(got[0] - got[1]) <= 1 and got[2] == 0
    with pytest.raises(ValueError):
        allocate_capped(3, [1.0], [2], np.random.default_rng(0))


def test_small_and_large_sources_get_chips_in_proportion_to_their_area(shared, tmp_path):
    big, small = shared / "manila_aerial_0.1m.tif", shared / "colorado_aerial_0.15m.tif"
    # each 64-px block of manila (1024 px in tests/data) holds one chip position: 200 chips
    # stay under its 256 positions, so no cap moves chips over to the small source
    s = make_dataset([big, small], tmp_path / "ds", size=64, count=200, seed=0, block=64,
                     split=(1.0, 0.0, 0.0))
    n_big, n_small = (sum(s.per_source[str(p)].values()) for p in (big, small))
    # usable areas: 1024 x 1024 against 383 x 232 (about 11.8 to 1; the chip positions,
    # 256 against 2730, would give the small source most chips)
    with rasterio.open(big) as b, rasterio.open(small) as sm:
        want_small = 200 * sm.width * sm.height / (sm.width * sm.height + b.width * b.height)
    assert n_big + n_small == 200 and abs(n_small - want_small) <= max(1.0, 0.1 * want_small)
