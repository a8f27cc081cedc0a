"""satsr's LPIPS, ranking and confidence intervals against second implementations written here.

The LPIPS reference below shares nothing with satsr.evaluation.metrics or the `lpips` package's
modules but the weight files: the trunks are torchvision-layout `features` stacks built layer
by layer (AlexNet: Krizhevsky's "one weird trick" variant torchvision ships; VGG16:
configuration D), the input scaling, unit normalisation, v0.1 linear weighting and averaging
are written out.
The definitions follow `lpips/lpips.py` (LPIPS.forward, ScalingLayer, normalize_tensor) of
lpips 0.1.4: raw (`lpips=False`) = sum over layers of the spatial mean of the channel SUM of
squared differences; calibrated = the same with the channel sum weighted by the v0.1 layer.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image, ImageFilter
from rasterio.windows import Window
from torch import nn

from satsr.evaluation import scoring as ev
from satsr.evaluation.metrics import LPIPSMetric
from satsr.nn.weights import load_backbone

# lpips' ScalingLayer: (x - shift) / scale on [-1, 1] inputs (ImageNet statistics in [-1, 1])
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # lpips.normalize_tensor


def _alexnet_features() -> tuple[nn.Sequential, tuple[int, ...]]:
    """torchvision's AlexNet `features`, and the indexes of the ReLUs LPIPS taps (relu1..5)."""
    layers = [nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
              nn.MaxPool2d(3, 2),
              nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
              nn.MaxPool2d(3, 2),
              nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
              nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
              nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers), (1, 4, 7, 9, 11)


def _vgg16_features() -> tuple[nn.Sequential, tuple[int, ...]]:
    """torchvision's VGG16 `features` up to relu5_3, and the indexes of relu1_2, relu2_2,
    relu3_3, relu4_3, relu5_3."""
    layers: list[nn.Module] = []
    cin = 3
    for block, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        if block:
            layers.append(nn.MaxPool2d(2, 2))
        for _ in range(convs):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            cin = width
    return nn.Sequential(*layers), (3, 8, 15, 22, 29)


def _lin_weights(net: str) -> list[torch.Tensor]:
    """The v0.1 linear layers of the installed `lpips` package, as per-channel weight vectors."""
    import importlib.util

    spec = importlib.util.find_spec("lpips")
    assert spec is not None and spec.submodule_search_locations
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{i}.model.1.weight"].reshape(-1) for i in range(5)]


class ReferenceLPIPS:
    """LPIPS written out: trunk taps -> unit norm over channels -> squared difference ->
    (weighted) channel sum -> spatial mean -> sum over the five taps."""

    def __init__(self, net: str) -> None:
        build, backbone = {"alex": (_alexnet_features, "alexnet"),
                           "vgg": (_vgg16_features, "vgg16")}[net]
        self.features, self.taps = build()
        state = {k.split(".", 1)[1]: v for k, v in load_backbone(backbone).state.items()
                 if k.startswith("features.")}
        self.features.load_state_dict(state)  # strict: every conv of the stack
        self.features.eval().requires_grad_(False)
        self.lins = _lin_weights(net)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        shift = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
        scale = torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)
        h = (x - shift) / scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h)
            if i == self.taps[-1]:
                break
        return out

    def __call__(self, a: torch.Tensor, b: torch.Tensor, calibrated: bool) -> torch.Tensor:
        total = torch.zeros(a.shape[0], dtype=torch.float64)
        with torch.no_grad():
            for i, (fa, fb) in enumerate(zip(self._taps(a), self._taps(b), strict=True)):
                na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + NORM_EPS)
                nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + NORM_EPS)
                d = (na - nb) ** 2
                w = self.lins[i].view(1, -1, 1, 1) if calibrated else 1.0
                total += (d * w).sum(1).mean((1, 2)).double()
        return total


