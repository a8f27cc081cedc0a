"""The eval verb: methods x metrics over HR chips, mean and 95% CI, minimax-PE ranking, figure.

For every HR chip (bands first, in [-1, 1] after the band scaling contract), LR is made by
satsr.data.degrade.downscale (the degradation training uses); every method super-resolves LR; the
prediction is written back to the data's dtype and read again (what `upscale` would give);
metrics compare three bands (`rgb`) of SR and HR (see satsr.evaluation.metrics for the definitions).
The best method is the one whose largest mean LPIPS distance across the available variants
("perceptual error", PE) is smallest: the paper's minimax-PE criterion.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from satsr.data.index import DatasetIndex
from satsr.data.scaling import BandScaling, percentile_scaling
from satsr.errors import MetricUnavailableWarning, SatsrError
from satsr.evaluation.layout import FirstThatFits
from satsr.evaluation.metrics import (
    CLASSICAL,
    LPIPS_MIN_SIZE,
    LPIPS_VARIANTS,
    METRICS,
    MS_METRICS,
    classical,
    get_lpips,
    higher_is_better,
    is_better,
    lpips_unavailable,
    to_uint8,
)
from satsr.evaluation.msmetrics import band_psnr, consistency, spectral_angle
from satsr.progress import progress_bar

# Deferred imports: torch, rasterio, scipy, matplotlib and rich (and the satsr modules that
# import them) are imported by the functions that use them: `satsr eval` reads its defaults
# from this module at start-up, which stays free of them.

if TYPE_CHECKING:
    from satsr.data.degrade import Degradation

CLASSICAL_METHODS = ("bicubic", "nearest")


@dataclass
class Sample:
    """One HR image to evaluate on: a label and its bands in [-1, 1] (C, H, W)."""

    label: str
    hr: np.ndarray
    preds: dict[str, np.ndarray] | None = None  # given predictions (pair mode), else computed


@dataclass
class Method:
    """A super-resolution method: name and a function LR (B, C, h, w) -> SR, both in [-1, 1]."""

    name: str
    run: Callable[[Any], Any]
    source: str = ""


def classical_method(name: str, scale: int) -> Method:
    """The bicubic or nearest-neighbour baseline of satsr.data.degrade."""
    from satsr.data.degrade import upsample

    if name not in CLASSICAL_METHODS:
        raise SatsrError(f"unknown method {name!r} (choose from {', '.join(CLASSICAL_METHODS)})")
    return Method(name, lambda lr: upsample(lr, scale, name), name)


def model_method(path: str | Path, data_scaling: BandScaling, scale: int,
                 device: str = "cpu", name: str | None = None) -> Method:
    """A satsr model file (or run folder); checks bands and scale against the data."""
    import torch

    from satsr.inference.modelfile import load_model, model_scaling, read_metadata

    meta = read_metadata(path)
    bands = int(meta["arch"]["bands"])
    if bands != data_scaling.bands:
        raise SatsrError(f"model {path} reads {bands} bands but the data has "
                         f"{data_scaling.bands} bands")
    if int(meta["arch"]["scale"]) != scale:
        raise SatsrError(f"model {path} upscales x{meta['arch']['scale']} but this evaluation "
                         f"is x{scale} (pass scale or evaluate models of one scale together)",
                         option="scale")
    gen, meta = load_model(path, device)
    ms = model_scaling(meta)
    same = ms.to_dict() == data_scaling.to_dict()

    def run(lr: torch.Tensor) -> torch.Tensor:
        x = lr
        if not same:  # data units -> raster values -> the model's own units
            x = torch.from_numpy(ms.to_unit(data_scaling.from_unit(
                lr.cpu().numpy().transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3).copy())
        with torch.inference_mode():
            y = gen(x.to(device, torch.float32))
        if not same:
            y = torch.from_numpy(data_scaling.to_unit(ms.from_unit(
                y.cpu().numpy().transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3).copy())
        return y

    label = name or (Path(path).parent.name if Path(path).is_file()
                     and Path(path).name == "model.safetensors" else Path(path).stem)
    return Method(label, run, str(path))


def unique_names(names: Sequence[str]) -> list[str]:
    """Make method labels unique (a, a -> a, a#2)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


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


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t; nan for n < 2)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return math.nan, math.nan
    if not np.all(np.isfinite(v)):
        return float(np.mean(v)), math.nan  # e.g. PSNR of identical images: inf
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan
    from scipy.stats import t

    return m, float(t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


@dataclass
class EvalResult:
    """Per-sample metric values for every method, and everything needed to report them."""

    methods: list[str]
    metrics: list[str]
    values: dict[str, dict[str, list[float]]]
    unavailable: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    figure_crops: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def available(self) -> list[str]:
        return [m for m in self.metrics if m not in self.unavailable]

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """{method: {metric: (mean, ci95)}} over the available metrics."""
        return {m: {k: mean_ci(self.values[m][k]) for k in self.available}
                for m in self.methods}

    def best(self) -> dict[str, list[str]]:
        """The best method(s) per metric (ties share)."""
        s, out = self.summary(), {}
        for k in self.available:
            means = {m: s[m][k][0] for m in self.methods if not math.isnan(s[m][k][0])}
            if not means:
                continue
            top = next(iter(means.values()))
            for v in means.values():
                if is_better(k, v, top):
                    top = v
            out[k] = [m for m, v in means.items() if v == top]
        return out

    def ranking(self) -> list[dict[str, Any]]:
        """Methods by minimax PE: the largest mean LPIPS over available variants, smallest first."""
        variants = [k for k in self.available if k in LPIPS_VARIANTS]
        if not variants:
            return []
        s = self.summary()
        rows: list[dict[str, Any]] = []
        for m in self.methods:
            worst = max(variants, key=lambda k: s[m][k][0])
            rows.append({"method": m, "max_pe": s[m][worst][0], "worst_variant": worst})
        rows.sort(key=lambda r: r["max_pe"])
        for i, r in enumerate(rows, 1):
            r["rank"] = i
        return rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready report (non-finite numbers become null)."""
        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        s = self.summary()
        return {
            **self.info,
            "metrics": self.metrics,
            "unavailable": self.unavailable,
            "results": {m: {k: {"mean": num(s[m][k][0]), "ci95": num(s[m][k][1]),
                                "n": len(self.values[m][k]),
                                "inf": int(np.isinf(self.values[m][k]).sum())}
                            for k in self.available} for m in self.methods},
            "best": self.best(),
            "ranking": [{**r, "max_pe": num(r["max_pe"])} for r in self.ranking()],
        }

    def write_json(self, path: str | Path) -> None:
        from satsr.data.raster import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def write_csv(self, path: str | Path) -> None:
        """One row per method and metric: method, metric, mean, ci95, n."""
        from satsr.data.raster import atomic_path

        s = self.summary()
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["method", "metric", "mean", "ci95", "n"])
            for m in self.methods:
                for k in self.metrics:
                    if k in self.unavailable:
                        w.writerow([m, k, "", "", 0])
                    else:
                        w.writerow([m, k, repr(s[m][k][0]), repr(s[m][k][1]),
                                    len(self.values[m][k])])

    def notes(self) -> list[str]:
        """Footnotes for the table: how pairs were scored, skipped pieces, n/a metrics."""
        out = []
        if "scored" in self.info:
            out.append(f"scored: {self.info['scored']}")
        if self.info.get("skipped"):
            out.append(f"skipped {self.info['skipped']} piece(s) holding nodata or NaN")
        for names in _by_reason(self.unavailable).values():
            out.append(f"n/a: {', '.join(names)} (weights not found, see the warning)")
        return out

    def title(self) -> str:
        """What the numbers are: images, scale, colour space, and the cell format."""
        n = self.info.get("samples", "")
        return (f"satsr eval: {n} image{'s' if n != 1 else ''}, x{self.info.get('scale', '?')}, "
                f"{self.info.get('colorspace', '')}; mean ±95% CI, * = best")

    def _cells(self) -> dict[str, dict[str, str]]:
        """{method: {metric: 'mean ±ci *'}} with compact numbers (4 and 2 significant digits)."""
        s, best = self.summary(), self.best()
        out: dict[str, dict[str, str]] = {}
        for m in self.methods:
            out[m] = {}
            for k in self.metrics:
                if k in self.unavailable:
                    out[m][k] = "[dim]n/a[/dim]"
                    continue
                mean, ci = s[m][k]
                text = _fmt(mean) + (f" ±{_fmt(ci, 2)}" if math.isfinite(ci) else "")
                out[m][k] = (f"[bold green]{text} *[/bold green]" if m in best.get(k, [])
                             else text)
        return out

    def table(self) -> Any:
        """The results, laid out to fit the console (rich renderable).

        Methods as rows and metrics as columns when that fits; else metrics as rows and
        methods as columns; else one small table per method. No cell is ever cut.
        """
        return FirstThatFits([self._wide_table(), self._tall_table(), self._blocks()])

    def _wide_table(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        cells, rank = self._cells(), {r["method"]: r for r in self.ranking()}
        t = Table(title=self.title())
        t.add_column("method", no_wrap=True)
        for k in self.metrics:
            t.add_column(f"{k} {_arrow(k)}", justify="right", no_wrap=True)
        if rank:
            t.add_column("max PE ↓", justify="right", no_wrap=True)
            t.add_column("rank", justify="right", no_wrap=True)
        for m in self.methods:
            row = [escape(m)] + [cells[m][k] for k in self.metrics]
            if rank:
                r = rank[m]
                row += [f"{_fmt(r['max_pe'])} ({r['worst_variant']})", str(r["rank"])]
            t.add_row(*row)
        return t

    def _tall_table(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        cells, rank = self._cells(), {r["method"]: r for r in self.ranking()}
        t = Table(title=self.title())
        t.add_column("metric", no_wrap=True)
        for m in self.methods:
            t.add_column(escape(m), justify="right", no_wrap=True)
        for k in self.metrics:
            t.add_row(f"{k} {_arrow(k)}", *[cells[m][k].replace(" ±", "\n±")
                                            for m in self.methods])
        if rank:
            t.add_section()
            t.add_row("max PE ↓", *[f"{_fmt(rank[m]['max_pe'])}\n{rank[m]['worst_variant']}"
                                    for m in self.methods])
            t.add_row("rank", *[str(rank[m]["rank"]) for m in self.methods])
        return t

    def _blocks(self) -> Any:
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        cells, rank = self._cells(), {r["method"]: r for r in self.ranking()}
        parts: list[Any] = [Text(self.title(), style="italic")]
        for m in self.methods:
            head = escape(m)
            if rank:
                r = rank[m]
                head += (f" (rank {r['rank']}, max PE {_fmt(r['max_pe'])} "
                         f"{r['worst_variant']})")
            t = Table(title=head, title_justify="left", show_header=False)
            t.add_column("metric", no_wrap=True)
            t.add_column("mean ±95% CI", justify="right", no_wrap=True)
            for k in self.metrics:
                t.add_row(f"{k} {_arrow(k)}", cells[m][k])
            parts.append(t)
        return Group(*parts)


def _arrow(metric: str) -> str:
    return "↑" if higher_is_better(metric) else "↓"


def _fmt(x: float, digits: int = 4) -> str:
    """A number with `digits` significant digits ('-' for nan)."""
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


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


def _by_reason(reasons: dict[str, str]) -> dict[str, list[str]]:
    """{reason: [names]}: one line per cause (squeeze and squeeze-l share their weights)."""
    out: dict[str, list[str]] = {}
    for name, reason in reasons.items():
        out.setdefault(reason, []).append(name)
    return out


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
    import torch

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
    cl_names = [k for k in metrics if k in CLASSICAL]
    degs = list(degradations) if degradations else [Degradation.resolve("bicubic", scale)]
    bad_scale = [d.name for d in degs if d.scale != scale]
    if bad_scale:
        raise SatsrError(f"degradation {bad_scale[0]} is for another scale than x{scale}")
    tagged = len(degs) > 1 or not degs[0].is_bicubic
    dnames = unique_names([d.name for d in degs])
    rows = [(m, k) for k in range(len(degs)) for m in methods]
    names = [f"{m.name} [{dnames[k]}]" if tagged else m.name for m, k in rows]
    values: dict[str, dict[str, list[float]]] = {
        name: {k: [] for k in metrics if k not in unavailable} for name in names}
    crops: dict[str, np.ndarray] = {}
    rgb_idx = list(rgb)

    def quantise(x: np.ndarray) -> np.ndarray:
        """Through the data's dtype and back: what a written SR raster would hold."""
        return scaling.to_unit(scaling.from_unit(x))

    count = 0
    bar = progress_bar(progress, transient=True)
    with bar:
        task = bar.add_task("evaluating", total=total)
        for batch in _batches(samples, batch_size):
            hr = np.stack([s.hr for s in batch]).astype(np.float32)
            if batch[0].preds is not None:
                if "consistency" in values[names[0]]:
                    raise SatsrError("consistency compares SR degraded back with the LR it was "
                                     "made from: pairs of rasters have no LR", option="metrics")
                given = [s.preds or {} for s in batch]
                preds = {m: np.stack([p[m] for p in given]) for m in names}
            else:
                h, w = hr.shape[-2:]
                if h % scale or w % scale:
                    raise SatsrError(f"{batch[0].label}: {w}x{h} pixels is not a multiple of "
                                     f"the scale {scale}")
                hr_t = torch.from_numpy(hr)
                preds = {}
                for k, d in enumerate(degs):
                    lr = torch.cat([d(hr_t[i:i + 1], np.random.default_rng([seed, count + i]))
                                    for i in range(len(batch))]).clamp_(-1.0, 1.0)
                    for m in methods:
                        sr = m.run(lr.to(device)).float().cpu().numpy()
                        if sr.shape != hr.shape:
                            raise SatsrError(f"method {m.name} returned {sr.shape[1:]} for HR "
                                             f"{hr.shape[1:]}")
                        label = names[rows.index((m, k))]
                        preds[label] = np.stack([quantise(x) for x in sr])
                        if "consistency" in metrics and "consistency" not in unavailable:
                            values[label]["consistency"] += _consistency(
                                preds[label], lr.numpy(), d, seed, count)
            hr_rgb = hr[:, rgb_idx]
            if lp and min(hr.shape[-2:]) < LPIPS_MIN_SIZE:
                raise SatsrError(f"{batch[0].label}: LPIPS needs images of at least "
                                 f"{LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} pixels, got "
                                 f"{hr.shape[-1]}x{hr.shape[-2]} (use metrics l2,dssim,psnr)",
                                 option="metrics")
            for name in names:
                p_rgb = preds[name][:, rgb_idx]
                for i in range(len(batch)):
                    for metric, v in classical(p_rgb[i], hr_rgb[i], cl_names,
                                               colorspace).items():
                        values[name][metric].append(v)
                for metric, fn in lp.items():
                    dist = fn(torch.from_numpy(np.ascontiguousarray(p_rgb)),
                              torch.from_numpy(np.ascontiguousarray(hr_rgb)))
                    values[name][metric].extend(float(x) for x in dist)
                for i in range(len(batch)):
                    _multispectral(values[name], preds[name][i], hr[i], scaling, metrics)
            if count <= figure_index < count + len(batch):
                i = figure_index - count
                crops = _crops(hr_rgb[i], {n: preds[n][i, rgb_idx] for n in names}, figure_crop)
            count += len(batch)
            bar.update(task, advance=len(batch))
    if count == 0:
        raise SatsrError("nothing to evaluate: no images")
    return EvalResult(methods=names, metrics=list(metrics), values=values,
                      unavailable={k: v for k, v in unavailable.items() if k in metrics},
                      info={**(info or {}), "samples": count, "scale": scale,
                            "colorspace": colorspace, "rgb": [i + 1 for i in rgb_idx],
                            "methods": {m.name: m.source for m in methods},
                            **({"degradations": {n: d.to_dict() for n, d in zip(
                                dnames, degs, strict=True)},
                                "degradation_seed": seed} if tagged else {})},
                      figure_crops=crops)


def samples_have_preds(samples: Iterable[Sample]) -> bool:
    """Whether samples carry given predictions (pair mode); looks at a list's first only."""
    return isinstance(samples, list) and bool(samples) and samples[0].preds is not None


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


def _crops(hr: np.ndarray, preds: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """The same centred crop of HR and every prediction, as (h, w, 3) uint8."""
    h, w = hr.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    out = {"HR": to_uint8(hr[:, y:y + ch, x:x + cw])}
    for m, p in preds.items():
        out[m] = to_uint8(p[:, y:y + ch, x:x + cw])
    return out


def write_figure(result: EvalResult, path: str | Path) -> None:
    """A side-by-side of the same crop for HR and every method, labelled (the paper's Fig. 6)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from satsr.data.raster import atomic_path

    crops = result.figure_crops
    if not crops:
        raise SatsrError("no image to draw the figure from")
    n = len(crops)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.2), squeeze=False)
    s = result.summary()
    # vgg-l first: alex-l alone rewards blockiness (nearest often beats bicubic on it)
    lp = sorted([k for k in result.available if k.endswith("-l")],
                key=lambda k: k != "vgg-l") or [k for k in result.available
                                                 if k in LPIPS_VARIANTS]
    for ax, (label, img) in zip(axes[0], crops.items(), strict=True):
        ax.imshow(img, interpolation="nearest")
        title = label
        if label != "HR" and lp:
            title += f"\n{lp[0]} {_fmt(s[label][lp[0]][0])}"
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    suffix = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=150)
    except ValueError as exc:
        raise SatsrError(f"cannot write figure {path}: {exc}") from exc
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------- data sources


def dataset_samples(folder: str | Path) -> tuple[list[Sample] | Iterator[Sample], int,
                                                 BandScaling, dict[str, Any]]:
    """The test chips of a make-dataset folder, scaled with the dataset's scaling."""
    from satsr.data.raster import gdal_env, open_raster, read_window

    index = DatasetIndex.read(folder)
    chips = index.split("test")
    if not chips:
        raise SatsrError(f"dataset {index.root} has no test split (no chip with split=test)")
    scaling = index.scaling

    def gen() -> Iterator[Sample]:
        with gdal_env():
            for c in chips:
                with open_raster(c.path) as ds:
                    data = read_window(ds, None, None, c.path)
                if data.shape[0] != scaling.bands:
                    raise SatsrError(f"chip {c.path} has {data.shape[0]} bands, the dataset "
                                     f"{scaling.bands}")
                yield Sample(str(c.path.name), scaling.to_unit(data))

    return gen(), len(chips), scaling, {"data": str(index.root), "split": "test"}


def model_file_scale(path: str | Path) -> int:
    """The scale factor of a model file or run folder, from its metadata alone."""
    from satsr.inference.modelfile import read_metadata

    return int(read_metadata(path)["arch"]["scale"])


def fitting_model_scaling(model: str | Path, raster: str | Path) -> BandScaling | None:
    """The model's band scaling when `raster` has the model's dtype and band count (the model
    then sees its training units), else None (the rasters' own scaling is used)."""
    from satsr.data.raster import gdal_env, open_raster, select_bands
    from satsr.inference.modelfile import model_scaling, read_metadata

    ms = model_scaling(read_metadata(model))
    with gdal_env(), open_raster(raster) as ds:
        idx = select_bands(ds, None)
        if ds.dtypes[idx[0] - 1] == ms.dtype and len(idx) == ms.bands:
            return ms
    return None


def _even_windows(n: int, size: int, scale: int) -> list[tuple[int, int]]:
    """Split 0..n into near-equal (offset, length) pieces of at most `size`, multiples of scale."""
    usable = n - n % scale
    k = max(1, math.ceil(usable / size))
    edges = [int(round(i * usable / k / scale)) * scale for i in range(k + 1)]
    return [(a, b - a) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def raster_samples(paths: Sequence[str | Path], chip: int, scale: int,
                   scaling: BandScaling | None = None
                   ) -> tuple[Iterator[Sample], int, BandScaling, dict[str, Any]]:
    """Rasters/images as HR, cut into near-equal chips of at most `chip` px (wholly valid only)."""
    from rasterio.windows import Window

    from satsr.data.raster import gdal_env, open_raster, read_window, select_bands, valid_mask

    ps = [Path(p) for p in paths]
    plan: list[tuple[Path, list[int], Window]] = []
    counts = set()
    with gdal_env():
        for p in ps:
            with open_raster(p) as ds:
                idx = select_bands(ds, None)
                counts.add(len(idx))
                if ds.width < scale or ds.height < scale:
                    raise SatsrError(f"{p} ({ds.width}x{ds.height}) is smaller than the scale")
                for y, h in _even_windows(ds.height, chip, scale):
                    for x, w in _even_windows(ds.width, chip, scale):
                        plan.append((p, idx, Window(x, y, w, h)))
    if len(counts) != 1:
        raise SatsrError(f"the rasters have different band counts ({sorted(counts)})")
    bands = counts.pop()
    scaling = scaling or percentile_scaling(ps, bands)
    if scaling.bands != bands:
        raise SatsrError(f"the rasters have {bands} bands, the scaling {scaling.bands}")

    info: dict[str, Any] = {"data": [str(p) for p in ps], "skipped": 0}

    def gen() -> Iterator[Sample]:
        used = 0
        with gdal_env():
            for p, idx, win in plan:
                with open_raster(p) as ds:
                    data = read_window(ds, idx, win, p)
                    if not valid_mask(ds, win, data).all():
                        info["skipped"] += 1  # nodata/NaN inside: metrics would compare fill
                        continue
                used += 1
                yield Sample(f"{p.name}@{win.col_off},{win.row_off}", scaling.to_unit(data))
        if not used:
            raise SatsrError(f"nothing to evaluate: every chip of {', '.join(map(str, ps))} "
                             "holds nodata or NaN")

    return gen(), len(plan), scaling, info


#: --pred/--ref pairs of up to this many pixels are scored whole, in one pass (VGG LPIPS needs
#: about 600 bytes per pixel on CPU: ~2.5 GB at this size).
PAIR_MAX_PIXELS = 2048 * 2048
#: How far (in pixels) --pred's grid may sit from --ref's and still count as the same grid.
GRID_TOLERANCE = 0.01


def _georeferenced(ds: Any) -> bool:
    """Whether a dataset has a CRS or a non-identity geotransform."""
    from affine import Affine

    return ds.crs is not None or ds.transform != Affine.identity()


def _grid(ds: Any) -> str:
    t = ds.transform
    crs = ds.crs.to_string() if ds.crs else "no CRS"
    return f"{crs}, origin ({t.c:.6g}, {t.f:.6g}), pixel {abs(t.a):.6g} x {abs(t.e):.6g}"


def check_same_grid(dp: Any, dr: Any, pred: str | Path, ref: str | Path) -> None:
    """Refuse --pred/--ref that do not lie on the same ground pixels (to GRID_TOLERANCE px).

    Two rasters without georeferencing (plain images) are taken as aligned.
    """
    gp, gr = _georeferenced(dp), _georeferenced(dr)
    if not gp and not gr:
        return
    if gp != gr:
        has, lacks = (pred, ref) if gp else (ref, pred)
        raise SatsrError(f"{has} is georeferenced but {lacks} is not: cannot tell that they "
                         "cover the same ground")
    if dp.crs != dr.crs:
        raise SatsrError(f"pred and ref are in different CRSs: {pred} ({_grid(dp)}) vs "
                         f"{ref} ({_grid(dr)})", option=("pred", "ref"))
    to_ref = ~dr.transform @ dp.transform  # pred pixel -> ref pixel
    w, h = dr.width, dr.height
    off = max(math.hypot(*(np.subtract(to_ref @ (x, y), (x, y))))
              for x, y in ((0, 0), (w, 0), (0, h), (w, h)))
    if off > GRID_TOLERANCE:
        raise SatsrError(f"pred and ref are not on the same pixel grid (up to {off:.3g} px "
                         f"apart): {pred} ({_grid(dp)}) vs {ref} ({_grid(dr)})",
                         option=("pred", "ref"))


def pair_samples(pred: str | Path, ref: str | Path, chip: int = 256, name: str | None = None,
                 max_pixels: int = PAIR_MAX_PIXELS,
                 ) -> tuple[Iterator[Sample], int, BandScaling, str, dict[str, Any]]:
    """Two aligned rasters (SR and HR): the whole image as one sample, or pieces above a budget.

    A pair of at most `max_pixels` pixels, valid everywhere, is one sample: every metric is
    computed on the whole image in one pass. A larger pair, or one holding nodata/NaN, is cut
    into near-equal windows of at most `chip` px; windows holding nodata/NaN are skipped and
    every metric is the mean over the remaining windows (`info["scored"]` says which).
    """
    from rasterio.windows import Window

    from satsr.data.raster import gdal_env, open_raster, read_window, select_bands, valid_mask

    with gdal_env(), open_raster(pred) as dp, open_raster(ref) as dr:
        ip, ir = select_bands(dp, None), select_bands(dr, None)
        if (dp.height, dp.width, len(ip)) != (dr.height, dr.width, len(ir)):
            raise SatsrError(f"pred and ref differ in shape: {pred} is {dp.width}x"
                             f"{dp.height}x{len(ip)} bands, {ref} is {dr.width}x{dr.height}x"
                             f"{len(ir)} bands", option=("pred", "ref"))
        if dp.dtypes[ip[0] - 1] != dr.dtypes[ir[0] - 1]:
            raise SatsrError(f"pred is {dp.dtypes[ip[0] - 1]} but ref is "
                             f"{dr.dtypes[ir[0] - 1]}", option=("pred", "ref"))
        check_same_grid(dp, dr, pred, ref)
        width, height = dr.width, dr.height
        wins = [Window(x, y, w, h) for y, h in _even_windows(height, chip, 1)
                for x, w in _even_windows(width, chip, 1)]
    scaling = percentile_scaling([Path(ref)], len(ir))
    label = name or Path(pred).stem
    whole = width * height <= max_pixels
    info: dict[str, Any] = {"pred": str(pred), "ref": str(ref), "skipped": 0,
                            "scored": "whole image" if whole else
                            f"mean over {chip}-px pieces (image above {max_pixels} pixels)"}

    def sample(lbl: str, a: np.ndarray, b: np.ndarray) -> Sample:
        return Sample(lbl, scaling.to_unit(b), {label: scaling.to_unit(a)})

    def gen() -> Iterator[Sample]:
        bad = {str(pred): 0, str(ref): 0}
        used = 0
        with gdal_env(), open_raster(pred) as dp, open_raster(ref) as dr:
            if whole:
                full = Window(0, 0, width, height)
                a, b = read_window(dp, ip, None, pred), read_window(dr, ir, None, ref)
                va, vb = valid_mask(dp, full, a), valid_mask(dr, full, b)
                if va.all() and vb.all():
                    yield sample("whole", a, b)
                    return
                info["scored"] = f"mean over {chip}-px pieces without nodata/NaN"
            for win in wins:
                sl = win.toslices()
                if whole:
                    band_sl = (slice(None), *sl)
                    pa, pb, ma, mb = a[band_sl], b[band_sl], va[sl], vb[sl]
                else:
                    pa, pb = read_window(dp, ip, win, pred), read_window(dr, ir, win, ref)
                    ma, mb = valid_mask(dp, win, pa), valid_mask(dr, win, pb)
                if not (ma.all() and mb.all()):
                    bad[str(pred)] += int(not ma.all())
                    bad[str(ref)] += int(not mb.all())
                    info["skipped"] += 1
                    continue
                used += 1
                yield sample(f"{win.col_off},{win.row_off}", pa, pb)
        if not used:
            culprits = [p for p, n in bad.items() if n] or [str(pred), str(ref)]
            raise SatsrError(f"nothing to evaluate: {' and '.join(culprits)} "
                             f"{'holds' if len(culprits) == 1 else 'hold'} nodata or NaN in "
                             f"every {chip}-px piece")

    return gen(), 1 if whole else len(wins), scaling, label, info
