"""The README's before / after tables of the bundled models, from test evals already written.

    python examples/before_after.py LABEL=EVAL.json:MODEL [LABEL=EVAL.json:MODEL ...]

e.g. `0.2=examples/results/rgb-x4-0.3/eval.json:before
0.3=examples/results/rgb-x4-0.3/eval.json:satsr-rgb-x4
0.4=satsr/assets/models/satsr-rgb-x4.eval.json:satsr-rgb-x4`. Each EVAL.json is a
`model_eval.eval_rgb` result (`bundled_models.py export` writes one per bundled model, the
model before it scored beside it as `before`); the evals must have scored the same test chips
(checked: the same sources and chip counts, and bicubic's scores equal). Each cell: the
change against bicubic on the same LR in vgg-l / PSNR / alex-l, each source weighted
equally, over all sources and over the sub-metre ones (where the evals have any: not those of
the band-by-band `satsr-ms-x4`). Nothing is measured again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: the sources of ground sampling distance under 1 m (the issue's "sub-metre imagery")
SUB_METRE = ("bali_drone_rgba_0.35m", "manila_aerial_0.1m", "neon-HARV", "neon-OSBS",
             "neon-SJER", "netherlands_aerial_0.25m")
METRICS = ("vgg-l", "psnr", "alex-l")


def mean_scores(doc: dict[str, Any], model: str, family: str,
                sources: tuple[str, ...] | None) -> tuple[dict[str, float], dict[str, float]]:
    """(model, bicubic) scores under `family`, the equal-weight mean over `sources` (all when
    None)."""
    names = [s for s in doc["per_source"] if sources is None or s in sources]
    out = []
    for who in (model, "bicubic"):
        out.append({m: sum(doc["per_source"][s]["scores"][family][who][m] for s in names)
                    / len(names) for m in METRICS})
    return out[0], out[1]


def cell(model: dict[str, float], bic: dict[str, float]) -> str:
    return (f"{100 * (model['vgg-l'] / bic['vgg-l'] - 1):+.1f} % / "
            f"{model['psnr'] - bic['psnr']:+.2f} dB / "
            f"{100 * (model['alex-l'] / bic['alex-l'] - 1):+.0f} %")


def check_same_chips(docs: list[dict[str, Any]]) -> None:
    first = docs[0]
    for doc in docs[1:]:
        for s, v in first["per_source"].items():
            other = doc["per_source"].get(s)
            if other is None or other["chips"] != v["chips"]:
                raise SystemExit(f"the evals did not score the same test chips ({s})")
            for fam, by in v["scores"].items():
                a, b = by["bicubic"], other["scores"][fam]["bicubic"]
                if any(abs(a[m] - b[m]) > 1e-6 * max(1.0, abs(a[m])) for m in METRICS):
                    raise SystemExit(f"bicubic differs between the evals ({s}, {fam})")


def radiometry_rows(docs: list[tuple[str, dict[str, Any], str]], pads: int) -> list[str]:
    """Band bias (mean SR - mean LR, DN of 8 bits) and flat-block grain (SR / HR
    high-frequency energy where HR is flat; bicubic's in brackets), pooled over all sources
    (satsr.evaluation.radiometry, clean bicubic LR)."""
    bias, grain = [], []
    for _, doc, model in docs:
        rad = doc.get("radiometry", {})
        mine = rad.get(model)
        if not mine:
            bias.append("n/a")
            grain.append("n/a")
            continue
        if mine.get("band_bias") is None:  # sources of different bands: |bias| in % of range
            bias.append(f"mean {100 * mine['mean_abs_band_bias']:.3f} %, worst "
                        f"{100 * mine['worst_band_bias']:.3f} % of range")
        else:
            bias.append(" / ".join(f"{255 * b:+.2f}" for b in mine["band_bias"]) + " DN")
        grain.append(f"{mine['flat_grain']:.2f} (bicubic {rad['bicubic']['flat_grain']:.2f})")
    if all(b == "n/a" for b in bias):  # a band-by-band model's eval does not measure them
        return []
    pad = " |" * pads
    return [f"| band bias (mean SR - mean LR) | {' | '.join(bias)} |{pad}",
            f"| flat-block grain (SR / HR) | {' | '.join(grain)} |{pad}"]


def table(specs: list[tuple[str, Path, str]]) -> str:
    loaded = [(label, json.loads(path.read_text()), model) for label, path, model in specs]
    check_same_chips([doc for _, doc, _ in loaded])
    n = len(loaded[0][1]["per_source"])
    # the sub-metre columns where the evals have sub-metre sources (not a band-by-band model's)
    subs = [None, *([SUB_METRE] if set(SUB_METRE) & set(loaded[0][1]["per_source"]) else [])]
    head = "| LR made by | " + " | ".join(
        f"{label}, {'sub-metre' if sub else f'all {n} sources'}"
        for sub in subs for label, _, _ in loaded) + " |"
    rows = [head, "|---|" + "---|" * (len(subs) * len(loaded))]
    for fam in loaded[0][1]["mean"]:
        cells = [cell(*mean_scores(doc, model, fam, sub))
                 for sub in subs for _, doc, model in loaded]
        rows.append(f"| {fam} | " + " | ".join(cells) + " |")
    rows += radiometry_rows(loaded, (len(subs) - 1) * len(loaded))
    return "\n".join(rows)


def main() -> None:
    specs = []
    for arg in sys.argv[1:]:
        label, _, rest = arg.partition("=")
        path, _, model = rest.rpartition(":")
        if not (label and path and model):
            raise SystemExit(f"{arg!r}: expected LABEL=EVAL.json:MODEL")
        specs.append((label, Path(path), model))
    if not specs:
        raise SystemExit(__doc__)
    print(table(specs))


if __name__ == "__main__":
    main()
