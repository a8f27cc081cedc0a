"""One module per verb; each exposes `command`, a Typer function that parses and delegates."""

from __future__ import annotations

from satsr.errors import SatsrError


def parse_creation_options(items: list[str] | None) -> dict[str, str]:
    """Repeated `--co KEY=VALUE` -> {'KEY': 'VALUE', ...} (GDAL creation options)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SatsrError(f"--co takes KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out
