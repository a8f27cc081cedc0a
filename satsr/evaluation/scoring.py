"""The eval verb: methods x metrics over HR chips, mean and 95% CI, minimax-PE ranking, figure.

For every HR chip (bands first, in [-1, 1] after the band scaling contract), LR is made by
satsr.data.degrade.downscale (the degradation training uses); every method super-resolves LR; the
prediction is written back to the data's dtype and read again (what `upscale` would give);
metrics compare three bands (`rgb`) of SR and HR (see satsr.evaluation.metrics for the definitions).
The best method is the one whose largest mean LPIPS distance across the available variants
("perceptual error", PE) is smallest: the paper's minimax-PE criterion.

The pieces live by concern: samples (dataset, raster and pair sources), methods (classical
baselines, model files), result (EvalResult, mean and CI, tables) and figure (write_figure);
this module keeps the scoring loop and re-exports their names.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from satsr.data.scaling import BandScaling
from satsr.errors import MetricUnavailableWarning, SatsrError
from satsr.evaluation.figure import _crops, write_figure
from satsr.evaluation.methods import (
    CLASSICAL_METHODS,
    Method,
    classical_method,
    model_file_scale,
    model_method,
    unique_names,
)
from satsr.evaluation.metrics import (
    CLASSICAL,
    LPIPS_MIN_SIZE,
    LPIPS_VARIANTS,
    METRICS,
    MS_METRICS,
    classical,
    get_lpips,
    lpips_unavailable,
)
from satsr.evaluation.msmetrics import band_psnr, consistency, spectral_angle
from satsr.evaluation.result import EvalResult, _by_reason, _fmt, mean_ci
from satsr.evaluation.samples import (
    GRID_TOLERANCE,
    PAIR_MAX_PIXELS,
    Sample,
    check_same_grid,
    dataset_samples,
    fitting_model_scaling,
    pair_samples,
    raster_samples,
    samples_have_preds,
)
from satsr.progress import progress_bar

# Deferred imports: torch, rasterio, scipy, matplotlib and rich (and the satsr modules that
# import them) are imported by the functions that use them: `satsr eval` reads its defaults
# from this module at start-up, which stays free of them.

if TYPE_CHECKING:
    from satsr.data.degrade import Degradation

__all__ = [
    "CLASSICAL_METHODS", "GRID_TOLERANCE", "PAIR_MAX_PIXELS", "EvalResult", "Method", "Sample",
    "_fmt", "check_same_grid", "classical_method", "dataset_samples", "fitting_model_scaling",
    "mean_ci", "model_file_scale", "model_method", "pair_samples", "parse_rgb", "raster_samples",
    "resolve_lpips", "samples_have_preds", "score_samples", "unique_names", "write_figure",
]


def parse_rgb(spec: str | None, bands: int) -> list[int]:
    """'1,2,3' -> 0-based positions of the three bands the metrics see."""
    if spec is None or not spec.strip():
        if bands >= 3:
            return [0, 1, 2]
        if bands == 1:
            return [0, 0, 0]
        raise SatsrError(f"the data has {bands} bands: choose three with rgb (e.g. 1,2,2)",
                         option="rgb")
    try:
        idx = [int(s) for s in spec.split(",")]
    except ValueError as exc:
        raise SatsrError(f"rgb takes three 1-based band numbers like 1,2,3, not {spec!r}",
                         option="rgb") from exc
    if len(idx) != 3:
        raise SatsrError(f"rgb takes exactly three band numbers, not {spec!r}", option="rgb")
    bad = [i for i in idx if not 1 <= i <= bands]
    if bad:
        raise SatsrError(f"rgb band {bad[0]} out of range: the data has bands 1..{bands}",
                         option="rgb")
    return [i - 1 for i in idx]


def _batches(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    """Consecutive samples of one shape, at most `size` at a time."""
    batch: list[Sample] = []
    for s in samples:
        if batch and (len(batch) >= size or batch[0].hr.shape != s.hr.shape):
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch


def resolve_lpips(metrics: Sequence[str], explicit: bool, weights_dir: str | Path | None,
                  random_trunk: bool = False) -> dict[str, str]:
    """{metric: reason} for LPIPS variants without weights: an error if asked for explicitly."""
    missing = lpips_unavailable(metrics, weights_dir, random_trunk)
    if missing and explicit:
        name, reason = next(iter(missing.items()))
        raise SatsrError(f"metric {name} is unavailable: {reason}")
    for reason, names in _by_reason(missing).items():
        verb = "is" if len(names) == 1 else "are"
        warnings.warn(f"{', '.join(names)} {verb} unavailable: {reason}",
                      MetricUnavailableWarning, stacklevel=2)
    return missing


def score_samples(samples: Iterable[Sample], methods: Sequence[Method], metrics: Sequence[str],
                   scaling: BandScaling, scale: int, rgb: Sequence[int], *,
                   colorspace: str = "lab", unavailable: dict[str, str] | None = None,
                   weights_dir: str | Path | None = None, device: str = "cpu", batch_size: int = 8,
                   random_trunk: bool = False, total: int | None = None, progress: bool = True,
                   figure_index: int = 0, figure_crop: int = 96,
                   info: dict[str, Any] | None = None,
                   degradations: Sequence[Degradation] | None = None, seed: int = 0) -> EvalResult:
    """Run every method on every sample and collect per-sample metrics (see module docstring).

    LR is made from each HR by each of `degradations` (default: bicubic), with parameters
    drawn per image from (seed, image number), so every method sees the same LR and a
    re-run gives the same numbers. With several degradations, every method is scored under
    each, as rows named "method [degradation]".
    """
    from satsr.data.degrade import Degradation

    unavailable = dict(unavailable or {})
    bad = [k for k in metrics if k not in METRICS + MS_METRICS]
    if bad:
        raise SatsrError(f"unknown metric {bad[0]!r}")
    # band-psnr: one column per band; consistency needs the LR (not in pair mode)
    metrics = [n for k in metrics for n in (
        [f"psnr-b{b + 1}" for b in range(scaling.bands)] if k == "band-psnr" else [k])]
    if "consistency" in metrics and samples_have_preds(samples):
        unavailable.setdefault("consistency", "needs the LR a method saw (not in pair mode)")
    lp_names = [k for k in metrics if k in LPIPS_VARIANTS and k not in unavailable]
    lp = {k: get_lpips(k, str(weights_dir) if weights_dir else None, device, random_trunk)
          for k in lp_names}
    degs = list(degradations) if degradations else [Degradation.resolve("bicubic", scale)]
    bad_scale = [d.name for d in degs if d.scale != scale]
    if bad_scale:
        raise SatsrError(f"degradation {bad_scale[0]} is for another scale than x{scale}")
    tagged = len(degs) > 1 or not degs[0].is_bicubic
    dnames = unique_names([d.name for d in degs])
    rows = [(m, k) for k in range(len(degs)) for m in methods]
    names = [f"{m.name} [{dnames[k]}]" if tagged else m.name for m, k in rows]
    scorer = _Scorer(list(methods), degs, rows, names, list(metrics), unavailable, lp,
                     [k for k in metrics if k in CLASSICAL], scaling, scale, list(rgb),
                     colorspace, device, seed)
    crops: dict[str, np.ndarray] = {}
    count = 0
    bar = progress_bar(progress, transient=True)
    with bar:
        task = bar.add_task("evaluating", total=total)
        for batch in _batches(samples, batch_size):
            hr = np.stack([s.hr for s in batch]).astype(np.float32)
            preds = scorer.predict(batch, hr, count)
            scorer.score(batch, hr, preds)
            if count <= figure_index < count + len(batch):
                i = figure_index - count
                crops = _crops(hr[:, scorer.rgb][i],
                               {n: preds[n][i, scorer.rgb] for n in names}, figure_crop)
            count += len(batch)
            bar.update(task, advance=len(batch))
    if count == 0:
        raise SatsrError("nothing to evaluate: no images")
    return EvalResult(methods=names, metrics=list(metrics), values=scorer.values,
                      unavailable={k: v for k, v in unavailable.items() if k in metrics},
                      info={**(info or {}), "samples": count, "scale": scale,
                            "colorspace": colorspace, "rgb": [i + 1 for i in scorer.rgb],
                            "methods": {m.name: m.source for m in methods},
                            **({"degradations": {n: d.to_dict() for n, d in zip(
                                dnames, degs, strict=True)},
                                "degradation_seed": seed} if tagged else {})},
                      figure_crops=crops)


@dataclass
class _Scorer:
    """What score_samples decided once (rows, metrics, LPIPS networks) and the values it
    collects: one row per (method, degradation), named `names`."""

    methods: list[Method]
    degs: list[Degradation]
    rows: list[tuple[Method, int]]  # (method, index into degs) of each row
    names: list[str]
    metrics: list[str]
    unavailable: dict[str, str]
    lp: dict[str, Any]  # LPIPS variant -> distance function
    cl_names: list[str]  # the classical metrics asked for
    scaling: BandScaling
    scale: int
    rgb: list[int]
    colorspace: str
    device: str
    seed: int
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = {name: {k: [] for k in self.metrics if k not in self.unavailable}
                       for name in self.names}

    def quantise(self, x: np.ndarray) -> np.ndarray:
        """Through the data's dtype and back: what a written SR raster would hold."""
        return self.scaling.to_unit(self.scaling.from_unit(x))

    def predict(self, batch: list[Sample], hr: np.ndarray, count: int) -> dict[str, np.ndarray]:
        """Each row's SR of a batch: the given predictions (pair mode), else each method run
        on the LR each degradation makes (images numbered from `count`); consistency is
        scored here, where the LR is at hand."""
        import torch

        names, scale = self.names, self.scale
        if batch[0].preds is not None:
            if "consistency" in self.values[names[0]]:
                raise SatsrError("consistency compares SR degraded back with the LR it was "
                                 "made from: pairs of rasters have no LR", option="metrics")
            given = [s.preds or {} for s in batch]
            return {m: np.stack([p[m] for p in given]) for m in names}
        h, w = hr.shape[-2:]
        if h % scale or w % scale:
            raise SatsrError(f"{batch[0].label}: {w}x{h} pixels is not a multiple of "
                             f"the scale {scale}")
        hr_t = torch.from_numpy(hr)
        preds = {}
        for k, d in enumerate(self.degs):
            lr = torch.cat([d(hr_t[i:i + 1], np.random.default_rng([self.seed, count + i]))
                            for i in range(len(batch))]).clamp_(-1.0, 1.0)
            for m in self.methods:
                sr = m.run(lr.to(self.device)).float().cpu().numpy()
                if sr.shape != hr.shape:
                    raise SatsrError(f"method {m.name} returned {sr.shape[1:]} for HR "
                                     f"{hr.shape[1:]}")
                label = names[self.rows.index((m, k))]
                preds[label] = np.stack([self.quantise(x) for x in sr])
                if "consistency" in self.metrics and "consistency" not in self.unavailable:
                    self.values[label]["consistency"] += _consistency(
                        preds[label], lr.numpy(), d, self.seed, count)
        return preds

    def score(self, batch: list[Sample], hr: np.ndarray, preds: dict[str, np.ndarray]) -> None:
        """Add every metric of every row's predictions of a batch."""
        import torch

        hr_rgb = hr[:, self.rgb]
        if self.lp and min(hr.shape[-2:]) < LPIPS_MIN_SIZE:
            raise SatsrError(f"{batch[0].label}: LPIPS needs images of at least "
                             f"{LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} pixels, got "
                             f"{hr.shape[-1]}x{hr.shape[-2]} (use metrics l2,dssim,psnr)",
                             option="metrics")
        for name in self.names:
            values = self.values[name]
            p_rgb = preds[name][:, self.rgb]
            for i in range(len(batch)):
                for metric, v in classical(p_rgb[i], hr_rgb[i], self.cl_names,
                                           self.colorspace).items():
                    values[metric].append(v)
            for metric, fn in self.lp.items():
                dist = fn(torch.from_numpy(np.ascontiguousarray(p_rgb)),
                          torch.from_numpy(np.ascontiguousarray(hr_rgb)))
                values[metric].extend(float(x) for x in dist)
            for i in range(len(batch)):
                _multispectral(values, preds[name][i], hr[i], self.scaling, self.metrics)


def _multispectral(values: dict[str, list[float]], pred: np.ndarray, ref: np.ndarray,
                   scaling: BandScaling, metrics: Sequence[str]) -> None:
    """Per-band PSNR (unit scale, every band) and SAM (raster units) of one image."""
    if any(k.startswith("psnr-b") for k in metrics):
        for b, v in enumerate(band_psnr(pred, ref)):
            values[f"psnr-b{b + 1}"].append(v)
    if "sam" in values:
        values["sam"].append(spectral_angle(scaling.from_unit(pred).astype(np.float64),
                                            scaling.from_unit(ref).astype(np.float64)))


def _consistency(sr: np.ndarray, lr: np.ndarray, deg: Degradation, seed: int,
                 first: int) -> list[float]:
    """Consistency of each SR image of a batch: degraded back with the very draws that made
    its LR (so added noise cancels), against that LR."""
    import torch

    out = []
    for i in range(len(sr)):
        def back(x: np.ndarray, i: int = i) -> np.ndarray:
            t = deg(torch.from_numpy(x)[None], np.random.default_rng([seed, first + i]))
            return np.asarray(t.clamp(-1.0, 1.0)[0].numpy())

        out.append(consistency(sr[i], lr[i], back))
    return out
