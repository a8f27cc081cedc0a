"""The README's package map names every folder of satsr/ and every module in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package_map() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("The package follows the data flow")
    end = text.index("tests/test_layers.py", start)
    return text[start:end]


def test_readme_package_map_matches_the_folders() -> None:
    block = _package_map()
    lines = {m.group(1): m.group(0) for m in re.finditer(
        r"- `satsr\.(\w+)`:(.*?)(?=\n- |\n\n)", block, re.S)}
    packages = sorted(p.name for p in (ROOT / "satsr").iterdir()
                      if (p / "__init__.py").is_file())
    assert sorted(lines) == packages, "one line per folder of satsr/, and no other"
    missing = []
    for pkg in packages:
        for mod in sorted((ROOT / "satsr" / pkg).glob("*.py")):
            if mod.stem == "__init__":
                continue
            named = f"`{mod.stem}`" in lines[pkg] or (
                mod.stem.startswith("cmd_") and "`cmd_*`" in lines[pkg])
            if not named:
                missing.append(f"satsr/{pkg}/{mod.name}")
    top = re.search(r"- top level:(.*?)(?=\n\n)", block, re.S)
    assert top is not None
    for mod in sorted((ROOT / "satsr").glob("*.py")):
        if mod.stem not in ("__init__", "__main__") and f"`{mod.stem}`" not in top.group(1):
            missing.append(f"satsr/{mod.name}")
    assert missing == [], f"modules the README's package map does not name: {missing}"
