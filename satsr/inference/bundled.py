"""Models and sample data shipped inside the package.

A bundled model is a satsr model file (`satsr/assets/models/NAME.safetensors`, fp16 weights
plus the usual metadata, loaded without executing code) with a model card next to it
(`NAME.md`: data, variant, budget, hardware, time taken and its eval table). `satsr upscale`
without `--model` uses DEFAULT_MODEL; `--model NAME` selects any bundled model by name, and
`satsr models` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from satsr.errors import SatsrError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MODELS_DIR = ASSETS / "models"
#: The model `satsr upscale` uses when no --model is given.
DEFAULT_MODEL = "satsr-rgb-x4"
#: The sample GeoTIFF of `satsr demo` (an area kept out of the bundled model's training data).
SAMPLE = ASSETS / "sample_manila_0.1m.tif"


@dataclass
class BundledModel:
    name: str
    path: Path
    card: Path | None

    def summary(self) -> str:
        """The card's first paragraph after its title (one line), or ''."""
        if self.card is None:
            return ""
        lines = self.card.read_text(encoding="utf-8").splitlines()
        para: list[str] = []
        for line in lines:
            if line.startswith("#"):
                if para:
                    break
                continue
            if not line.strip():
                if para:
                    break
                continue
            para.append(line.strip())
        return " ".join(para)


def bundled_models() -> list[BundledModel]:
    """Every bundled model, default first."""
    if not MODELS_DIR.is_dir():
        return []
    found = []
    for p in sorted(MODELS_DIR.glob("*.safetensors")):
        card = p.with_suffix(".md")
        found.append(BundledModel(p.stem, p, card if card.is_file() else None))
    found.sort(key=lambda m: (m.name != DEFAULT_MODEL, m.name))
    return found


def bundled_model(name: str) -> BundledModel | None:
    """The bundled model called `name` ('default' is DEFAULT_MODEL), or None."""
    if name == "default":
        name = DEFAULT_MODEL
    for m in bundled_models():
        if m.name == name:
            return m
    return None


def default_model_path() -> Path:
    """The file of the default model, or one clear error when the package lacks it."""
    m = bundled_model(DEFAULT_MODEL)
    if m is None:
        raise SatsrError(f"the bundled default model {DEFAULT_MODEL}.safetensors is missing "
                         f"from {MODELS_DIR} (a broken install?): give model or method",
                         option=("model", "method"))
    return m.path
