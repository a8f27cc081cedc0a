"""The rules that decide what a bundled model records when its run is exported: the round
kept (from the run's val.csv), the fixed correction strength, or the adaptive-strength
variant. All of them read validation-split scores only, never test scores.

`examples/bundled_models.py export` applies them with each recipe's floors; the score
tables they read are `examples/model_eval.py`'s results (`{"mean": {family: {label:
{metric: value}}}}`, bicubic's scores under the label "bicubic").
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from satsr.errors import SatsrError

#: PSNR floor (dB below bicubic's) under the eval families other than clean bicubic LR
OTHER_FAMILY_FLOOR_DB = 0.5

#: One model's scores, or bicubic's: {metric: value}
Scores = Mapping[str, float]


def choose_round(run_dir: Path, criterion: str, floor_db: float) -> dict[str, float]:
    """The round of RUN_DIR/val.csv with the lowest `criterion` among those whose val PSNR
    is at least bicubic's (RUN_DIR/val_bicubic.json) minus `floor_db` dB and whose
    checkpoint was kept (RUN_DIR/snapshots/ckpt-N.pt); round 0, the untrained network,
    never counts. Returns the row ({column: value}, "iteration" included).

    Raises SatsrError when no round qualifies.
    """
    bic = json.loads((run_dir / "val_bicubic.json").read_text())
    with (run_dir / "val.csv").open(newline="") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    ok = [row for row in rows if row["iteration"] > 0
          and row["psnr"] >= bic["psnr"] - floor_db
          and (run_dir / "snapshots" / f"ckpt-{int(row['iteration'])}.pt").is_file()]
    if not ok:
        raise SatsrError(f"{run_dir}: no validation round within {floor_db} dB of bicubic's "
                         "PSNR has a snapshot")
    return min(ok, key=lambda row: row[criterion])


def _psnr_change(row: Scores, base: Scores, kind: str) -> float:
    """Model minus bicubic PSNR in dB: of the mean over bands ("psnr"), or for `kind` "ms"
    the worst band's (the "psnr-bN" columns)."""
    if kind == "ms":
        bands = [k for k in base if k.startswith("psnr-b")]
        return min(row[k] - base[k] for k in bands)
    return row["psnr"] - base["psnr"]


def _changes(val: Mapping[str, Any], label: str, kind: str
             ) -> tuple[dict[str, float], dict[str, float]]:
    """Model `label`'s change against bicubic under every eval family of `val`: the relative
    vgg-l change and the PSNR change in dB (_psnr_change), each {family: value}."""
    dv: dict[str, float] = {}
    dp: dict[str, float] = {}
    for fam, by in val["mean"].items():
        base = by["bicubic"]
        dv[fam] = by[label]["vgg-l"] / base["vgg-l"] - 1
        dp[fam] = _psnr_change(by[label], base, kind)
    return dv, dp


def _family_floor_db(family: str, clean_floor_db: float) -> float:
    """How many dB below bicubic's PSNR a model may fall under eval `family`:
    `clean_floor_db` on clean bicubic LR ("bicubic"), OTHER_FAMILY_FLOOR_DB otherwise."""
    return clean_floor_db if family == "bicubic" else OTHER_FAMILY_FLOOR_DB


