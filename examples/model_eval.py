"""Per-source, per-degradation scores of satsr models against bicubic (issues 11, 12, 13).

    # 8-bit RGB models on a make-dataset folder (its val or test split)
    python examples/model_eval.py rgb DATASET --model new=PATH [--model old=PATH] \\
        --split test --cap 24 --json OUT.json [--md OUT.md]
    # a band-by-band model on the per-source datasets of `satsr band-samples`
    python examples/model_eval.py ms BANDS_DATASET --model ms=PATH --split test --json OUT.json

Every source counts the same (the mean over sources of each source's mean over its chips, at
most --cap chips per source, evenly spaced through its split). NEON tiles count by site. The
LR of each chip is made by each degradation family of `satsr eval --degradation families`
(or, with `--degradations outside|all`, the OUTSIDE pipelines: parameters beyond the
training preset's ranges), with draws per chip from --seed, so every method sees the very
same LR.

Extra checks written to the JSON:
- `periodic`: the SR spectrum's energy at the period-2 and period-4 lattice frequencies of a
  x4 upsampler, over HR's at the same frequencies (Hann-windowed luminance, mean over chips):
  a checkerboard shows as a ratio well above 1.
- `ms` only, `saturation`: on chips whose LR holds values above the training range (p99.9),
  per band |max(SR) - max(LR)| / (p99.9 - p0.1), the SR made by `forward_unclipped` on the
  unclipped LR (what `satsr upscale` does), and the same for bicubic on the unclipped LR.
Both measures are satsr.evaluation.artefacts (tests/test_artefacts.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from satsr.data.degrade import EVAL_FAMILIES, Degradation
from satsr.data.index import Chip, DatasetIndex
from satsr.data.scaling import BandScaling
from satsr.evaluation import artefacts
from satsr.evaluation import scoring as ev

SCALE = 4
BICUBIC = Degradation.resolve("bicubic", SCALE)
NEON_SITE = re.compile(r"^(?P<site>[A-Z]{4})_\d+$")

#: Pipelines whose parameters lie outside the `realistic` preset's ranges (JPEG 30-95, MTF
#: 0.15-0.7, read noise <= 1.5 %, shot <= 2.5 %, reprojection ratios 0.625-1.5).
OUTSIDE: dict[str, dict[str, Any]] = {
    "jpeg-q10-25": {"steps": [{"downscale": {"method": "bicubic"}},
                              {"jpeg": {"quality": [10, 25]}}]},
    "blur-mtf0.1": {"steps": [{"blur": {"mtf": [0.08, 0.12]}},
                              {"downscale": {"method": "area"}}]},
    "noise-3%": {"steps": [{"downscale": {"method": "bicubic"}},
                           {"noise": {"read": [0.025, 0.035]}}]},
    "nearest-reproject-1.6-1.9": {
        "steps": [{"downscale": {"method": "nearest", "ratio": [1.6, 1.9]}},
                  {"resize": {"method": "nearest"}}]},
}


def group_of(source: str) -> str:
    """The source a chip counts for: the raster's stem, NEON tiles by site."""
    stem = Path(source).stem.replace("_without_demo", "")
    m = NEON_SITE.match(stem)
    return f"neon-{m['site']}" if m else stem


def pick(chips: Sequence[Chip], cap: int) -> list[Chip]:
    """At most `cap` chips, evenly spaced through the list (deterministic)."""
    if len(chips) <= cap:
        return list(chips)
    return [chips[int(i * len(chips) / cap)] for i in range(cap)]


def read_chip(chip: Chip) -> np.ndarray:
    from satsr.data.raster import open_raster, read_window

    with open_raster(chip.path) as ds:
        return read_window(ds, None, None, chip.path)


def degradations(which: str) -> list[Degradation]:
    """`families` (satsr eval's), `outside` (OUTSIDE) or `all`."""
    degs = []
    if which in ("families", "all"):
        degs += [Degradation.resolve(f, SCALE) for f in EVAL_FAMILIES]
    if which in ("outside", "all"):
        degs += [Degradation.from_dict(d, SCALE, source=f"outside '{k}'", name=k)
                 for k, d in OUTSIDE.items()]
    return degs


def _split_row(row: str) -> tuple[str, str]:
    m = re.match(r"^(?P<method>.*) \[(?P<deg>[^\]]+)\]$", row)
    return (m["method"], m["deg"]) if m else (row, "bicubic")


