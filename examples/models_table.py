"""The README's bundled models x degradations table, from satsr/assets/models/*.eval.json.

    python examples/models_table.py

Each cell: the model's change against bicubic on the same LR, over its own test split
(each source weighted equally): vgg-l in %, PSNR in dB, and alex-l in % (lower LPIPS is
better). Written by `examples/bundled_models.py export`; nothing here is measured again.
"""

from __future__ import annotations

import json
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "satsr" / "assets" / "models"


def cell(model: dict[str, float], bic: dict[str, float]) -> str:
    return (f"{100 * (model['vgg-l'] / bic['vgg-l'] - 1):+.1f} % / "
            f"{model['psnr'] - bic['psnr']:+.2f} dB / "
            f"{100 * (model['alex-l'] / bic['alex-l'] - 1):+.0f} %")


def table() -> str:
    rows, families = [], None
    for path in sorted(MODELS.glob("*.eval.json")):
        name = path.name.removesuffix(".eval.json")
        doc = json.loads(path.read_text())
        mean = doc["mean"]
        families = families or list(mean)
        data = Path(doc["info"].get("dataset") or doc["info"].get("bands_dataset", "")).name
        rows.append(f"| {name} ({data}, {len(doc['per_source'])} sources) | "
                    + " | ".join(cell(mean[f][name], mean[f]["bicubic"]) if f in mean
                                 else "n/a" for f in families) + " |")
    head = "| model (test split) | " + " | ".join(families or []) + " |"
    return "\n".join([head, "|---|" + "---|" * len(families or []), *rows])


if __name__ == "__main__":
    print(table())