def _real_pairs(shared: Path, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A real aerial crop (x3, stacked) against its bicubic x4 round trip, its JPEG q=30 and a
    Gaussian blur (radius 1.5), all made with PIL; values in [-1, 1], (3, 3, size, size)."""
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        hr = ds.read(window=Window(200, 264, size, size)).transpose(1, 2, 0)
    img = Image.fromarray(np.ascontiguousarray(hr))
    small = img.resize((size // 4, size // 4), Image.Resampling.BICUBIC)
    bicubic = small.resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=30)
    jpeg = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    blur = img.filter(ImageFilter.GaussianBlur(1.5))

    def unit(im: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(im, np.float32).transpose(2, 0, 1).copy()) / 127.5 - 1

    ref = unit(img)
    return torch.stack([ref, ref, ref]), torch.stack([unit(bicubic), unit(jpeg), unit(blur)])


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_raw_and_calibrated_equal_a_written_out_reference(shared: Path, net: str) -> None:
    """satsr's alex/alex-l/vgg/vgg-l equal the reference above on real distorted crops."""
    ref_img, dist = _real_pairs(shared)
    reference = ReferenceLPIPS(net)
    for name, calibrated in ((net, False), (f"{net}-l", True)):
        got = LPIPSMetric(name)(dist, ref_img).double()
        want = reference(dist, ref_img, calibrated)
        assert torch.all(want > 0)
        assert got.tolist() == pytest.approx(want.tolist(), rel=1e-5, abs=1e-7), name
    # the three distortions are told apart: the comparison is not of near-equal numbers
    assert len({round(v, 3) for v in reference(dist, ref_img, True).tolist()}) == 3


def test_reference_tells_a_wrong_trunk_apart(shared: Path) -> None:
    """The comparison can fail: a random AlexNet trunk gives other raw distances."""
    ref_img, dist = _real_pairs(shared)
    want = ReferenceLPIPS("alex")(dist, ref_img, False)
    torch.manual_seed(0)
    rand = LPIPSMetric("alex", random_trunk=True)(dist, ref_img).double()
    assert (rand - want).abs().max() > 1e-2 * want.abs().max()


def test_raw_alex_on_tid2013_pairs_equals_the_reference(tid2013_pairs: Path) -> None:
    """The raw `alex` values of the TID2013 pairs pinned in test_eval come from this reference,
    whose calibrated variant reproduces the LPIPS authors' published distances."""
    def unit(path: Path) -> torch.Tensor:
        img = np.asarray(Image.open(path).convert("RGB"), np.float32)
        return torch.from_numpy(img.transpose(2, 0, 1).copy())[None] / 127.5 - 1.0

    names = ("I03", "I04", "I06", "I08", "I19")
    a = torch.cat([unit(tid2013_pairs / f"{k}_ref.png") for k in names])
    b = torch.cat([unit(tid2013_pairs / f"{k}_dist.png") for k in names])
    reference = ReferenceLPIPS("alex")
    want = reference(a, b, False)
    assert LPIPSMetric("alex")(a, b).double().tolist() == pytest.approx(want.tolist(), rel=1e-5)
    assert want.tolist() == pytest.approx([5.77574, 2.09644, 0.48894, 0.6107, 4.18781], abs=1e-3)
    # the reference itself is right: its calibrated values are the published ones
    published = [0.7237, 0.2572, 0.05079, 0.05205, 0.4253]  # lpips_pairs/README.md
    assert reference(a, b, True).tolist() == pytest.approx(published, abs=1e-3)


# ------------------------------------------------------------------- ranking and the CI


def _result(values: dict[str, dict[str, list[float]]]) -> ev.EvalResult:
    methods = list(values)
    metrics = list(next(iter(values.values())))
    return ev.EvalResult(methods=methods, metrics=metrics, values=values,
                         info={"samples": 2, "scale": 4, "colorspace": "lab"})


def test_minimax_pe_ranking_is_not_a_sort_by_raw_alex() -> None:
    """Each method's PE is its largest mean over the LPIPS variants; the smallest PE wins.

    A is best on raw alex but worst on vgg; B's worst variant is the calibrated vgg-l,
    C's is raw alex. Means: A (0.30, 0.10, 0.90, 0.20) -> PE 0.90 (vgg);
    B (0.50, 0.20, 0.40, 0.70) -> 0.70 (vgg-l); C (0.60, 0.15, 0.55, 0.25) -> 0.60 (alex).
    """
    res = _result({
        "A": {"psnr": [30.0, 30.0], "alex": [0.2, 0.4], "alex-l": [0.1, 0.1],
              "vgg": [0.8, 1.0], "vgg-l": [0.2, 0.2]},
        "B": {"psnr": [20.0, 20.0], "alex": [0.5, 0.5], "alex-l": [0.1, 0.3],
              "vgg": [0.4, 0.4], "vgg-l": [0.6, 0.8]},
        "C": {"psnr": [10.0, 10.0], "alex": [0.6, 0.6], "alex-l": [0.15, 0.15],
              "vgg": [0.5, 0.6], "vgg-l": [0.25, 0.25]},
    })
    s = res.summary()
    by_raw_alex = sorted(res.methods, key=lambda m: s[m]["alex"][0])
    by_alex_l = sorted(res.methods, key=lambda m: s[m]["alex-l"][0])
    rows = res.ranking()
    assert by_raw_alex == ["A", "B", "C"] and by_alex_l == ["A", "C", "B"]
    assert [r["method"] for r in rows] == ["C", "B", "A"]
    assert [(r["worst_variant"], r["rank"]) for r in rows] == [("alex", 1), ("vgg-l", 2),
                                                               ("vgg", 3)]
    assert [r["max_pe"] for r in rows] == pytest.approx([0.6, 0.7, 0.9])
    assert res.best()["psnr"] == ["A"]  # higher is better for PSNR only
    assert res.best()["alex"] == ["A"] and res.best()["vgg-l"] == ["A"]


def test_mean_ci_is_a_student_t_interval() -> None:
    """mean_ci = mean ± t(0.975, n-1) * s / sqrt(n), s the n-1 sample standard deviation."""
    values = [1.0, 2.0, 3.0, 4.0, 6.0]
    mean = 16.0 / 5  # 3.2
    s = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (3 - mean) ** 2 + (4 - mean) ** 2
                   + (6 - mean) ** 2) / 4)  # sqrt(14.8 / 4)
    t_975_4 = 2.7764451051977987  # Student t quantile, 4 degrees of freedom (tables: 2.776)
    got_mean, got_half = ev.mean_ci(values)
    assert got_mean == pytest.approx(3.2, rel=1e-12)
    assert got_half == pytest.approx(t_975_4 * s / math.sqrt(5), rel=1e-9)
    assert got_half == pytest.approx(2.388, abs=1e-3)
    assert got_half > 1.96 * s / math.sqrt(5) * 1.3  # not the normal approximation
    # two values: t(0.975, 1) = 12.706; one value or an infinite one: no interval
    assert ev.mean_ci([1.0, 3.0])[1] == pytest.approx(12.7062047 * math.sqrt(2) / math.sqrt(2))
    assert math.isnan(ev.mean_ci([5.0])[1]) and ev.mean_ci([5.0])[0] == 5.0
    assert math.isnan(ev.mean_ci([1.0, math.inf])[1])