def score_group(samples: list[ev.Sample], methods: list[ev.Method], metrics: list[str],
                scaling: BandScaling, rgb: Sequence[int], degs: list[Degradation],
                seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """{degradation: {method: {metric: mean over the samples}}}."""
    res = ev.score_samples(samples, methods, metrics, scaling, SCALE, rgb, progress=False,
                           degradations=degs, seed=seed, total=len(samples))
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for row in res.methods:
        method, deg = _split_row(row)
        out[deg][method] = {k: float(np.mean(v)) for k, v in res.values[row].items()}
    return dict(out)


# ------------------------------------------------------------------ periodic artefacts


def periodic(samples: list[ev.Sample], methods: list[ev.Method], rgb: Sequence[int],
             deg: Degradation, seed: int) -> dict[str, dict[str, float]]:
    """Per method: SR lattice energy over HR's (satsr.evaluation.artefacts.periodic_ratios)."""
    return artefacts.periodic_ratios(samples, methods, rgb, deg, seed)


def radiometry(samples: list[ev.Sample], methods: list[ev.Method], deg: Degradation,
               seed: int) -> dict[str, dict[str, Any]]:
    """Per method (and HR): mean band bias (fractions of the range, satsr.evaluation.
    radiometry.band_bias) and the flat-block grain ratio SR / HR (sums over chips)."""
    from satsr.evaluation.radiometry import band_bias, flat_grain

    bias: dict[str, list[np.ndarray]] = defaultdict(list)
    grain: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(2))
    for i, s in enumerate(samples):
        hr = torch.from_numpy(s.hr[None].astype(np.float32))
        lr = deg(hr, np.random.default_rng([seed, i])).clamp(-1.0, 1.0)
        for m in methods:
            sr = m.run(lr).float().numpy()[0]
            bias[m.name].append(band_bias(lr.numpy()[0], sr))
            g_sr, g_hr, n = flat_grain(s.hr, sr)
            if n:
                grain[m.name] += (g_sr * n, g_hr * n)
    return {m.name: {"band_bias": np.mean(bias[m.name], axis=0).tolist(),
                     "flat_grain": (float(grain[m.name][0] / grain[m.name][1])
                                    if grain[m.name][1] > 0 else None)} for m in methods}


# ------------------------------------------------------------------------ RGB datasets


def eval_rgb(dataset: Path, models: dict[str, Path], split: str, cap: int, seed: int,
             which: str, metrics: list[str], only: Sequence[str] | None = None,
             per_raster: bool = False) -> dict[str, Any]:
    """Scores per source (`only`: these sources; merge() joins such parts) and their
    equal-weight means. `per_raster`: a model whose file says `adaptive_scope: raster`
    decides one share per source and LR family from all of that source's chips in the split
    (RasterModel), as `satsr upscale` decides for a raster holding them; without it each chip
    is its own raster (what `satsr eval` does)."""
    index = DatasetIndex.read(dataset)
    scaling = index.scaling
    chips = index.split(split)
    if not chips:
        raise SystemExit(f"{dataset} has no {split} chips")
    groups: dict[str, list[Chip]] = defaultdict(list)
    for c in chips:
        if only is None or group_of(c.source) in only:
            groups[group_of(c.source)].append(c)
    deciders = [RasterModel(p, n) for n, p in models.items()] if per_raster else []
    deciders = [d for d in deciders if d.scope == "raster"]
    by_name = {d.name: d for d in deciders}
    for d in deciders:
        d.check_scaling(scaling)
    methods = [by_name[n].method() if n in by_name else ev.model_method(p, scaling, SCALE, name=n)
               for n, p in models.items()]
    methods.append(ev.classical_method("bicubic", SCALE))
    degs = degradations(which)
    per_source: dict[str, Any] = {}
    per_periodic: dict[str, Any] = {}
    for g in sorted(groups):
        sel = pick(groups[g], cap)
        samples = [ev.Sample(c.path.name, scaling.to_unit(read_chip(c))) for c in sel]
        t0 = time.time()
        if deciders:
            every = [torch.from_numpy(scaling.to_unit(read_chip(c)).astype(np.float32))[None]
                     for c in groups[g]]
            scores, decisions = {}, {}
            for d in degs:
                decisions[d.name] = {m.name: m.decide(every, d, seed) for m in deciders}
                scores.update(score_group(samples, methods, metrics, scaling, [0, 1, 2], [d],
                                          seed))
            for m in deciders:
                m.decide(every, BICUBIC, seed)
            per_source[g] = {"chips": len(samples), "scores": scores, "decisions": decisions}
        else:
            per_source[g] = {"chips": len(samples),
                             "scores": score_group(samples, methods, metrics, scaling,
                                                   [0, 1, 2], degs, seed)}
        per_periodic[g] = periodic(samples, methods, [0, 1, 2], BICUBIC,
                                   seed)
        per_source[g]["radiometry"] = radiometry(samples, methods, BICUBIC, seed)
        print(f"{g}: {len(samples)} chips, {time.time() - t0:.0f} s", file=sys.stderr)
    return _finish(per_source, per_periodic, [m.name for m in methods], degs, metrics,
                   {"dataset": str(dataset), "split": split, "cap": cap, "seed": seed,
                    "per_raster": per_raster,
                    "models": {n: str(p) for n, p in models.items()}})


