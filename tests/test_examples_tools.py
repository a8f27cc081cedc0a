"""The helpers the bundled-model scripts rely on: round choice and source grouping (the
periodic-artefact and saturation measures are the package's: tests/test_artefacts.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import bundled_models  # noqa: E402
import model_eval  # noqa: E402


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
    assert bundled_models.choose_round(d, "pe-l", 0.3)["iteration"] == 750
    assert bundled_models.choose_round(d, "pe-l", 1.0)["iteration"] == 500
    with pytest.raises(SystemExit, match="no validation round"):
        bundled_models.choose_round(d, "pe-l", 0.05)  # round 0 never counts


def test_source_groups() -> None:
    assert model_eval.group_of("/x/neon/HARV_016.tif") == "neon-HARV"
    assert model_eval.group_of("/w/src/manila_aerial_0.1m_without_demo.tif") == \
        "manila_aerial_0.1m"
    assert model_eval.group_of("landsat8_rgb_30m_uint16.tif") == "landsat8_rgb_30m_uint16"
    chips = list(range(10))
    assert model_eval.pick(chips, 4) == [0, 2, 5, 7] and model_eval.pick(chips, 20) == chips


def _val(rows: dict[str, dict[str, tuple[float, float]]]) -> dict:
    """A model_eval result: {family: {label: (vgg-l, psnr)}}, bicubic at (0.4, 30)."""
    mean = {}
    for fam, by in rows.items():
        mean[fam] = {"bicubic": {"vgg-l": 0.4, "psnr": 30.0}}
        for label, (v, p) in by.items():
            mean[fam][label] = {"vgg-l": v, "psnr": p}
    return {"mean": mean}


def test_strength_rule_keeps_the_best_vgg_l_within_the_psnr_floors():
    r = bundled_models.Recipe("x", [], "x", strength_grid=(0.5, 1.0), strength_floor_db=0.3)
    labels = {"m@0.5": 0.5, "m@1": 1.0}
    # full strength wins vgg-l but loses 0.4 dB on clean LR (floor 0.3): half is kept
    val = _val({"bicubic": {"m@0.5": (0.39, 30.1), "m@1": (0.36, 29.6)},
                "nearest": {"m@0.5": (0.40, 29.8), "m@1": (0.39, 29.6)}})
    c = bundled_models.choose_strength(r, val, labels)
    assert c["strength"] == 0.5 and c["within_floors"]
    # within every floor, the lower mean vgg-l change wins
    val = _val({"bicubic": {"m@0.5": (0.39, 30.1), "m@1": (0.36, 29.8)},
                "nearest": {"m@0.5": (0.40, 29.8), "m@1": (0.39, 29.6)}})
    assert bundled_models.choose_strength(r, val, labels)["strength"] == 1.0
    # none within the floors: the one closest to them, said so
    val = _val({"bicubic": {"m@0.5": (0.39, 29.0), "m@1": (0.36, 28.0)},
                "nearest": {"m@0.5": (0.40, 29.0), "m@1": (0.39, 28.0)}})
    c = bundled_models.choose_strength(r, val, labels)
    assert c["strength"] == 0.5 and not c["within_floors"]
    assert "| 0.5 |" in "\n".join(bundled_models._strength_table(c))
