"""Band samples: single-band, unit-range datasets for band-by-band models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from satsr.data.bands import estimate_scaling
from satsr.data.bandsamples import band_samples
from satsr.data.index import DatasetIndex
from satsr.data.make_dataset import make_dataset
from satsr.errors import SatsrError


@pytest.fixture(scope="module")
def two(shared: Path, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bs")
    a = make_dataset([shared / "naip_rgbn_5m.tif"], root / "naip", size=32, count=12,
                     seed=1).out
    b = make_dataset([shared / "landsat8_rgb16_60m.tif"], root / "l8", size=32, count=9,
                     seed=1).out
    return a, b


def test_every_band_of_every_chip_becomes_a_unit_sample(two, shared: Path, tmp_path: Path
                                                        ) -> None:
    naip, l8 = two
    s = band_samples([naip, l8], tmp_path / "bs")
    idx = DatasetIndex.read(tmp_path / "bs")
    n_in = {sp: 4 * len(DatasetIndex.read(naip).split(sp)) + 3 * len(
        DatasetIndex.read(l8).split(sp)) for sp in ("train", "val", "test")}
    assert s.counts == n_in
    assert idx.band_count == 1 and idx.dtype == "float32"
    assert idx.scaling.lo == (-1.0,) and idx.scaling.hi == (1.0,)
    # a landsat sample equals its chip band scaled by the range measured on the source raster
    src = shared / "landsat8_rgb16_60m.tif"
    with rasterio.open(src) as ds:
        est = estimate_scaling(ds, [1, 2, 3])
    doc_chips = [c for c in idx.chips if Path(c.source).name == src.name]
    first = doc_chips[0]
    orig = next(c for c in DatasetIndex.read(l8).chips if c.window == first.window
                and c.split == first.split)
    with rasterio.open(orig.path) as o, rasterio.open(first.path) as u:
        raw = o.read(1).astype(np.float64)
        unit = u.read(1)
        assert u.crs == o.crs and u.transform == o.transform
    lo, hi = est.scaling.lo[0], est.scaling.hi[0]
    np.testing.assert_allclose(unit, (raw - lo) / (hi - lo) * 2 - 1, rtol=1e-5, atol=1e-6)
    assert -1.5 < float(unit.mean()) < 1.5


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SatsrError, match="at least one dataset"):
        band_samples([], tmp_path / "x")
    with pytest.raises(SatsrError, match="not a satsr dataset"):
        (tmp_path / "empty").mkdir()
        band_samples([tmp_path / "empty"], tmp_path / "y")


def test_cli_writes_the_dataset_and_refuses_bad_input_in_one_line(two, tmp_path: Path,
                                                                  capsys) -> None:
    from helpers import run_cli

    naip, _ = two
    code, out, err = run_cli(["band-samples", str(naip), "-o", str(tmp_path / "bs")], capsys)
    assert code == 0, err
    assert "single-band samples" in out and (tmp_path / "bs" / "index.geojson").is_file()
    code, _, err = run_cli(["band-samples", str(naip), "-o", str(tmp_path / "bs")], capsys)
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    (tmp_path / "nope").mkdir()
    code, _, err = run_cli(["band-samples", str(tmp_path / "nope"), "-o",
                            str(tmp_path / "x")], capsys)
    assert code == 2 and "not a satsr dataset" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