class RasterModel:
    """A model file whose correction share is decided per raster (satsr.inference.decision):
    `decide` draws the LR of every chip of a source under one degradation (seeded per chip,
    apart from the scored draws) and sets the share the model's method then uses."""

    def __init__(self, path: Path, name: str) -> None:
        from satsr.inference.modelfile import load_model

        self.name, self.path = name, path
        self.gen, self.meta = load_model(path, "cpu")
        self.scope = self.meta.get("adaptive_scope", "tile")

    def check_scaling(self, scaling: BandScaling) -> None:
        from satsr.inference.modelfile import model_scaling

        if model_scaling(self.meta).to_dict() != scaling.to_dict():
            raise SystemExit(f"{self.path}: --per-raster needs data in the model's scaling")

    def decide(self, hr: list[torch.Tensor], deg: Degradation, seed: int) -> str:
        from satsr.inference.decision import decide

        lr = torch.cat([deg(t, np.random.default_rng([seed, 1_000_000 + i]))
                        for i, t in enumerate(hr)]).clamp_(-1.0, 1.0)
        assert self.gen.probe is not None and self.gen.adaptive is not None
        d = decide(self.gen.probe, lr, self.gen.adaptive, self.meta.get("jpeg_share"))
        self.gen.fixed_share = d.share
        return d.tag()

    def method(self) -> ev.Method:
        def run(lr: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return self.gen(lr.float())

        return ev.Method(self.name, run, str(self.path))


# --------------------------------------------------------------- band-by-band datasets


def bandwise_method(path: Path, name: str) -> tuple[ev.Method, Any]:
    """A 1-band model run on every band of (B, C, h, w) unit tensors (band by band)."""
    from satsr.inference.modelfile import load_model

    gen, meta = load_model(path, "cpu")
    if int(meta["arch"]["bands"]) != 1:
        raise SystemExit(f"{path}: not a single-band (band-by-band) model")

    def run(lr: torch.Tensor) -> torch.Tensor:
        b, c, h, w = lr.shape
        with torch.inference_mode():
            y = gen(lr.reshape(b * c, 1, h, w).float())
        return y.reshape(b, c, h * SCALE, w * SCALE)

    return ev.Method(name, run, str(path)), gen


def _ms_sources(bands_dataset: Path, split: str, cap: int) -> Iterator[dict[str, Any]]:
    """Each per-source dataset the band-samples folder was made from: its group, chips
    (raster units) and band scaling (the per-source band ranges band-samples measured)."""
    import rasterio

    from satsr.data.bands import band_names, rgb_bands

    meta = DatasetIndex.read(bands_dataset).meta["band_samples"]
    ranges: dict[str, list[list[float]]] = meta["ranges"]
    for folder in meta["from"]:
        index = DatasetIndex.read(folder)
        chips = index.split(split)
        if not chips:
            print(f"{folder}: no {split} chips, skipped", file=sys.stderr)
            continue
        src = chips[0].source
        lo, hi = zip(*ranges[src], strict=True)
        with rasterio.open(src) as ds:
            names = band_names(ds)
        sel_bands = [int(b) for b in index.meta["bands"]]
        sel = pick(chips, cap)
        yield {"group": group_of(src), "scaling": BandScaling("float32", tuple(lo), tuple(hi)),
               "chips": sel, "raw": [read_chip(c).astype(np.float64) for c in sel],
               "band_names": [names[b - 1] for b in sel_bands],
               "rgb": rgb_bands(names, sel_bands) or [0, 0, 0]}


def eval_ms(bands_dataset: Path, models: dict[str, Path], split: str, cap: int, seed: int,
            which: str, metrics: list[str]) -> dict[str, Any]:
    """Each per-source dataset the band-samples folder was made from, in the unit space of
    the per-source band ranges it measured (what the model was trained in and what
    `satsr upscale --scaling auto` estimates from a raster)."""
    built = {n: bandwise_method(p, n) for n, p in models.items()}
    methods = [m for m, _ in built.values()] + [ev.classical_method("bicubic", SCALE)]
    gens = {n: gen for n, (_, gen) in built.items()}
    degs = degradations(which)
    per_source: dict[str, Any] = {}
    per_periodic: dict[str, Any] = {}
    saturation: dict[str, Any] = {}
    for s in _ms_sources(bands_dataset, split, cap):
        scaling, raw, g = s["scaling"], s["raw"], s["group"]
        samples = [ev.Sample(c.path.name, scaling.to_unit(r)) for c, r in zip(s["chips"], raw,
                                                                                strict=True)]
        t0 = time.time()
        per_source[g] = {"chips": len(samples), "bands": len(scaling.lo),
                         "band_names": s["band_names"], "rgb": s["rgb"],
                         "scores": score_group(samples, methods, metrics, scaling, s["rgb"],
                                               degs, seed)}
        per_source[g]["radiometry"] = radiometry(samples, methods, BICUBIC, seed)
        per_periodic[g] = periodic(samples, methods, s["rgb"], BICUBIC, seed)
        saturation[g] = _source_saturation(s, gens)
        print(f"{g}: {len(samples)} chips, {time.time() - t0:.0f} s", file=sys.stderr)
    out = _finish(per_source, per_periodic, [m.name for m in methods], degs, metrics,
                  {"bands_dataset": str(bands_dataset), "split": split, "cap": cap,
                   "seed": seed, "models": {n: str(p) for n, p in models.items()}})
    out["saturation"] = saturation
    return out


def saturation_ms(bands_dataset: Path, models: dict[str, Path], split: str, cap: int
                  ) -> dict[str, Any]:
    """Only eval_ms's saturation check, on the same chips."""
    gens = {n: bandwise_method(p, n)[1] for n, p in models.items()}
    return {s["group"]: _source_saturation(s, gens)
            for s in _ms_sources(bands_dataset, split, cap)}


def _source_saturation(source: dict[str, Any], gens: dict[str, Any]) -> dict[str, Any]:
    """satsr.evaluation.artefacts.saturation of each model (its forward_unclipped) and of
    bicubic on one `_ms_sources` item's chips."""
    units = [source["scaling"].to_unit(r, clip=False) for r in source["raw"]]

    def bicubic(x: torch.Tensor) -> torch.Tensor:
        return artefacts.bicubic_unclipped(x, SCALE)

    return {**{n: artefacts.saturation(units, gen.forward_unclipped, SCALE)
               for n, gen in gens.items()},
            "bicubic": artefacts.saturation(units, bicubic, SCALE)}


# ---------------------------------------------------------------------------- summary


def _finish(per_source: dict[str, Any], per_periodic: dict[str, Any], methods: list[str],
            degs: list[Degradation], metrics: list[str], info: dict[str, Any]) -> dict[str, Any]:
    """Equal-weight means over sources, and the sources where a model loses to bicubic."""
    dnames = ev.unique_names([d.name for d in degs])
    mean: dict[str, dict[str, dict[str, float]]] = {}
    for d in dnames:
        mean[d] = {}
        for m in methods:
            # metrics every source has (per-band PSNR: sources differ in band count)
            keys = set.intersection(*(set(v["scores"][d][m]) for v in per_source.values()))
            mean[d][m] = {k: float(np.mean([s["scores"][d][m][k] for s in per_source.values()]))
                          for k in sorted(keys)}
    worse: dict[str, dict[str, list[str]]] = {}
    for d in dnames:
        worse[d] = {}
        for m in methods[:-1]:
            worse[d][m] = [g for g, s in per_source.items()
                           if "vgg-l" in s["scores"][d][m]
                           and s["scores"][d][m]["vgg-l"] > s["scores"][d]["bicubic"]["vgg-l"]]
    per_method_periodic = {m: {p: float(np.mean([v[m][p] for v in per_periodic.values()]))
                               for p in ("period2", "period4")} for m in methods}
    rad = [s["radiometry"] for s in per_source.values() if "radiometry" in s]
    # a mean per band where every source has the same bands (RGB datasets), else none
    same_bands = len({len(r[methods[0]]["band_bias"]) for r in rad}) == 1
    pooled_rad = {m: {"band_bias": (np.mean([r[m]["band_bias"] for r in rad], axis=0).tolist()
                                    if same_bands else None),
                      "mean_abs_band_bias": float(np.mean([abs(b) for r in rad
                                                           for b in r[m]["band_bias"]])),
                      "worst_band_bias": float(max(abs(b) for r in rad
                                                   for b in r[m]["band_bias"])),
                      "flat_grain": float(np.nanmean([np.nan if r[m]["flat_grain"] is None
                                                      else r[m]["flat_grain"] for r in rad]))}
                  for m in methods} if rad else {}
    return {"info": {**info, "degradations": {n: d.to_dict() for n, d in zip(
                dnames, degs, strict=True)}, "metrics": metrics},
            "mean": mean, "worse_than_bicubic_vgg-l": worse,
            "periodic": per_method_periodic, "periodic_per_source": per_periodic,
            "radiometry": pooled_rad,
            "per_source": per_source}


def merge(parts: list[dict[str, Any]], which: str) -> dict[str, Any]:
    """One result from eval_rgb results over disjoint sources (same models, split, metrics)."""
    per_source: dict[str, Any] = {}
    per_periodic: dict[str, Any] = {}
    for p in parts:
        per_source.update(p["per_source"])
        per_periodic.update(p["periodic_per_source"])
    first = parts[0]
    methods = list(next(iter(first["mean"].values())))
    return _finish(per_source, per_periodic, methods, degradations(which),
                   first["info"]["metrics"], {k: v for k, v in first["info"].items()
                                              if k not in ("degradations", "metrics")})


def markdown(result: dict[str, Any], baseline: str = "bicubic") -> str:
    """One table: rows = degradation x model; vgg-l, alex-l, PSNR and their change."""
    mean = result["mean"]
    lines = ["| LR made by | model | vgg-l | Δ vgg-l | alex-l | Δ alex-l | PSNR | Δ PSNR "
             "| sources worse on vgg-l |", "|---|---|---|---|---|---|---|---|---|"]
    for d, rows in mean.items():
        b = rows[baseline]
        lines.append(f"| {d} | {baseline} | {b['vgg-l']:.4f} | | {b['alex-l']:.4f} | | "
                     f"{b['psnr']:.2f} | | |")
        for m, v in rows.items():
            if m == baseline:
                continue
            worse = result["worse_than_bicubic_vgg-l"][d][m]
            lines.append(
                f"| {d} | {m} | {v['vgg-l']:.4f} | {100 * (v['vgg-l'] / b['vgg-l'] - 1):+.1f} % "
                f"| {v['alex-l']:.4f} | {100 * (v['alex-l'] / b['alex-l'] - 1):+.1f} % | "
                f"{v['psnr']:.2f} | {v['psnr'] - b['psnr']:+.2f} dB | "
                f"{', '.join(worse) if worse else 'none'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["rgb", "ms"])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--cap", type=int, default=24, help="Chips per source at most.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--degradations", default="families",
                    choices=["families", "outside", "all"],
                    help="satsr eval's families, the OUTSIDE pipelines, or both.")
    ap.add_argument("--per-raster", action="store_true",
                    help="Models with adaptive_scope raster decide per source and family.")
    ap.add_argument("--only", help="Comma-separated sources (groups) to score.")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--md", type=Path)
    a = ap.parse_args(argv)
    models = {}
    for spec in a.model:
        name, _, path = spec.partition("=")
        if not path:
            ap.error(f"--model wants NAME=PATH, got {spec!r}")
        models[name] = Path(path)
    if a.kind == "rgb":
        res = eval_rgb(a.dataset, models, a.split, a.cap, a.seed, a.degradations,
                       ["psnr", "alex-l", "vgg-l"], a.only.split(",") if a.only else None,
                       a.per_raster)
    else:
        res = eval_ms(a.dataset, models, a.split, a.cap, a.seed, a.degradations,
                      ["psnr", "band-psnr", "sam", "consistency", "alex-l", "vgg-l"])
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1) + "\n")
    table = markdown(res)
    if a.md:
        a.md.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
