"""Options shared by several verbs, each declared once (as rasterio's rio/options.py does),
and the policies behind them: output overwrite, device, creation options, error wording."""

from __future__ import annotations

import re
from pathlib import Path

from satsr.errors import SatsrError

#: Library argument names whose CLI spelling is not `--` + the name with dashes.
FLAG_NAMES = {"models": "--model", "methods": "--method", "metrics": "--metric",
              "degradations": "--degradation", "data": "DATA"}


def flag(name: str) -> str:
    """The CLI spelling of a library argument name: batch_size -> --batch-size."""
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def cli_message(exc: SatsrError) -> str:
    """A library error as the CLI words it: the arguments it names shown as flags.

    Words that are part of a path or file name (/runs/data, data.tif) are left alone.
    """
    def words(token: str) -> str:
        if token.startswith(("/", "~", ".")) or "\\" in token or re.search(r"\.\w", token):
            return token
        for name in exc.options:
            token = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag(name), token)
        return token

    return "".join(words(t) for t in re.split(r"(\s+)", str(exc)))


def parse_creation_options(items: list[str] | None) -> dict[str, str]:
    """Repeated `--co KEY=VALUE` -> {'KEY': 'VALUE', ...} (GDAL creation options)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SatsrError(f"--co takes KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def check_output(path: Path, overwrite: bool) -> None:
    """The overwrite policy of output files: refuse an existing one unless --overwrite, and
    refuse an output whose folder does not exist (before any work is done)."""
    if path.exists() and not overwrite:
        raise SatsrError(f"{path} exists (use --overwrite to replace it)")
    if not path.resolve().parent.is_dir():
        raise SatsrError(f"output folder does not exist: {path.resolve().parent}")
