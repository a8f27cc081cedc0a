"""Split files: one committed block split reused by every dataset (satsr.data.splitfile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
from helpers import run_cli
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from satsr.data.make_dataset import make_dataset
from satsr.data.splitfile import SplitFile, plan_split
from satsr.errors import SatsrError

ROOT = Path(__file__).resolve().parents[1]


def _crop(src: Path, dst: Path, win: Window) -> Path:
    with rasterio.open(src) as ds:
        data = ds.read(window=win)
        profile = ds.profile | {"width": int(win.width), "height": int(win.height),
                                "transform": window_transform(win, ds.transform)}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        profile["tiled"] = False
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


@pytest.fixture
def two(shared: Path, tmp_path: Path) -> list[Path]:
    """Two real rasters under their own names (a crop of each, 300 x 260 px)."""
    d = tmp_path / "src"
    d.mkdir()
    return [_crop(shared / "netherlands_aerial_0.25m.tif", d / "nl.tif", Window(0, 0, 300, 260)),
            _crop(shared / "neon" / "HARV_001.tif", d / "harv.tif", Window(0, 0, 300, 260))]


def _windows(ds_dir: Path) -> list[tuple[str, str, list[int]]]:
    doc = json.loads((ds_dir / "index.geojson").read_text())
    return [(Path(f["properties"]["source"]).name, f["properties"]["split"],
             f["properties"]["window"]) for f in doc["features"]]


def _inside(win: list[int], block: tuple[int, int, int, int, str]) -> bool:
    c, r, w, h, _ = block
    return c <= win[0] and r <= win[1] and win[0] + win[2] <= c + w and win[1] + win[3] <= r + h


def test_plan_tiles_each_raster_and_gives_every_split_area(two: list[Path]) -> None:
    plan = plan_split(two, 64, (0.7, 0.15, 0.15), seed=1)
    for s in plan.sources:
        covered = sum(w * h for _, _, w, h, _ in s.blocks)
        assert covered == s.width * s.height  # no gap, and (with the grid) no overlap
        splits = [b[4] for b in s.blocks]
        assert {"train", "val", "test"} == set(splits)
        area = {sp: sum(b[2] * b[3] for b in s.blocks if b[4] == sp) for sp in set(splits)}
        assert area["train"] / covered == pytest.approx(0.7, abs=0.1)
    assert plan_split(two, 64, (0.7, 0.15, 0.15), seed=1).to_dict() == plan.to_dict()


def test_chips_lie_inside_blocks_of_their_own_split(two: list[Path], tmp_path: Path) -> None:
    plan = plan_split(two, 64, (0.7, 0.15, 0.15), seed=2)
    f = plan.write(tmp_path / "split.json")
    make_dataset(two, tmp_path / "ds", size=32, count=60, seed=5, split_file=f)
    by_name = {s.name: s for s in SplitFile.read(f).sources}
    wins = _windows(tmp_path / "ds")
    assert {sp for _, sp, _ in wins} == {"train", "val", "test"}
    for name, split, win in wins:
        assert any(_inside(win, b) and b[4] == split for b in by_name[name].blocks)


def test_datasets_of_other_sizes_and_seeds_never_put_test_chips_on_training_area(
        two: list[Path], tmp_path: Path) -> None:
    f = plan_split(two, 64, (0.6, 0.2, 0.2), seed=3).write(tmp_path / "split.json")
    make_dataset(two, tmp_path / "a", size=48, count=40, seed=1, split_file=f)
    make_dataset(two, tmp_path / "b", size=24, count=80, seed=9, split=(0.5, 0.25, 0.25),
                 split_file=f)

    def overlaps(p: list[int], q: list[int]) -> bool:
        return (p[0] < q[0] + q[2] and q[0] < p[0] + p[2] and p[1] < q[1] + q[3]
                and q[1] < p[1] + p[3])

    a, b = _windows(tmp_path / "a"), _windows(tmp_path / "b")
    for na, sa, wa in a:
        for nb, sb, wb in b:
            if na == nb and sa != sb:
                assert not overlaps(wa, wb)
    # without the file, the two seeds draw different splits, and chips of them do overlap
    make_dataset(two, tmp_path / "c", size=48, count=40, seed=1, block=64)
    make_dataset(two, tmp_path / "d", size=24, count=80, seed=9, block=64)
    c, d = _windows(tmp_path / "c"), _windows(tmp_path / "d")
    assert any(nc == nd and sc == "test" and sd == "train" and overlaps(wc, wd)
               for nc, sc, wc in c for nd, sd, wd in d)


def test_written_split_is_reused_exactly(two: list[Path], tmp_path: Path) -> None:
    f = tmp_path / "used.json"
    make_dataset(two, tmp_path / "a", size=32, count=50, seed=4, block=96, write_split=f)
    make_dataset(two, tmp_path / "b", size=32, count=50, seed=4, split_file=f)
    assert _windows(tmp_path / "a") == _windows(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "index.geojson").read_text())["satsr"]
    assert meta["args"]["split_file"]["sha256"] == SplitFile.read(f).digest()


def test_split_file_refuses_other_rasters_in_one_line(two: list[Path], shared: Path,
                                                      tmp_path: Path, capsys) -> None:
    f = plan_split(two, 64, (0.7, 0.15, 0.15), seed=0).write(tmp_path / "split.json")
    other = tmp_path / "other"
    other.mkdir()
    same_name_other_size = _crop(shared / "netherlands_aerial_0.25m.tif", other / "nl.tif",
                                 Window(0, 0, 200, 200))
    shifted = _crop(shared / "netherlands_aerial_0.25m.tif", tmp_path / "harv.tif",
                    Window(10, 0, 300, 260))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "satsr-split", "version": 1, "block": 64}')
    cases = [
        ([str(same_name_other_size)], f, "is 200x200 px but split file"),
        ([str(shifted)], f, "another transform"),
        ([str(shared / "naip_rgbn_5m.tif")], f, "is not in split file"),
        ([str(two[0])], bad, "is malformed"),
        ([str(two[0])], tmp_path / "none.json", "split file not found"),
    ]
    for srcs, split, msg in cases:
        code, _, err = run_cli(["make-dataset", *srcs, "-o", str(tmp_path / "out"), "--size",
                                "32", "--count", "5", "--split-file", str(split)], capsys)
        assert code != 0 and msg in err and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()
    with pytest.raises(SatsrError, match="either a block side or a split file"):
        make_dataset(two, tmp_path / "x", size=32, count=5, block=64, split_file=f)


def test_the_committed_split_of_the_shared_imagery_is_well_formed() -> None:
    plan = SplitFile.read(ROOT / "examples" / "splits" / "shared.json")
    assert plan.block == 192
    names = {s.name for s in plan.sources}
    assert {"manila_aerial_0.1m.tif", "landsat8_rgb_30m_uint16.tif", "haiti_rgbn_5m.tif",
            "naip_rgbn_5m.tif", "HARV_001.tif"} <= names
    for s in plan.sources:
        assert sum(b[2] * b[3] for b in s.blocks) == s.width * s.height
        if len(s.blocks) >= 3:
            assert {b[4] for b in s.blocks} == {"train", "val", "test"}, s.name
