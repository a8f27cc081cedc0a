"""`satsr eval --metric band-psnr,sam,consistency`: multispectral scores beside LPIPS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli, write_dataset

from satsr.data.degrade import Degradation
from satsr.evaluation import scoring as ev


@pytest.fixture(scope="module")
def rgbn(shared: Path, tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ms"), shared / "naip_rgbn_5m.tif", 64,
                         {"train": 1, "test": 3}, bands=[1, 2, 3, 4])


def test_band_psnr_sam_and_consistency_per_method(rgbn: Path) -> None:
    samples, total, scaling, _ = ev.dataset_samples(rgbn)
    res = ev.score_samples(samples, [ev.classical_method("bicubic", 4),
                                     ev.classical_method("nearest", 4)],
                           ["psnr", "band-psnr", "sam", "consistency"], scaling, 4, [0, 1, 2],
                           total=total, progress=False)
    assert res.metrics == ["psnr", "psnr-b1", "psnr-b2", "psnr-b3", "psnr-b4", "sam",
                           "consistency"]
    s = res.summary()
    for m in ("bicubic", "nearest"):
        assert all(len(res.values[m][k]) == 3 for k in res.metrics)
        assert 0 < s[m]["sam"][0] < 30
    # bicubic explains its LR better than nearest does, and the columns say higher is better
    assert s["bicubic"]["consistency"][0] > s["nearest"]["consistency"][0]
    assert res.best()["consistency"] == ["bicubic"] and res.best()["psnr-b4"] == ["bicubic"]
    # the consistency of an exact inverse would be infinite: HR itself degraded is the LR
    hr = np.stack([x.hr for x in ev.dataset_samples(rgbn)[0]])
    deg = Degradation.resolve("bicubic", 4)
    lr = ev._consistency(hr, deg(__import__("torch").from_numpy(hr)).clamp(-1, 1).numpy(),
                         deg, 0, 0)
    assert all(v > 60 for v in lr)


def test_cli_table_and_pairs_refuse_consistency(rgbn: Path, capsys) -> None:
    code, out, err = run_cli(["eval", str(rgbn), "--metric", "band-psnr,sam,consistency",
                              "--no-progress"], capsys)
    assert code == 0, err
    assert "psnr-b4" in out and "sam" in out and "consistency" in out
    chip = next((rgbn / "chips" / "test").glob("*.tif"))
    code, _, err = run_cli(["eval", "--pred", str(chip), "--ref", str(chip), "--metric",
                            "consistency"], capsys)
    assert code == 2 and "no LR" in err and len(err.strip().splitlines()) == 1
