"""The rules that decide what a bundled model records (satsr.training.export: round,
correction strength, adaptive variant) and the paired CI of examples/paper_study.py
(satsr.evaluation.result.paired_difference)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from satsr.errors import SatsrError
from satsr.evaluation.result import mean_ci, paired_difference
from satsr.training.export import (
    OTHER_FAMILY_FLOOR_DB,
    _family_floor_db,
    _psnr_change,
    choose_round,
    choose_strength,
    choose_variant,
)


def _run_dir(tmp_path: Path, rows: list[tuple[int, float, float]], snaps: list[int]) -> Path:
    d = tmp_path / "run"
    (d / "snapshots").mkdir(parents=True)
    lines = ["iteration,psnr,l2,alex-l,vgg-l,pe-l"]
    lines += [f"{it},{psnr},0.01,{pe},{pe},{pe}" for it, psnr, pe in rows]
    (d / "val.csv").write_text("\n".join(lines) + "\n")
    (d / "val_bicubic.json").write_text(json.dumps({"psnr": 26.0, "pe-l": 0.5}))
    for it in snaps:
        (d / "snapshots" / f"ckpt-{it}.pt").write_bytes(b"")
    return d


def test_choose_round_lowest_criterion_within_the_floor_with_a_snapshot(tmp_path: Path
                                                                        ) -> None:
    d = _run_dir(tmp_path, [(0, 26.0, 0.50), (250, 25.9, 0.45), (500, 25.5, 0.30),
                            (750, 25.8, 0.40), (1000, 25.95, 0.35)], [250, 500, 750])
    # 500 is best but 0.5 dB below bicubic; 1000 is within the floor but has no snapshot
    chosen = choose_round(d, "pe-l", 0.3)
    assert chosen["iteration"] == 750 and chosen["psnr"] == 25.8 and chosen["pe-l"] == 0.40
    assert choose_round(d, "pe-l", 1.0)["iteration"] == 500
    assert choose_round(d, "psnr", 1.0)["iteration"] == 500  # lowest criterion, whatever it is


def test_choose_round_raises_a_satsr_error_when_no_round_meets_the_floor(tmp_path: Path
                                                                         ) -> None:
    d = _run_dir(tmp_path, [(0, 26.0, 0.50), (250, 25.9, 0.45), (500, 25.5, 0.30)],
                 [0, 250, 500])
    with pytest.raises(SatsrError, match="no validation round within 0.05 dB"):
        choose_round(d, "pe-l", 0.05)  # round 0 meets it but never counts
    d = _run_dir(tmp_path / "b", [(0, 26.0, 0.5), (250, 26.5, 0.4)], [])
    with pytest.raises(SatsrError, match="has a snapshot"):
        choose_round(d, "pe-l", 1.0)  # within the floor, but no snapshot was kept


def _val(rows: dict[str, dict[str, tuple[float, float]]]) -> dict[str, Any]:
    """A model_eval result: {family: {label: (vgg-l, psnr)}}, bicubic at (0.4, 30)."""
    mean: dict[str, Any] = {}
    for fam, by in rows.items():
        mean[fam] = {"bicubic": {"vgg-l": 0.4, "psnr": 30.0}}
        for label, (v, p) in by.items():
            mean[fam][label] = {"vgg-l": v, "psnr": p}
    return {"mean": mean}


def test_family_floors_and_psnr_change() -> None:
    assert _family_floor_db("bicubic", 0.3) == 0.3
    assert _family_floor_db("nearest", 0.3) == OTHER_FAMILY_FLOOR_DB == 0.5
    base = {"psnr": 30.0, "psnr-b1": 30.0, "psnr-b2": 20.0}
    row = {"psnr": 30.5, "psnr-b1": 31.0, "psnr-b2": 19.0}
    assert _psnr_change(row, base, "rgb") == pytest.approx(0.5)
    assert _psnr_change(row, base, "ms") == pytest.approx(-1.0)  # the worst band's


def test_strength_rule_keeps_the_best_vgg_l_within_the_psnr_floors() -> None:
    labels = {"m@0.5": 0.5, "m@1": 1.0}
    # full strength wins vgg-l but loses 0.4 dB on clean LR (floor 0.3): half is kept
    val = _val({"bicubic": {"m@0.5": (0.39, 30.1), "m@1": (0.36, 29.6)},
                "nearest": {"m@0.5": (0.40, 29.8), "m@1": (0.39, 29.6)}})
    c = choose_strength(val, labels, clean_floor_db=0.3)
    assert c["strength"] == 0.5 and c["within_floors"]
    assert [x["ok"] for x in c["rows"]] == [True, False]
    assert c["rows"][1]["psnr_change"]["bicubic"] == pytest.approx(-0.4)
    assert c["rows"][1]["vgg_change"]["bicubic"] == pytest.approx(-0.1)
    assert "within 0.3 dB" in c["rule"] and "0.5 dB under the other" in c["rule"]
    # within every floor, the lower mean vgg-l change wins
    val = _val({"bicubic": {"m@0.5": (0.39, 30.1), "m@1": (0.36, 29.8)},
                "nearest": {"m@0.5": (0.40, 29.8), "m@1": (0.39, 29.6)}})
    assert choose_strength(val, labels, clean_floor_db=0.3)["strength"] == 1.0
    # none within the floors: the one closest to them, said so
    val = _val({"bicubic": {"m@0.5": (0.39, 29.0), "m@1": (0.36, 28.0)},
                "nearest": {"m@0.5": (0.40, 29.0), "m@1": (0.39, 28.0)}})
    c = choose_strength(val, labels, clean_floor_db=0.3)
    assert c["strength"] == 0.5 and not c["within_floors"]


def test_strength_rule_of_band_by_band_models_reads_the_worst_band() -> None:
    bic = {"vgg-l": 0.4, "psnr": 30.0, "psnr-b1": 30.0, "psnr-b2": 30.0}
    val = {"mean": {"bicubic": {
        "bicubic": bic,
        # mean PSNR gains, but band 2 falls 0.2 dB below bicubic's (floor 0.1)
        "m@1": {"vgg-l": 0.30, "psnr": 30.5, "psnr-b1": 31.2, "psnr-b2": 29.8},
        "m@0.5": {"vgg-l": 0.35, "psnr": 30.2, "psnr-b1": 30.4, "psnr-b2": 29.95}}}}
    labels = {"m@0.5": 0.5, "m@1": 1.0}
    c = choose_strength(val, labels, clean_floor_db=0.1, kind="ms")
    assert c["strength"] == 0.5 and "(every band)" in c["rule"]
    assert choose_strength(val, labels, clean_floor_db=0.1)["strength"] == 1.0  # mean PSNR


_GRID = {"fixed 1": {"strength": 1.0, "adaptive": None},
         "adaptive 0.2-0.4": {"strength": 1.0, "adaptive": [0.2, 0.4]},
         "adaptive 0.5-0.8": {"strength": 1.0, "adaptive": [0.5, 0.8]}}


def test_variant_rule_lowest_clean_vgg_l_among_those_within_every_floor() -> None:
    # "fixed 1" has the best clean vgg-l but is worse than bicubic's vgg-l under nearest
    val = _val({"bicubic": {"fixed 1": (0.30, 30.2), "adaptive 0.2-0.4": (0.33, 30.1),
                            "adaptive 0.5-0.8": (0.35, 30.0)},
                "nearest": {"fixed 1": (0.42, 29.9), "adaptive 0.2-0.4": (0.39, 29.9),
                            "adaptive 0.5-0.8": (0.38, 29.9)}})
    c = choose_variant(val, _GRID, 0.5)
    assert c["variant"] == "adaptive 0.2-0.4" and c["within_floors"]
    assert c["strength"] == 1.0 and c["adaptive"] == [0.2, 0.4]
    failed = {x["variant"]: x["failed"] for x in c["rows"]}
    assert failed == {"fixed 1": ["nearest vgg-l"], "adaptive 0.2-0.4": [],
                      "adaptive 0.5-0.8": []}
    assert "0.5 dB on clean LR" in c["rule"]


def test_variant_rule_fewest_floors_failed_then_lowest_clean_vgg_l() -> None:
    # none meets every floor: "fixed 1" fails two (clean PSNR, nearest vgg-l), the two
    # adaptive ones one each; of those the lower clean vgg-l wins
    val = _val({"bicubic": {"fixed 1": (0.30, 29.0), "adaptive 0.2-0.4": (0.33, 30.1),
                            "adaptive 0.5-0.8": (0.32, 30.0)},
                "nearest": {"fixed 1": (0.42, 29.9), "adaptive 0.2-0.4": (0.41, 29.9),
                            "adaptive 0.5-0.8": (0.38, 29.0)}})
    c = choose_variant(val, _GRID, 0.5)
    failed = {x["variant"]: x["failed"] for x in c["rows"]}
    assert failed == {"fixed 1": ["bicubic PSNR", "nearest vgg-l"],
                      "adaptive 0.2-0.4": ["nearest vgg-l"],
                      "adaptive 0.5-0.8": ["nearest PSNR"]}
    assert c["variant"] == "adaptive 0.5-0.8" and not c["within_floors"]
    # with a 2 dB clean floor "fixed 1" fails one floor too, and has the lowest clean vgg-l
    c = choose_variant(val, _GRID, 2.0)
    assert c["variant"] == "fixed 1" and c["adaptive"] is None and not c["within_floors"]


def test_variant_rule_carries_the_kept_entrys_scope() -> None:
    # the scope grid of `bundled_models.py rescope`: same thresholds, where the share is
    # decided; the per-raster entry fails no floor, the per-tile one fails nearest vgg-l
    grid = {"per tile": {"strength": 1.0, "adaptive": [0.2, 0.4], "scope": "tile"},
            "per raster": {"strength": 1.0, "adaptive": [0.2, 0.4], "scope": "raster"}}
    val = _val({"bicubic": {"per tile": (0.33, 30.1), "per raster": (0.32, 30.1)},
                "nearest": {"per tile": (0.41, 29.9), "per raster": (0.40, 29.9)}})
    c = choose_variant(val, grid, 0.5)
    assert c["variant"] == "per raster" and c["scope"] == "raster" and c["within_floors"]
    plain = {k: {"strength": v["strength"], "adaptive": v["adaptive"]} for k, v in grid.items()}
    assert c["adaptive"] == [0.2, 0.4] and "scope" not in choose_variant(val, plain, 0.5)


def test_paired_difference_mean_and_student_t_ci() -> None:
    a = [0.30, 0.25, 0.40, 0.35, 0.20]
    b = [0.32, 0.30, 0.41, 0.33, 0.26]
    d = paired_difference(a, b)
    diffs = np.asarray(a) - np.asarray(b)
    m, ci = mean_ci(diffs.tolist())
    assert d["n"] == 5 and d["mean"] == pytest.approx(diffs.mean()) == pytest.approx(m)
    assert d["ci95"] == pytest.approx(ci)
    # t(0.975, 4) = 2.7764
    assert d["ci95"] == pytest.approx(2.7764 * diffs.std(ddof=1) / math.sqrt(5), rel=1e-4)
    assert d["lo"] == pytest.approx(m - ci) and d["hi"] == pytest.approx(m + ci)
    one = paired_difference([1.0], [0.5])
    assert one["mean"] == 0.5 and math.isnan(one["ci95"]) and one["n"] == 1
