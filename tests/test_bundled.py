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


def test_unclipped_output_is_forward_inside_the_range_and_never_exceeds_the_input_beyond():
    torch.manual_seed(0)
    g = Generator(1, 4, n_blocks=1, features=4, residual=True).eval()
    with torch.no_grad():
        g.tail.weight.normal_(0, 0.05)
        g.tail.bias.fill_(0.3)  # a correction that pushes everything up
    x = torch.rand(2, 1, 12, 12) * 1.6 - 0.8
    with torch.inference_mode():
        assert torch.equal(g.forward_unclipped(x), g(x))  # inside the range: as trained
        x[0, 0, 4:7, 4:7] = 2.5  # a bright cloud beyond the range, and a dark shadow
        x[1, 0, 2:5, 6:9] = -1.8
        y = g.forward_unclipped(x)
    assert float(y[0].max()) <= 2.5 + 1e-5 and float(y[0].max()) > 2.4  # kept, not grown
    assert float(y[1].min()) >= -1.8 - 1e-5 and float(y[1].min()) < -1.7


# ------------------------------------------------------------------ the bundled model


#: What each bundled model is: data bands the network reads, its data dtype, band by band.
EXPECTED = {"satsr-rgb-x4": (3, "uint8", False), "satsr-ms-x4": (1, "float32", True)}
#: The degradation each bundled model was trained with: satsr-ms-x4 (0.6, stage 2) with `realistic`;
#: satsr-rgb-x4 (0.3, issue 20) on clean bicubic LR, its robustness to resampled input coming
#: from the aliasing probe's per-tile adaptive strength instead.
TRAINED_ON = {"satsr-rgb-x4": "bicubic", "satsr-ms-x4": "realistic"}


def test_the_bundled_models_are_the_expected_ones():
    assert sorted(m.name for m in bundled_models()) == sorted(EXPECTED)
    assert bundled_models()[0].name == DEFAULT_MODEL
    m = bundled_model("default")
    assert m is not None and m.name == DEFAULT_MODEL


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_model_loads_without_code_and_records_how_it_was_made(name):
    m = bundled_model(name)
    assert m is not None and m.path.suffix == ".safetensors" and m.card is not None
    head = m.path.read_bytes()[:8]  # safetensors: a little-endian header length, no pickle
    assert int.from_bytes(head, "little") < m.path.stat().st_size
    meta = read_metadata(m.path)
    bands, dtype, bandwise = EXPECTED[name]
    assert meta["variant"] == "adv+rec" and meta["arch"]["residual"] == 1
    assert meta["scale"] == 4 and meta["bands"] == bands and meta["dtype"] == dtype
    assert bool(meta.get("bandwise")) is bandwise
    # the training degradation and the committed split, recorded
    assert meta["degradation"]["name"] == TRAINED_ON[name]
    assert "splits/shared.json" in meta["data"]["dataset"]
    # issue 13: the round was chosen on validation by pe-l, within a PSNR floor
    sel = meta["selection"]
    assert sel["criterion"] == "pe-l" and sel["iteration"] == meta["iterations"] > 0
    assert sel["scores"]["pe-l"] < sel["bicubic"]["pe-l"]
    assert sel["scores"]["psnr"] >= sel["bicubic"]["psnr"] - sel["psnr_floor"]
    assert m.path.stat().st_size < 4 * 2**20  # fp16 weights
    gen, _ = load_model(name)
    assert isinstance(gen, Generator) and not gen.training
    # issue 20: both keep the input's band levels (each tile's mean correction removed)
    assert meta["zero_mean"] is True and gen.zero_mean
    card = m.card.read_text()
    for word in ("iterations", "hardware", "time", "alex-l", "vgg-l", "reproduce",
                 "nearest-reproject", "outside the training", "Periodic"):
        assert word in card, word
    chips = m.path.with_suffix("").with_suffix(".test-chips.json")
    assert json.loads(chips.read_text()), chips


