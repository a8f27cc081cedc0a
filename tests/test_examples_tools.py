"""What the bundled-model scripts themselves still do: source grouping, the model card's
strength table, and applying the package's rules (round, strength and variant choice are
satsr.training.export's: tests/test_export_rules.py; the periodic-artefact and saturation
measures are satsr.evaluation.artefacts': tests/test_artefacts.py)."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import bundled_models  # noqa: E402
import model_eval  # noqa: E402


def test_source_groups() -> None:
    assert model_eval.group_of("/x/neon/HARV_016.tif") == "neon-HARV"
    assert model_eval.group_of("/w/src/manila_aerial_0.1m_without_demo.tif") == \
        "manila_aerial_0.1m"
    assert model_eval.group_of("landsat8_rgb_30m_uint16.tif") == "landsat8_rgb_30m_uint16"
    chips = list(range(10))
    assert model_eval.pick(chips, 4) == [0, 2, 5, 7] and model_eval.pick(chips, 20) == chips


def test_bundled_models_apply_the_package_rules() -> None:
    from satsr.training import export

    for name in ("choose_round", "choose_strength", "choose_variant"):
        assert getattr(bundled_models, name) is getattr(export, name)


def test_strength_table_of_the_model_card() -> None:
    from satsr.training.export import choose_strength

    bic = {"vgg-l": 0.4, "psnr": 30.0}
    val = {"mean": {"bicubic": {"bicubic": bic, "m@0.5": {"vgg-l": 0.39, "psnr": 29.0},
                                "m@1": {"vgg-l": 0.36, "psnr": 28.0}}}}
    c = choose_strength(val, {"m@0.5": 0.5, "m@1": 1.0}, clean_floor_db=0.3)
    table = "\n".join(bundled_models._strength_table(c))
    assert "| 0.5 | -2.5 % / -1.00 dB | -2.50 % | no |" in table
    assert "| 1 | -10.0 % / -2.00 dB | -10.00 % | no |" in table


def test_export_exits_with_the_message_when_no_round_meets_the_floor(tmp_path: Path) -> None:
    import json

    import pytest

    run = tmp_path / "satsr-rgb-x4"
    (run / "snapshots").mkdir(parents=True)
    (run / "val.csv").write_text("iteration,psnr,pe-l\n0,26.0,0.5\n250,20.0,0.4\n")
    (run / "val_bicubic.json").write_text(json.dumps({"psnr": 26.0}))
    (run / "snapshots" / "ckpt-250.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="no validation round within 0.3 dB"):
        bundled_models.step_export("satsr-rgb-x4", tmp_path, None, 4, None)