def choose_strength(val: Mapping[str, Any], labels: Mapping[str, float], *,
                    clean_floor_db: float, kind: str = "rgb") -> dict[str, Any]:
    """The fixed correction strength of a residual model, from val-split scores.

    `val` scores the model at several strengths under every eval family, model `label`
    being run at strength labels[label]. Kept: the strength with the lowest mean vgg-l
    change against bicubic over the families (relative, each family weighted equally)
    among those within `clean_floor_db` dB of bicubic's PSNR on clean bicubic LR and within
    OTHER_FAMILY_FLOOR_DB dB under the other families (the worst band's PSNR for `kind`
    "ms"); when none is, the one closest to those floors.

    Returns {"strength", "within_floors", "rows" (one per strength: "strength", "ok",
    "mean_vgg_change", "vgg_change" and "psnr_change" per family), "rule" (in words)}.
    """
    rows: list[dict[str, Any]] = []
    for label, a in labels.items():
        dv, dp = _changes(val, label, kind)
        ok = all(dp[fam] >= -_family_floor_db(fam, clean_floor_db) for fam in dp)
        rows.append({"strength": a, "ok": ok, "mean_vgg_change": sum(dv.values()) / len(dv),
                     "vgg_change": dv, "psnr_change": dp})
    ok_rows = [x for x in rows if x["ok"]]
    if ok_rows:
        best = min(ok_rows, key=lambda x: x["mean_vgg_change"])
    else:  # none within the floors: the one closest to them
        best = max(rows, key=lambda x: min(d + _family_floor_db(f, clean_floor_db)
                                           for f, d in x["psnr_change"].items()))
    return {"strength": best["strength"], "within_floors": best["ok"], "rows": rows,
            "rule": "lowest mean vgg-l change over the eval families among strengths within "
                    f"{clean_floor_db:g} dB of bicubic's PSNR on bicubic LR"
                    f"{' (every band)' if kind == 'ms' else ''} and "
                    f"{OTHER_FAMILY_FLOOR_DB:g} dB under the other families (else the one "
                    "closest to those floors); split val"}


def choose_variant(val: Mapping[str, Any], grid: Mapping[str, Mapping[str, Any]],
                   clean_floor_db: float) -> dict[str, Any]:
    """The adaptive-strength variant of a residual model, from val-split scores.

    `val` scores every variant of `grid` (labelled by its key; each value holds its
    "strength" and "adaptive" thresholds) under every eval family. The floors: PSNR >=
    bicubic's minus `clean_floor_db` dB on clean bicubic LR; PSNR >= bicubic's minus
    OTHER_FAMILY_FLOOR_DB dB and vgg-l <= bicubic's under every other family. Kept: among
    the variants that fail the fewest floors, the one with the lowest vgg-l on clean LR.

    Returns {"variant", "strength", "adaptive", the kept entry's other keys (e.g. "scope"),
    "within_floors", "rows" (one per variant:
    the grid entry, "ok", "vgg_change", "psnr_change", "mean_vgg_change", "failed" (the
    floors it fails, e.g. "nearest vgg-l")), "rule" (in words)}.
    """
    rows: list[dict[str, Any]] = []
    for label, v in grid.items():
        dv, dp = _changes(val, label, "rgb")
        # "ok" is "no floor failed" (the comparisons are written so that NaN fails)
        failed = [f"{f} {what}" for f in dv
                  for what, bad in (("PSNR", not dp[f] >= -_family_floor_db(f, clean_floor_db)),
                                    ("vgg-l", f != "bicubic" and not dv[f] <= 0))
                  if bad]
        rows.append({"variant": label, **v, "ok": not failed, "vgg_change": dv,
                     "psnr_change": dp, "mean_vgg_change": sum(dv.values()) / len(dv),
                     "failed": failed})
    fewest = min(len(x["failed"]) for x in rows)
    best = min((x for x in rows if len(x["failed"]) == fewest),
               key=lambda x: x["vgg_change"]["bicubic"])
    extra = {k: v for k, v in grid[best["variant"]].items() if k not in ("strength", "adaptive")}
    return {"variant": best["variant"], "strength": best["strength"],
            "adaptive": best["adaptive"], **extra, "within_floors": best["ok"], "rows": rows,
            "rule": "lowest vgg-l on clean bicubic LR among the variants that fail fewest of "
                    f"the floors (PSNR >= bicubic's - {clean_floor_db:g} dB on clean LR; PSNR "
                    f">= bicubic's - {OTHER_FAMILY_FLOOR_DB:g} dB and vgg-l <= bicubic's under "
                    "every other family); split val"}