def _test_chips(name: str, per_source: int = 3) -> dict[str, list[np.ndarray]]:
    """The fixed test-split chips of model `name` that tests/data/bundled_chips holds (every
    len // per_source-th of each source, as tests/data/make_fixtures.py cuts them): all bands
    of each chip, in raster units."""
    listed = json.loads((bundled_model(name).path.with_suffix("")
                         .with_suffix(".test-chips.json")).read_text())
    by_source: dict[str, list] = {}
    for c in listed:
        by_source.setdefault(c["source"], []).append(c["window"])
    out: dict[str, list[np.ndarray]] = {}
    for src, windows in sorted(by_source.items()):
        step = max(1, len(windows) // per_source)
        out[src] = []
        for w in windows[::step][:per_source]:
            path = FIXTURES / "bundled_chips" / f"{Path(src).stem}_x{w[0]}_y{w[1]}.tif"
            with rasterio.open(path) as ds:
                assert (ds.width, ds.height) == tuple(w[2:])
                out[src].append(ds.read())
    return out


def _rgb_scores(name: str, degradation: str = "bicubic") -> dict[str, dict[str, float]]:
    """Mean psnr / alex-l / vgg-l of the model and bicubic over its fixture test chips, each
    source weighted equally."""
    from satsr.data.degrade import Degradation
    from satsr.data.scaling import BandScaling
    from satsr.evaluation import scoring as ev

    scaling = BandScaling.for_uint8(3)
    methods = [ev.model_method(name, scaling, 4, name="satsr"), ev.classical_method("bicubic", 4)]
    metrics = ["psnr", "alex-l", "vgg-l"]
    per_source = []
    for src, chips in _test_chips(name).items():
        samples = [ev.Sample(f"{src}#{i}", scaling.to_unit(a[:3])) for i, a in enumerate(chips)]
        res = ev.score_samples(samples, methods, metrics, scaling, 4, [0, 1, 2], progress=False,
                               degradations=[Degradation.resolve(degradation, 4)])
        per_source.append({m.split(" [")[0]: {k: float(np.mean(res.values[m][k]))
                                              for k in metrics} for m in res.methods})
    return {m: {k: float(np.mean([s[m][k] for s in per_source])) for k in metrics}
            for m in ("satsr", "bicubic")}


def test_rgb_model_beats_bicubic_on_its_test_chips():
    s = _rgb_scores("satsr-rgb-x4")
    m, b = s["satsr"], s["bicubic"]
    assert m["alex-l"] < 0.9 * b["alex-l"], s  # measured: -13.4 %
    assert m["vgg-l"] < 0.98 * b["vgg-l"], s  # measured: -4.3 %
    assert m["psnr"] > b["psnr"] + 0.1, s  # measured: +0.26 dB


def test_rgb_model_does_no_harm_on_nearest_resampled_input():
    """Trained on clean LR, the 0.3 model would sharpen the aliasing of nearest-decimated input
    (fixed full strength: +6.7 % vgg-l and -2.4 dB on the validation split); its aliasing
    probe hands such tiles back to bicubic. On the fixture chips only the Netherlands source
    slips past the probe (+5 % vgg-l there on the full test split)."""
    s = _rgb_scores("satsr-rgb-x4", "nearest")
    m, b = s["satsr"], s["bicubic"]
    assert m["vgg-l"] <= 1.01 * b["vgg-l"], s  # measured: +0.23 %
    assert m["psnr"] > b["psnr"] - 0.2, s  # measured: -0.07 dB


def test_rgb_model_records_the_adaptive_strength_chosen_on_validation():
    gen, meta = load_model("satsr-rgb-x4")
    assert gen.residual and gen.probe is not None and gen.zero_mean
    assert gen.adaptive == tuple(meta["adaptive"]) == (0.2, 0.4)
    assert gen.strength == meta["strength"] == 1.0
    sel = meta["selection"]["adaptive"]
    assert sel["variant"] == "adaptive 0.2-0.4" and "split val" in sel["rule"]
    fixed = next(r for r in sel["rows"] if r["variant"] == "fixed 1")
    chosen = next(r for r in sel["rows"] if r["variant"] == sel["variant"])
    # the trade the probe solves: fixed full strength loses dB on nearest input, adaptive not
    assert fixed["psnr_change"]["nearest"] < -1.0 < -0.1 < chosen["psnr_change"]["nearest"]


def _ms_scores() -> dict[str, dict[str, dict[str, float]]]:
    """Per source: mean per-band PSNR, SAM and vgg-l (RGB bands) of the band-by-band model
    and bicubic on its fixture test chips, each band scaled by its p0.1 / p99.9 over the
    source's chips (what `satsr upscale` measures on a whole raster)."""
    from satsr.data.bands import band_names, rgb_bands
    from satsr.data.scaling import BandScaling
    from satsr.evaluation import scoring as ev

    gen, _ = load_model("satsr-ms-x4")

    def bandwise(lr: torch.Tensor) -> torch.Tensor:
        b, c, h, w = lr.shape
        with torch.inference_mode():
            return gen(lr.reshape(b * c, 1, h, w)).reshape(b, c, 4 * h, 4 * w)

    methods = [ev.Method("satsr", bandwise), ev.classical_method("bicubic", 4)]
    out = {}
    for src, chips in _test_chips("satsr-ms-x4").items():
        stack = np.stack(chips).astype(np.float64)
        lo = np.percentile(stack, 0.1, axis=(0, 2, 3))
        hi = np.percentile(stack, 99.9, axis=(0, 2, 3))
        scaling = BandScaling("float32", tuple(lo), tuple(np.maximum(hi, lo + 1)))
        with rasterio.open(next((FIXTURES / "bundled_chips").glob(f"{Path(src).stem}_x*"))
                           ) as ds:
            rgb = rgb_bands(band_names(ds), list(range(1, ds.count + 1))) or [0, 1, 2]
        samples = [ev.Sample(f"{src}#{i}", scaling.to_unit(a)) for i, a in enumerate(chips)]
        res = ev.score_samples(samples, methods, ["band-psnr", "sam", "vgg-l"], scaling, 4, rgb,
                               progress=False)
        out[src] = {m: {"psnr": float(np.mean([np.mean(res.values[m][k]) for k in
                                               res.values[m] if k.startswith("psnr-b")])),
                        "sam": float(np.mean(res.values[m]["sam"])),
                        "vgg-l": float(np.mean(res.values[m]["vgg-l"]))} for m in res.methods}
    return out


def test_ms_model_beats_bicubic_band_by_band_on_its_test_chips():
    r = _ms_scores()
    mean = {m: {k: float(np.mean([v[m][k] for v in r.values()])) for k in ("psnr", "sam",
                                                                        "vgg-l")}
            for m in ("satsr", "bicubic")}
    m, b = mean["satsr"], mean["bicubic"]
    assert m["vgg-l"] < 0.98 * b["vgg-l"], mean  # measured (0.6): -4.0 %
    assert m["psnr"] > b["psnr"] + 0.1, mean  # measured: +0.15 dB (mean over every band)
    assert m["sam"] < b["sam"] + 0.02, mean  # bands' radiometry not mixed: -0.01 deg
    for src, v in r.items():
        # no source behind bicubic on vgg-l (measured: -2.0 % to -5.3 %); PSNR within the
        # strength rule's 0.5 dB: the 0.6 model trails bicubic on the 60 m Landsat scene
        # (measured -0.32 dB here, -0.47 dB on the test split; README "where it loses")
        assert v["satsr"]["vgg-l"] < v["bicubic"]["vgg-l"], (src, v)
        assert v["satsr"]["psnr"] > v["bicubic"]["psnr"] - 0.5, (src, v)


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
    # measured with satsr-rgb-x4 (retrained with the realistic degradation, strength 0.75):
    # alex-l -20 %, PSNR +0.06 dB, vgg-l +1.9 % (a loss the README reports; the model before
    # it won 2.6 %)
    assert sat["alex-l"]["mean"] < 0.85 * bic["alex-l"]["mean"]
    assert sat["psnr"]["mean"] > bic["psnr"]["mean"] - 0.5
    assert sat["vgg-l"]["mean"] < 1.1 * bic["vgg-l"]["mean"]
    from PIL import Image

    assert Image.open(out / "side_by_side.png").size[0] > 4 * 128
    # a second run does not touch the first one's outputs without --overwrite
    before = (out / "eval.json").read_bytes()
    code, _, err = run_cli(["demo", "-o", str(out)], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--overwrite" in err
    assert (out / "eval.json").read_bytes() == before


def test_ms_model_keeps_peaks_beyond_the_band_range():
    """Issue 12's saturation target on the model's fixture test chips, with each band's range
    cut at p99 (stricter than the training p99.9) so that bright peaks lie beyond it:
    |max(SR) - max(LR)| <= 0.02 x range per band (measured: 0.019 over 33 band-chips; the
    output before forward_unclipped kept only the trained part of the correction overshot by
    0.70 x range at p98, and bicubic's own ringing reaches 0.06)."""
    from satsr.data.degrade import downscale
    from satsr.data.scaling import BandScaling

    gen, _ = load_model("satsr-ms-x4")
    worst, n = 0.0, 0
    for chips in _test_chips("satsr-ms-x4").values():
        stack = np.stack(chips).astype(np.float64)
        lo = np.percentile(stack, 0.1, axis=(0, 2, 3))
        hi = np.maximum(np.percentile(stack, 99, axis=(0, 2, 3)), lo + 1)
        scaling = BandScaling("float32", tuple(lo.ravel()), tuple(hi.ravel()))
        for a in chips:
            lr = downscale(torch.from_numpy(scaling.to_unit(a, clip=False))[None], 4)[0]
            for b in range(lr.shape[0]):
                if float(lr[b].max()) <= 1.0:
                    continue
                with torch.inference_mode():
                    sr = gen.forward_unclipped(lr[b][None, None])
                worst = max(worst, abs(float(sr.max()) - float(lr[b].max())) / 2)
                n += 1
    assert n >= 10, n
    assert worst <= 0.02, (worst, n)
