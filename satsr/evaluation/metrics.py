"""Image distances of the GCN paper's Table 3: L2, DSSIM, PSNR and six LPIPS variants.

Definitions (those of the LPIPS authors' evaluation code, `lpips/__init__.py`):

* images are 3 bands in [-1, 1]; the classical metrics first quantise them to RGB uint8
  (round((x + 1) * 127.5)), then work either in CIE Lab (`colorspace="lab"`, skimage's
  `rgb2lab`, data range R = 100: the default of their scripts) or on the uint8 RGB values
  (`colorspace="rgb"`, R = 255);
* `l2`    = 0.5 * mean((a / R - b / R) ** 2)
* `dssim` = (1 - SSIM(a, b, data_range=R)) / 2, SSIM = skimage `structural_similarity`
  (7x7 uniform window, sample covariance, mean over the three channels);
* `psnr`  = 10 * log10(255 ** 2 / mean((a - b) ** 2)) on RGB uint8 whatever the colour space
  (inf for identical images; higher is better, unlike every other metric here). satsr's one
  PSNR formula is `psnr_from_mse` below; each caller names its unit by its peak. The `psnr`
  column of training's val.csv is another quantity: float, every band, on the unit scale
  [-1, 1] (peak 2), like eval's per-band `psnr-bN`, not this uint8 RGB one;
* LPIPS `alex`, `vgg`, `squeeze` (raw: `lpips.LPIPS(net=..., lpips=False)`, the unweighted
  sum over layers of channel-summed squared differences of unit-normalised features) and
  `alex-l`, `vgg-l`, `squeeze-l` (calibrated linear layers v0.1), on the [-1, 1] images.
  lpips releases before mid-2019 computed the raw variants at half today's value.

LPIPS trunks get real ImageNet weights from satsr.nn.weights (never a download); a
random trunk only when a test asks for one explicitly (`random_trunk=True`).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from satsr.errors import MissingWeightsError, SatsrError
from satsr.nn.weights import (
    load_backbone,
    load_torch_state,
    locate_backbone,
    missing_reason,
)

if TYPE_CHECKING:
    import torch

# Deferred imports: torch, lpips and scikit-image are imported by the functions that
# compute metrics; this module is on the CLI's start-up path (satsr eval's defaults).

CLASSICAL = ("l2", "dssim", "psnr")
#: LPIPS metric name -> (lpips net name, calibrated linear layers?)
LPIPS_VARIANTS: dict[str, tuple[str, bool]] = {
    "squeeze": ("squeeze", False), "squeeze-l": ("squeeze", True),
    "alex": ("alex", False), "alex-l": ("alex", True),
    "vgg": ("vgg", False), "vgg-l": ("vgg", True),
}
METRICS = CLASSICAL + tuple(LPIPS_VARIANTS)
#: Multispectral metrics (satsr.evaluation.msmetrics), on request only: `band-psnr` becomes
#: one column per band (`psnr-b1`, `psnr-b2`, ...), over every band of the data.
MS_METRICS = ("band-psnr", "sam", "consistency")
HIGHER_IS_BETTER = frozenset({"psnr", "consistency"})
#: lpips net name -> satsr.nn.weights backbone name
BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}
COLORSPACES = ("lab", "rgb")
#: The smallest side LPIPS trunks accept (AlexNet/SqueezeNet strides).
LPIPS_MIN_SIZE = 32


def parse_metrics(spec: Iterable[str] | None) -> list[str]:
    """Metric names from repeated/comma-separated options; None or empty -> every metric."""
    names: list[str] = []
    for item in spec or []:
        names += [s.strip().lower() for s in item.split(",") if s.strip()]
    if not names:
        return list(METRICS)
    known = METRICS + MS_METRICS
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SatsrError(f"unknown metric {unknown[0]!r} (choose from {', '.join(known)})")
    return [m for m in known if m in names]  # canonical order, no duplicates


def higher_is_better(metric: str) -> bool:
    """PSNR (per band too) and consistency grow with quality; every other metric shrinks."""
    return metric in HIGHER_IS_BETTER or metric.startswith("psnr-b")


def is_better(metric: str, a: float, b: float) -> bool:
    """Whether value `a` is better than `b` for `metric`."""
    return a > b if higher_is_better(metric) else a < b


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(3, H, W) values in [-1, 1] -> (H, W, 3) uint8, rounded."""
    y = np.clip(np.rint((np.asarray(x, np.float64) + 1.0) * 127.5), 0, 255)
    return np.ascontiguousarray(y.astype(np.uint8).transpose(1, 2, 0))


