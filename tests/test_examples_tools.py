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


def test_per_raster_eval_decides_each_source_and_family_from_all_its_chips(tmp_path: Path
                                                                          ) -> None:
    import numpy as np
    import rasterio
    import torch

    from satsr.data.degrade import Degradation
    from satsr.inference.modelfile import load_model, save_model

    root = Path(__file__).resolve().parents[1] / "satsr" / "assets"
    gen, meta = load_model(root / "models" / "satsr-rgb-x4.safetensors")
    path = save_model(tmp_path / "m.safetensors", gen, {**meta, "adaptive_scope": "raster"},
                      half=True)
    m = model_eval.RasterModel(path, "m")
    with rasterio.open(root / "sample_manila_0.1m.tif") as ds:
        img = torch.from_numpy(ds.read([1, 2, 3]).astype(np.float32) / 127.5 - 1)
    hr = [img[None, :, r:r + 128, c:c + 128] for r in (0, 128, 256, 384) for c in (0, 256)]
    # the sample's probe medians sit far from the thresholds 0.2-0.4 (about 0.02 clean,
    # 0.94 decimated), so the shares are exactly 1 and 0
    assert m.decide(hr, Degradation.resolve("bicubic", 4), 0).startswith("clean; share 1;")
    assert m.gen.fixed_share == 1.0
    assert m.decide(hr, Degradation.resolve("nearest", 4), 0).startswith("aliased; share 0;")
    lr = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.equal(m.method().run(lr), gen._bicubic(lr).clamp(-1, 1))


def test_every_recipe_reads_a_dataset_the_data_step_makes_and_starts_from_a_recipe() -> None:
    made = {*bundled_models.DATASETS, *bundled_models.CORPUS_DATASETS, "bands", "corpus-bands"}
    for name, r in bundled_models.RECIPES.items():
        assert r.dataset in made, name
        pre = bundled_models._init_stage(r)
        assert pre is None or pre in bundled_models.RECIPES, name
    assert bundled_models._init_stage(bundled_models.RECIPES["satsr-ms-x4"]) == "ms-pre"
    assert set(bundled_models.CORPUS_BANDS) <= set(bundled_models.CORPUS_DATASETS)


def test_card_reproduces_a_two_stage_recipe_from_the_corpus() -> None:
    line = bundled_models._reproduce(bundled_models.RECIPES["satsr-ms-x4"], "TRAIN")
    steps = [s.strip("`") for s in line.split(", then ")]
    assert steps == ["python examples/bundled_models.py data WORK",
                     "python examples/corpus.py CORPUS",
                     "python examples/bundled_models.py data WORK --corpus CORPUS",
                     "python examples/bundled_models.py train ms-pre WORK", "TRAIN"]
    # a stage 1 on the shared data needs no corpus
    line = bundled_models._reproduce(bundled_models.RECIPES["satsr-aerial-x4"], "TRAIN")
    assert "corpus" not in line and "train aerial-pre WORK" in line


def test_corpus_datasets_are_cut_from_the_corpus_folder(tmp_path: Path, monkeypatch) -> None:
    import numpy as np
    import pytest
    import rasterio
    from rasterio.transform import from_origin

    from satsr.data.index import DatasetIndex

    corpus = tmp_path / "corpus"
    rng = np.random.default_rng(0)

    def write(rel: str, count: int, dtype: str, nodata=None) -> None:
        path = corpus / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        hi = 255 if dtype == "uint8" else 4000
        a = rng.integers(1, hi, (count, 160, 160)).astype(dtype)
        with rasterio.open(path, "w", driver="GTiff", width=160, height=160, count=count,
                           dtype=dtype, nodata=nodata, crs="EPSG:32631",
                           transform=from_origin(0, 0, 0.5, 0.5)) as ds:
            ds.write(a)

    write("rgb8/photo_a.tif", 3, "uint8")
    write("rgb8/pan_a.tif", 3, "uint8")
    write("pan/p1.tif", 1, "uint16")
    write("ms/ms1.tif", 4, "float64")
    write("ms/nebraska_landsat5_with_nodata_wgs84.tif", 1, "int16", nodata=-9999)
    small = {k: bundled_models.Dataset(d.sources, [*d.args, "--count", "4"])
             for k, d in bundled_models.CORPUS_DATASETS.items()}
    monkeypatch.setattr(bundled_models, "CORPUS_DATASETS", small)
    monkeypatch.setattr(bundled_models, "SATSR", [sys.executable, "-m", "satsr"])
    bundled_models.step_corpus(tmp_path / "work", corpus)
    data = tmp_path / "work" / "data"
    assert len(DatasetIndex.read(data / "corpus-rgb8").chips) == 4  # photo and pan files
    assert {Path(s).name for s in DatasetIndex.read(data / "corpus-photo").meta["args"][
        "sources"]} == {"photo_a.tif"}
    bands = DatasetIndex.read(data / "corpus-bands")
    # every band of every chip: pan 1, ms 4, Landsat 5 1, photographs 3
    assert len(bands.chips) == 4 * (1 + 4 + 1 + 3)
    with pytest.raises(SystemExit, match="examples/corpus.py"):
        bundled_models.step_corpus(tmp_path / "work", tmp_path / "empty")


def test_band_bias_of_sources_with_different_bands_is_told_as_mean_and_worst() -> None:
    import before_after

    rgb = {"band_bias": [0.001, -0.002, 0.0], "worst_band_bias": 0.003, "flat_grain": 0.2}
    ms = {"band_bias": None, "mean_abs_band_bias": 0.0004, "worst_band_bias": 0.0012,
          "flat_grain": 0.1}
    assert bundled_models._bias_text(rgb) == "+0.00100, -0.00200, +0.00000 (0.00300)"
    assert bundled_models._bias_text(ms) == "mean |bias| 0.00040 (worst 0.00120)"
    doc = {"radiometry": {"m": ms, "bicubic": {**ms, "flat_grain": 0.05}}}
    rows = before_after.radiometry_rows([("0.6", doc, "m")], 0)
    assert rows[0] == "| band bias (mean SR - mean LR) | mean 0.040 %, worst 0.120 % of range |"
    assert rows[1] == "| flat-block grain (SR / HR) | 0.10 (bicubic 0.05) |"
    # an eval without radiometry (0.2's band-by-band eval) gives no rows
    assert before_after.radiometry_rows([("0.2", {}, "m")], 0) == []
