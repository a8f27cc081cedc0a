"""examples/gpu_run.py, every step with --quick on the CPU: `data` from tests/data (no
../shared, no corpus, no network: no wheels) and `run --device cpu` on what it cut."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.helpers import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "gpu_run.py"
sys.path.insert(0, str(ROOT / "examples"))

import gpu_run  # noqa: E402


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SATSR_SHARED_DATA", "TORCH_HOME")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def _write(path: Path, pixels: np.ndarray) -> None:
    """An 8-bit RGB GeoTIFF without georeference (as the corpus's photographs are)."""
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2],
                       height=pixels.shape[1], count=3, dtype="uint8") as out:
        out.write(pixels)


def test_fits_names_what_is_too_small() -> None:
    split = {s["name"]: s for s in json.loads(
        (ROOT / "examples" / "splits" / "shared.json").read_text())["sources"]}
    colorado = FIXTURES / "colorado_aerial_0.15m.tif"
    assert gpu_run.fits(colorado, 256, None) == "383x232 px, smaller than the chip size 256"
    netherlands = FIXTURES / "netherlands_aerial_0.25m.tif"  # the whole raster, as shared
    assert "split-file blocks are at most 200x200 px" in gpu_run.fits(netherlands, 256, split)
    assert gpu_run.fits(netherlands, 192, split) == ""
    assert gpu_run.fits(FIXTURES / "nothing.tif", 64, None) == "missing"


def test_budget_refuses_over(capsys) -> None:
    assert gpu_run.budget_report({"a": 2**20, "b": 2**19}, 2) == (1.5, True)
    assert gpu_run.budget_report({"a": 2**21, "b": 2**19}, 2) == (2.5, False)
    assert "OVER BUDGET" in capsys.readouterr().out


@pytest.mark.timeout(600)
def test_every_step_quick_on_cpu(tmp_path: Path) -> None:
    from satsr.data.splitfile import plan_split
    from satsr.inference.modelfile import load_model

    # a corpus folder as examples/corpus.py writes it: an aerial raster, a photograph without
    # georeference, and one too small for the chips (left out, named)
    corpus = tmp_path / "corpus" / "rgb8"
    corpus.mkdir(parents=True)
    shutil.copy(FIXTURES / "netherlands_aerial_0.25m.tif", corpus / "aerial.tif")
    with rasterio.open(FIXTURES / "manila_aerial_0.1m.tif") as ds:
        px = ds.read([1, 2, 3])
    _write(corpus / "photo_a.tif", px[:, :200, :240])
    _write(corpus / "photo_tiny.tif", px[:, :40, :40])
    # the fixtures' own split (the committed one describes the full rasters)
    sources = sorted(FIXTURES.glob("*.tif")) + sorted((FIXTURES / "neon").glob("*.tif"))
    split = tmp_path / "split.json"
    plan_split(sources, 64, (0.6, 0.2, 0.2), 0).write(split)

    carry, out = tmp_path / "carry", tmp_path / "out"
    data = subprocess.run(
        [sys.executable, str(SCRIPT), "data", "--quick", "--carry", str(carry), "--shared",
         str(FIXTURES), "--corpus", str(tmp_path / "corpus"), "--split-file", str(split)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert data.returncode == 0, data.stdout[-3000:] + data.stderr[-3000:]
    assert "leaving out photo_tiny.tif: 40x40 px, smaller than the chip size 64" in data.stdout
    assert "leaving out haiti_rgbn_5m.tif: missing" in data.stdout
    manifest = json.loads((carry / "manifest.json").read_text())
    parts = manifest["parts_mib"]
    assert parts["working tree (tracked + untracked, not ignored)"] > 1  # counted
    assert parts["wheels"] == 0 and manifest["wheels"] == []
    assert parts["torch (AlexNet fp16)"] > 4  # AlexNet's convolutions in fp16, ~4.7 MiB
    assert abs(sum(parts.values()) - manifest["total_mib"]) < 0.05
    assert "of 64 MiB: fits" in data.stdout
    for name in ("corpus-rgb8", "rgb8"):
        counts = manifest["datasets"][name]["counts"]
        assert counts["train"] > 0 and counts["val"] > 0, (name, counts)
    assert manifest["datasets"]["rgb8"]["counts"]["test"] > 0

    run = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "--quick", "--device", "cpu", "--carry",
         str(carry), "--out", str(out), "--work", str(tmp_path / "work"), "--site",
         str(tmp_path / "site")], cwd=ROOT, env=_env(), capture_output=True, text=True,
        timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((out / "gpu_run.json").read_text())
    steps = summary["steps"]
    # the adaptive strength where bundled_models has it (VGG16's LPIPS is here, not on the GPU)
    finished = "finalize" if hasattr(gpu_run._bm(), "finalize") else "model"
    for step in ("install", "cuda_tests", "rgb-pre", "rgb-ft", finished, "measure", "done"):
        assert step in steps, (step, list(steps))
    assert steps["install"]["torch_home"] == str(carry / "torch")
    assert steps["cuda_tests"]["rc"] == 0
    for stage in ("rgb-pre", "rgb-ft"):
        assert steps[stage]["rc"] == 0, steps[stage]
        assert steps[stage]["iterations"] == steps[stage]["iterations_planned"] > 2
        assert (out / f"val-{stage}.csv").is_file()
    assert "--init-from" in steps["rgb-ft"]["args"]
    assert steps["measure"]["rc"] == 0 and steps["measure"]["results"], steps["measure"]
    assert all("error" not in v for v in steps["measure"]["results"].values()), steps["measure"]
    lines = (out / "gpu_run.jsonl").read_text().splitlines()
    assert [next(iter(json.loads(x))) for x in lines] == list(steps)
    gen, meta = load_model(out / "satsr-rgb-x4.safetensors")
    assert gen.scale == 4
    if finished == "finalize" and "adaptive" in meta:  # where the share is decided, chosen
        assert meta["adaptive_scope"] == meta["selection"]["scope"]["scope"]
        assert "Where the share is decided" in (out / "card.md").read_text()
    assert "rgb-ft" in (out / "card.md").read_text()
    with tarfile.open(out / "rgb-ft-run.tar") as tar:  # for finalize on another machine
        assert {"rgb-ft/model.safetensors", "rgb-ft/val.csv"} <= set(tar.getnames())
    assert len(summary["files"]) <= 8  # what the device tool brings back