def _in_space(u8: np.ndarray, colorspace: str) -> tuple[np.ndarray, float]:
    """An (H, W, 3) uint8 image in the metric's colour space, and its data range."""
    if colorspace == "lab":
        from skimage.color import rgb2lab

        return rgb2lab(u8), 100.0
    if colorspace == "rgb":
        return u8.astype(np.float64), 255.0
    raise SatsrError(f"unknown colour space {colorspace!r} (lab, rgb)")


def l2(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """0.5 * mean((a/R - b/R)^2), as `lpips.l2`."""
    return float(0.5 * np.mean((a / data_range - b / data_range) ** 2))


def dssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """(1 - SSIM) / 2 with skimage's defaults (7x7 uniform window), mean over channels."""
    from skimage.metrics import structural_similarity

    if min(a.shape[:2]) < 7:
        raise SatsrError(f"SSIM needs images of at least 7x7 pixels, got {a.shape[1]}x"
                         f"{a.shape[0]}")
    s = structural_similarity(a, b, data_range=data_range, channel_axis=-1)
    return float((1.0 - s) / 2.0)


#: The value range PSNR divides by: RGB uint8, and the band scaling's unit scale [-1, 1].
UINT8_PEAK = 255.0
UNIT_SCALE_PEAK = 2.0


@overload
def psnr_from_mse(mse: float, peak: float) -> float: ...
@overload
def psnr_from_mse(mse: torch.Tensor, peak: float) -> torch.Tensor: ...
def psnr_from_mse(mse: float | torch.Tensor, peak: float) -> float | torch.Tensor:
    """satsr's one PSNR: 10 log10(peak^2 / mse), in dB.

    `peak` is the range of the values in the images' own unit and `mse` their mean squared
    error in that same unit: 255 on RGB uint8 (`satsr eval`'s `psnr`), 2 on the band
    scaling's unit scale [-1, 1] (eval's `psnr-bN` and `consistency`, and the `psnr` of
    training's `val.csv`, over every band). A float MSE of 0 gives inf; a tensor of per-image
    MSEs is computed elementwise on its device (clamp it above 0 first for finite values).
    """
    if isinstance(mse, (float, int)):
        return float("inf") if mse <= 0 else float(10.0 * np.log10(peak**2 / mse))
    import torch

    return 10 * torch.log10(peak**2 / mse)


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """PSNR (dB) of two arrays in one unit whose value range is `peak` (float64 MSE over
    every element); inf when they are identical. See psnr_from_mse."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return psnr_from_mse(mse, peak)


def classical(pred: np.ndarray, ref: np.ndarray, names: Sequence[str],
              colorspace: str = "lab") -> dict[str, float]:
    """The requested classical metrics between two (3, H, W) images in [-1, 1]."""
    pu8, ru8 = to_uint8(pred), to_uint8(ref)
    out: dict[str, float] = {}
    if "l2" in names or "dssim" in names:
        pa, r = _in_space(pu8, colorspace)
        ra, _ = _in_space(ru8, colorspace)
        if "l2" in names:
            out["l2"] = l2(pa, ra, r)
        if "dssim" in names:
            out["dssim"] = dssim(pa, ra, r)
    if "psnr" in names:
        out["psnr"] = psnr(pu8, ru8, peak=UINT8_PEAK)  # RGB uint8, whatever the colour space
    return out


def lpips_unavailable(names: Iterable[str], weights_dir: str | Path | None = None,
                      random_trunk: bool = False) -> dict[str, str]:
    """{metric: reason} for the LPIPS metrics in `names` whose trunk weights are missing."""
    out: dict[str, str] = {}
    if random_trunk:
        return out
    for n in names:
        if n in LPIPS_VARIANTS:
            net = BACKBONES[LPIPS_VARIANTS[n][0]]
            if locate_backbone(net, weights_dir) is None:
                out[n] = missing_reason(net, weights_dir)
    return out


def _lpips_lin_file(net: str) -> Path:
    """The calibrated v0.1 linear layers shipped inside the `lpips` package."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError("the lpips package is not installed (pip install lpips)")
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    if not p.is_file():
        raise MissingWeightsError(f"LPIPS linear layers not found: {p}")
    return p


def _load_trunk(trunk: Any, state: dict[str, Any], source: str) -> None:
    """Copy torchvision `features.N.*` tensors into lpips' `sliceK.N.*` modules, all or nothing."""
    slot = {int(child): sname for sname, sl in trunk.named_children()
            for child, _ in sl.named_children()}
    mapped = {}
    for key, value in state.items():
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] == "features" and int(parts[1]) in slot:
            mapped[f"{slot[int(parts[1])]}.{parts[1]}.{parts[2]}"] = value
    try:
        missing, unexpected = trunk.load_state_dict(mapped, strict=False)
    except RuntimeError as exc:
        raise SatsrError(f"backbone weights in {source} do not fit the LPIPS trunk "
                         f"({str(exc).splitlines()[0]})") from exc
    if missing or unexpected:
        raise SatsrError(f"backbone weights in {source} do not fit the LPIPS trunk (missing "
                         f"{list(missing)[:3]}, unexpected {list(unexpected)[:3]})")


