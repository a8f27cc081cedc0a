"""`evaluate`: score models and classical baselines on a dataset, rasters or a pred/ref pair.

What `satsr eval` does, callable from Python: LR is made from each HR image by each
degradation, every method super-resolves it, and the metrics are averaged with a 95% CI::

    result = evaluate("chips", models=["run/model.safetensors"], methods=["bicubic"],
                      metrics=["psnr", "l2"])
    print(result.summary())

Errors name the arguments of this function (`satsr eval` shows them as its flags).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from satsr.data.degrade import EVAL_FAMILIES, Degradation
from satsr.errors import SatsrError
from satsr.evaluation import scoring as ev
from satsr.evaluation.metrics import COLORSPACES, parse_metrics
from satsr.nn.device import resolve_device
from satsr.validation import check_scale, check_seed

PathLike = str | Path


def _paths(data: PathLike | Sequence[PathLike] | None) -> list[Path]:
    """One path or several, as a list of Paths."""
    if data is None:
        return []
    if isinstance(data, (str, Path)):
        return [Path(data)]
    return [Path(d) for d in data]


def _degradations(specs: Sequence[str | Degradation] | str | None,
                  scale: int) -> list[Degradation] | None:
    """Presets, pipeline files, `families` (comma-separated or not) or Degradation objects."""
    if specs is None:
        return None
    items = [specs] if isinstance(specs, str) else list(specs)
    out: dict[str, Degradation] = {}
    for item in items:
        if isinstance(item, Degradation):
            out.setdefault(item.name, item)
            continue
        for part in (p.strip() for p in item.split(",")):
            for name in (EVAL_FAMILIES if part == "families" else [part] if part else []):
                if name not in out:
                    out[name] = Degradation.resolve(name, scale)
    return list(out.values()) or None


def check_sizes(batch_size: int, chip_size: int, figure_crop: int, max_pixels: int) -> None:
    """Refuse sizes that mean nothing (one line naming every bound)."""
    if batch_size < 1 or chip_size < 8 or figure_crop < 4 or max_pixels < 0:
        raise SatsrError("batch_size must be >= 1, chip_size >= 8, figure_crop >= 4, "
                         "max_pixels >= 0",
                         option=("batch_size", "chip_size", "figure_crop", "max_pixels"))


def evaluate(data: PathLike | Sequence[PathLike] | None = None, *,
             models: Sequence[PathLike] = (), methods: Sequence[str] | None = None,
             metrics: Sequence[str] | str | None = None, pred: PathLike | None = None,
             ref: PathLike | None = None, colorspace: str = "lab", rgb: str | None = None,
             scale: int | None = None,
             degradations: Sequence[str | Degradation] | str | None = None, seed: int = 0,
             chip_size: int = 256, max_pixels: int = ev.PAIR_MAX_PIXELS,
             weights_dir: PathLike | None = None, device: str = "auto", batch_size: int = 8,
             progress: bool = False, figure_image: int = 0, figure_crop: int = 96,
             random_trunk: bool = False) -> ev.EvalResult:
    """Score super-resolution methods on HR images; see the module docstring.

    `data` is a make-dataset folder (its test split) or rasters cut into chips of at most
    `chip_size` pixels; `pred` and `ref` instead score one super-resolved raster against its
    ground truth. `methods` default to bicubic when no model is given; `metrics` to all
    (LPIPS variants whose weights are missing are reported unavailable, with a warning).
    """
    colorspace = colorspace.lower()
    if colorspace not in COLORSPACES:
        raise SatsrError(f"colorspace must be lab or rgb, not {colorspace!r}",
                         option="colorspace")
    names = parse_metrics([metrics] if isinstance(metrics, str) else metrics)
    check_sizes(batch_size, chip_size, figure_crop, max_pixels)
    check_scale(scale)
    check_seed(seed)
    dev = str(resolve_device(device))
    if (pred is None) != (ref is None):
        raise SatsrError("pred and ref go together", option=("pred", "ref"))
    paths, model_paths = _paths(data), [Path(m) for m in models]
    given_degradations = degradations is not None and bool(
        [degradations] if isinstance(degradations, str) else list(degradations))
    info: dict[str, Any]
    samples: Iterable[ev.Sample]
    if pred is not None and ref is not None:
        if paths or model_paths or methods or given_degradations:
            raise SatsrError("pred/ref compare two rasters: give no data, models, methods or "
                             "degradations",
                             option=("pred", "ref", "data", "models", "methods",
                                     "degradations"))
        samples, total, scaling, label, info = ev.pair_samples(pred, ref, chip_size,
                                                               max_pixels=max_pixels)
        runs = [ev.Method(label, lambda lr: lr, str(pred))]
        eval_scale = 1
    else:
        if not paths:
            raise SatsrError("give data (a make-dataset folder or rasters), or pred and ref",
                             option=("data", "pred", "ref"))
        eval_scale = scale if scale is not None else (
            ev.model_file_scale(model_paths[0]) if model_paths else 4)
        if len(paths) == 1 and paths[0].is_dir():
            samples, total, scaling, info = ev.dataset_samples(paths[0])
        else:
            for d in paths:
                if d.is_dir():
                    raise SatsrError(f"{d} is a folder: give one make-dataset folder, or rasters")
            fit = ev.fitting_model_scaling(model_paths[0], paths[0]) if model_paths else None
            samples, total, scaling, info = ev.raster_samples(paths, chip_size, eval_scale, fit)
        runs = [ev.model_method(m, scaling, eval_scale, dev) for m in model_paths]
        classical = list(methods or ([] if model_paths else ["bicubic"]))
        runs += [ev.classical_method(n.lower(), eval_scale) for n in classical]
        for m, n in zip(runs, ev.unique_names([m.name for m in runs]), strict=True):
            m.name = n
    rgb_idx = ev.parse_rgb(rgb, scaling.bands)
    degs = _degradations(degradations, eval_scale)
    unavailable = ev.resolve_lpips(names, bool(metrics), weights_dir, random_trunk)
    return ev.score_samples(samples, runs, names, scaling, eval_scale, rgb_idx,
                            colorspace=colorspace, unavailable=unavailable,
                            weights_dir=weights_dir, device=dev, batch_size=batch_size,
                            random_trunk=random_trunk, total=total, progress=progress,
                            figure_index=figure_image, figure_crop=figure_crop, info=info,
                            degradations=degs, seed=seed)
