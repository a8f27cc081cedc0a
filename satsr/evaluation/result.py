"""The eval verb's result: per-sample values, mean and 95% CI, best methods, minimax-PE
ranking, and the JSON, CSV and console tables that report them.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from satsr.evaluation.layout import FirstThatFits
from satsr.evaluation.metrics import LPIPS_VARIANTS, higher_is_better, is_better

# Deferred imports: scipy and rich are imported by the functions that use them (see
# satsr.evaluation.scoring).


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



def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """The mean of a - b over paired samples (one score of two methods per chip) and its
    Student-t 95% confidence interval: {"mean", "ci95" (half-width), "lo", "hi", "n"}.
    The interval excludes 0 when the two methods differ significantly."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    m, ci = mean_ci(d.tolist())
    return {"mean": m, "ci95": ci, "lo": m - ci, "hi": m + ci, "n": int(d.size)}


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


def _by_reason(reasons: dict[str, str]) -> dict[str, list[str]]:
    """{reason: [names]}: one line per cause (squeeze and squeeze-l share their weights)."""
    out: dict[str, list[str]] = {}
    for name, reason in reasons.items():
        out.setdefault(reason, []).append(name)
    return out