@functools.lru_cache(maxsize=4)
def _lpips_model(net: str, weights_dir: str | None, random_trunk: bool) -> tuple[Any, str]:
    """One lpips.LPIPS per trunk, with real ImageNet weights and the v0.1 linear layers.

    The raw and "-l" variants of a trunk share it (the lpips module reads its `lpips` flag at
    call time), so a trunk's weights are built and loaded once.
    """
    backbone = None if random_trunk else load_backbone(BACKBONES[net], weights_dir)
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore")
        import lpips

        model = lpips.LPIPS(pretrained=False, net=net, lpips=True, pnet_rand=True,
                            verbose=False)
    if backbone is not None:
        _load_trunk(model.net, backbone.state, backbone.source)
    lin_path = _lpips_lin_file(net)
    lin_state = load_torch_state(lin_path)
    # the file holds `linN.model.1.weight`; `lins.N` are the same modules
    want = {f"lin{i}.{k}" for i, lin_i in enumerate(model.lins) for k in lin_i.state_dict()}
    if set(lin_state) != want:
        raise SatsrError(f"LPIPS linear layers in {lin_path} do not fit {net} "
                         f"(keys {sorted(lin_state)[:3]}...)")
    try:
        for i, lin_i in enumerate(model.lins):
            lin_i.load_state_dict({k.split(".", 1)[1]: v for k, v in lin_state.items()
                                   if k.startswith(f"lin{i}.")})
    except RuntimeError as exc:
        raise SatsrError(f"LPIPS linear layers in {lin_path} do not fit {net} "
                         f"({str(exc).splitlines()[0]})") from exc
    source = backbone.source if backbone else "random trunk (test only)"
    return model.eval().requires_grad_(False), source


class LPIPSMetric:
    """One LPIPS variant (e.g. "alex-l"): `metric(a, b)` -> (B,) distances, inputs in [-1, 1]."""

    def __init__(self, name: str, weights_dir: str | Path | None = None,
                 device: str = "cpu", random_trunk: bool = False) -> None:
        import torch

        if name not in LPIPS_VARIANTS:
            raise SatsrError(f"unknown LPIPS variant {name!r}")
        net, self.lin = LPIPS_VARIANTS[name]
        self.name, self.device = name, torch.device(device)
        model, self.source = _lpips_model(net, str(weights_dir) if weights_dir else None,
                                          random_trunk)
        self.model = model.to(self.device)

    def __call__(self, a: Any, b: Any) -> Any:
        import torch

        if min(a.shape[-2:]) < LPIPS_MIN_SIZE:
            raise SatsrError(f"LPIPS needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} "
                             f"pixels, got {a.shape[-1]}x{a.shape[-2]}")
        self.model.lpips = self.lin  # lpips.LPIPS(lpips=False) is the raw variant
        with torch.inference_mode():
            d = self.model(a.to(self.device, torch.float32), b.to(self.device, torch.float32))
        return d.reshape(-1).float().cpu()


@functools.lru_cache(maxsize=8)
def get_lpips(name: str, weights_dir: str | None = None, device: str = "cpu",
              random_trunk: bool = False) -> LPIPSMetric:
    """A cached LPIPSMetric (building one loads tens of MB of weights)."""
    return LPIPSMetric(name, weights_dir, device, random_trunk)
