"""Layers only import downwards: read every module's imports with `ast`, run nothing.

satsr.data and satsr.nn are the bottom layers (rasters, band scaling, degradations; the
networks, their weights, devices and process groups): they import nothing from training,
inference, evaluation, the CLI or the demo. inference imports neither training nor
evaluation; evaluation does not import training; training does not import the CLI. Imports
inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "satsr"

#: package -> the satsr packages/modules it must not import. The order, bottom up: data, nn,
#: inference (runs networks), evaluation (scores what inference makes), training (saves model
#: files, validates with evaluation's metrics), cli and demo on top.
FORBIDDEN = {
    "data": ("satsr.training", "satsr.inference", "satsr.evaluation", "satsr.cli", "satsr.demo"),
    "nn": ("satsr.training", "satsr.inference", "satsr.evaluation", "satsr.cli", "satsr.demo"),
    "inference": ("satsr.training", "satsr.evaluation", "satsr.cli", "satsr.demo"),
    "evaluation": ("satsr.training", "satsr.cli", "satsr.demo"),
    "training": ("satsr.cli", "satsr.demo"),
}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a module's source; `from satsr import x` gives
    satsr.x; relative imports resolve against `package` (the module's package)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def _violations(layer: str) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
        for line, name in imported_modules(path.read_text(encoding="utf-8"), package):
            for banned in FORBIDDEN[layer]:
                if name == banned or name.startswith(banned + "."):
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
                    break
    return bad


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downwards(layer: str) -> None:
    assert (PACKAGE / layer).is_dir()
    assert _violations(layer) == []


def test_the_check_sees_each_kind_of_import() -> None:
    """Plain, from-, function-level and relative imports are all found."""
    source = ("import satsr.cli\nfrom satsr import training\n"
              "def f():\n    from ..evaluation import metrics\n    from . import vgg\n")
    names = {n for _, n in imported_modules(source, "satsr.nn")}
    assert {"satsr.cli", "satsr.training", "satsr.evaluation.metrics", "satsr.nn.vgg"} <= names
