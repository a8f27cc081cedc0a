"""`satsr models`: the models bundled with satsr and their metadata."""

from __future__ import annotations

import json
from typing import Any

import typer

from satsr.errors import SatsrError
from satsr.evaluation.layout import FirstThatFits
from satsr.inference.bundled import DEFAULT_MODEL, MODELS_DIR, bundled_models

# Deferred imports: torch, rasterio and rich (and the satsr modules that import them) are
# imported inside the command, so that `satsr --help` and every other verb start without
# them.


def command(
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
) -> None:
    """List the bundled models (the default first) with their training metadata."""

    from rich.console import Console

    from satsr.inference.modelfile import read_metadata

    models = bundled_models()
    if not models:
        raise SatsrError(f"no bundled models in {MODELS_DIR} (a broken install?)")
    if as_json:
        doc = [{"name": m.name, "default": m.name == DEFAULT_MODEL, "path": str(m.path),
                "card": str(m.card) if m.card else None, "metadata": read_metadata(m.path)}
               for m in models]
        typer.echo(json.dumps(doc, indent=2))
        return
    rows = [_row(m, m.name == DEFAULT_MODEL) for m in models]
    out = Console()
    out.print(FirstThatFits([_wide(rows), _blocks(rows)]))
    # a path is one long word: printed whole, the terminal wraps it (rich would cut it up)
    out.print(f"files: {MODELS_DIR}", highlight=False, soft_wrap=True)
    for m in models:
        summary = m.summary()
        if summary:
            out.print(f"[bold]{m.name}[/bold]: {summary}", highlight=False)
    from satsr.inference.choice import TABLE, read_table

    out.print(f"without --model, upscale takes the first row that fits ({TABLE.name}):",
              highlight=False)
    for i, r in enumerate(read_table(), 1):
        out.print(f"  {i}. {r.model}: {r.describe()}", highlight=False, soft_wrap=True)


#: (column header, key of _row) of the models table.
COLUMNS = (("name", "name"), ("variant", "variant"), ("scale", "scale"), ("bands", "bands"),
           ("dtype", "dtype"), ("strength", "strength"), ("iters", "iterations"),
           ("crop", "hr crop"),
           ("weights", "weights"), ("card", "card"))


def _row(m: Any, default: bool) -> dict[str, str]:
    """One bundled model's facts as short strings (files by name: their folder is printed once)."""
    from satsr.inference.modelfile import read_metadata

    meta = read_metadata(m.path)
    arch = meta.get("arch", {})
    return {
        "name": m.name + (" (default)" if default else ""),
        "variant": str(meta.get("variant", "?")) + (" (residual)" if arch.get("residual")
                                                    else ""),
        "scale": f"x{meta.get('scale', '?')}",
        "bands": str(meta.get("bands", "?")),
        "dtype": str(meta.get("dtype", "?")),
        # the correction strength upscale uses by default (--strength overrides it)
        "strength": (f"{float(meta['strength']):g}" if "strength" in meta
                     else "1" if arch.get("residual") else "-")
                    + _adaptive_text(meta)
                    # each tile's mean correction removed per band: band levels stay bicubic's
                    + (", zero-mean" if meta.get("zero_mean") else ""),
        "iterations": str(meta.get("iterations", "?")),
        "hr crop": f"{meta.get('data', {}).get('hr_size', '?')} px",
        "weights": f"{m.path.name}, {m.path.stat().st_size / 2**20:.1f} MB",
        "card": m.card.name if m.card else "-",
    }


def _wide(rows: list[dict[str, str]]) -> Any:
    """One row per model."""
    from rich.table import Table

    table = Table(title="bundled models (use with --model NAME)")
    for head, _ in COLUMNS:
        table.add_column(head, no_wrap=True)
    for r in rows:
        table.add_row(*[r[key] for _, key in COLUMNS])
    return table


def _blocks(rows: list[dict[str, str]]) -> Any:
    """One two-column block per model, for narrow terminals."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Text("bundled models (use with --model NAME)", style="italic")]
    for r in rows:
        t = Table(title=r["name"], title_justify="left", show_header=False)
        t.add_column("field", style="dim", no_wrap=True)
        t.add_column("value")
        for head, key in COLUMNS[1:]:
            t.add_row(head, r[key])
        parts.append(t)
    return Group(*parts)


def _adaptive_text(meta: dict[str, Any]) -> str:
    """Where and how a model with an aliasing probe shares out its correction ("" if not)."""
    if "adaptive" not in meta:
        return ""
    lo, hi = (float(v) for v in meta["adaptive"])
    jpeg = f", JPEG {float(meta['jpeg_share']):g}" if "jpeg_share" in meta else ""
    return f" per {meta.get('adaptive_scope', 'tile')} (adaptive {lo:g}-{hi:g}{jpeg})"
