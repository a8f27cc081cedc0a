"""The bundled default model, `satsr models`, `satsr demo` and the residual generator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from helpers import FIXTURES, assert_same_georef, run_cli
from rasterio.windows import Window

from satsr.data.degrade import upsample
from satsr.inference.bundled import DEFAULT_MODEL, SAMPLE, bundled_model, bundled_models
from satsr.inference.modelfile import load_model, read_metadata
from satsr.nn.generator import Generator

# ------------------------------------------------------------------ residual generator


def test_residual_generator_starts_as_bicubic_and_learns_a_correction():
    torch.manual_seed(0)
    g = Generator(3, 4, n_blocks=2, features=8, residual=True).eval()
    x = torch.rand(2, 3, 12, 10) * 2 - 1
    assert torch.equal(g(x), upsample(x, 4))
    assert g.arch()["residual"] == 1 and Generator(3, 4, 2, 8).arch()["residual"] == 0
    g.train()
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    loss = (g(x) - torch.zeros(2, 3, 48, 40)).pow(2).mean()
    loss.backward()
    assert g.tail.weight.grad.abs().sum() > 0  # the zero-initialised tail does learn
    opt.step()
    assert not torch.equal(g.eval()(x), upsample(x, 4))


def test_upsamplers_start_without_checkerboard():
    """ICNR (shuffle) and resize-convolution (nearest): a constant input stays constant."""
    torch.manual_seed(0)
    for mode in ("shuffle", "nearest"):
        g = Generator(3, 2, n_blocks=1, features=8, upsample=mode)
        with torch.no_grad():
            assert g.upsample(torch.randn(1, 8, 6, 6)).shape == (1, 8, 12, 12)
            flat = g.upsample(torch.ones(1, 8, 6, 6))[..., 2:-2, 2:-2]
        assert (flat.amax((2, 3)) - flat.amin((2, 3))).abs().max() < 1e-5, mode
    assert any(isinstance(m, torch.nn.PixelShuffle) for m in Generator(3, 4, 1, 4).modules())
    with pytest.raises(ValueError):
        Generator(3, 4, 1, 4, upsample="bilinear")


def test_residual_output_is_clipped_to_the_band_range():
    g = Generator(3, 2, n_blocks=1, features=4, residual=True).eval()
    with torch.no_grad():
        g.tail.bias.fill_(5.0)
    y = g(torch.zeros(1, 3, 6, 6))
    assert y.max() == 1.0 and y.min() == 1.0


# ------------------------------------------------------------------ the bundled model


def test_bundled_model_loads_without_code_and_has_what_upscale_needs():
    models = bundled_models()
    assert models and models[0].name == DEFAULT_MODEL
    m = bundled_model("default")
    assert m is not None and m.path.suffix == ".safetensors" and m.card is not None
    head = m.path.read_bytes()[:8]  # safetensors: a little-endian header length, no pickle
    assert int.from_bytes(head, "little") < m.path.stat().st_size
    meta = read_metadata(m.path)
    assert meta["variant"] == "adv+rec" and meta["arch"]["residual"] == 1
    assert meta["scale"] == 4 and meta["bands"] == 3 and meta["dtype"] == "uint8"
    assert meta["scaling"]["dtype"] == "uint8" and meta["iterations"] >= 3000
    assert m.path.stat().st_size < 4 * 2**20  # fp16 weights
    gen, _ = load_model(DEFAULT_MODEL)
    assert isinstance(gen, Generator) and not gen.training
    card = m.card.read_text()
    for word in ("iterations", "hardware", "time", "alex-l", "vgg-l", "landsat7"):
        assert word in card, word


def _test_chips(per_source: int) -> dict[str, list[np.ndarray]]:
    """Up to `per_source` fixed test-split chips per source (HR uint8), read from their exact
    copies in tests/data/bundled_chips (tests/data/make_fixtures.py cuts them)."""
    listed = json.loads((bundled_model(DEFAULT_MODEL).path.with_suffix("")
                         .with_suffix(".test-chips.json")).read_text())
    by_source: dict[str, list] = {}
    for c in listed:
        by_source.setdefault(c["source"], []).append(c["window"])
    out: dict[str, list[np.ndarray]] = {}
    for name, windows in sorted(by_source.items()):
        step = max(1, len(windows) // per_source)
        out[name] = []
        for w in windows[::step][:per_source]:
            path = FIXTURES / "bundled_chips" / f"{Path(name).stem}_x{w[0]}_y{w[1]}.tif"
            with rasterio.open(path) as ds:
                assert (ds.width, ds.height) == tuple(w[2:])
                out[name].append(ds.read([1, 2, 3]))
    return out


def test_bundled_model_beats_bicubic_on_test_split_chips():
    from satsr.data.scaling import BandScaling
    from satsr.evaluation import scoring as ev

    chips = _test_chips(4)
    assert "landsat7_bahamas_300m.tif" in chips and len(chips) >= 8
    scaling = BandScaling.for_uint8(3)
    samples = [ev.Sample(f"{k}#{i}", scaling.to_unit(a)) for k, v in chips.items()
               for i, a in enumerate(v)]
    methods = [ev.model_method(DEFAULT_MODEL, scaling, 4, name="satsr"),
               ev.classical_method("bicubic", 4)]
    metrics = ["psnr", "alex-l", "vgg-l"]
    res = ev.score_samples(samples, methods, metrics, scaling, 4, [0, 1, 2], progress=False)
    mean = {m: {k: float(np.mean(res.values[m][k])) for k in metrics} for m in res.methods}
    assert mean["satsr"]["alex-l"] < mean["bicubic"]["alex-l"], mean
    assert mean["satsr"]["vgg-l"] < mean["bicubic"]["vgg-l"], mean
    assert mean["satsr"]["psnr"] > mean["bicubic"]["psnr"] - 2.0, mean
    # no harm on the medium-resolution Landsat scene (water, dark areas)
    land = [i for i, s in enumerate(samples) if s.label.startswith("landsat7")]
    for k in ("alex-l", "vgg-l"):
        sr = np.mean([res.values["satsr"][k][i] for i in land])
        bc = np.mean([res.values["bicubic"][k][i] for i in land])
        assert sr <= bc + 1e-3, (k, sr, bc)
    psnr_sr = np.mean([res.values["satsr"]["psnr"][i] for i in land])
    psnr_bc = np.mean([res.values["bicubic"]["psnr"][i] for i in land])
    assert psnr_sr > psnr_bc - 1.0, (psnr_sr, psnr_bc)


def test_models_verb_lists_the_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and DEFAULT_MODEL in out and "(default)" in out and "adv+rec" in out
    code, out, _ = run_cli(["models", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc[0]["default"] and doc[0]["metadata"]["arch"]["residual"] == 1


def test_upscale_without_model_uses_the_bundled_default(shared, tmp_path, capsys):
    src = tmp_path / "in.tif"
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        w = Window(300, 300, 40, 36)
        prof = {"driver": "GTiff", "width": 40, "height": 36, "count": 3, "dtype": "uint8",
                "crs": ds.crs, "transform": ds.window_transform(w)}
        with rasterio.open(src, "w", **prof) as out:
            out.write(ds.read(window=w))
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "out.tif")], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "out.tif") as out, rasterio.open(src) as inp:
        assert (out.width, out.height) == (160, 144) and out.crs == inp.crs
        assert_same_georef(out.transform, inp.transform @ Affine.scale(0.25), 160, 144)
        assert DEFAULT_MODEL in json.dumps(out.tags())
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.tif").stat().st_mode & 0o777 == 0o666 & ~umask  # not private
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "x.tif"), "-m", "nope"],
                        capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "satsr models" in err


# ------------------------------------------------------------------ the demo (the main job)


def test_demo_writes_the_geotiff_figure_and_eval_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "demo"
    code, text, err = run_cli(["demo", "-o", str(out)], capsys)
    assert code == 0, err
    for name in ("sample_x4.tif", "side_by_side.png", "eval.json", "eval.csv"):
        assert (out / name).is_file() and str(out / name) in text.replace("\n", "")
    with rasterio.open(out / "sample_x4.tif") as up, rasterio.open(SAMPLE) as src:
        assert (up.width, up.height) == (4 * src.width, 4 * src.height)
        assert up.crs == src.crs
        assert_same_georef(up.transform, src.transform @ Affine.scale(0.25), up.width,
                           up.height)
    doc = json.loads((out / "eval.json").read_text())
    assert {"satsr", "bicubic", "nearest"} <= set(doc["results"])
    sat, bic = doc["results"]["satsr"], doc["results"]["bicubic"]
    assert sat["vgg-l"]["mean"] < bic["vgg-l"]["mean"]
    from PIL import Image

    assert Image.open(out / "side_by_side.png").size[0] > 4 * 128
    # a second run does not touch the first one's outputs without --overwrite
    before = (out / "eval.json").read_bytes()
    code, _, err = run_cli(["demo", "-o", str(out)], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--overwrite" in err
    assert (out / "eval.json").read_bytes() == before
