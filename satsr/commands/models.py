"""`satsr models`: the models bundled with satsr and their metadata."""

from __future__ import annotations

import typer


def command(
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
) -> None:
    """List the bundled models (the default first) with their training metadata."""
    import json

    from rich.console import Console
    from rich.table import Table

    from satsr.bundled import DEFAULT_MODEL, MODELS_DIR, bundled_models
    from satsr.errors import SatsrError

    models = bundled_models()
    if not models:
        raise SatsrError(f"no bundled models in {MODELS_DIR} (a broken install?)")
    if as_json:
        doc = [{"name": m.name, "default": m.name == DEFAULT_MODEL, "path": str(m.path),
                "card": str(m.card) if m.card else None, "metadata": m.metadata()}
               for m in models]
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table(title="bundled models (use with --model NAME)")
    for col in ("name", "variant", "scale", "bands", "dtype", "iterations", "hr crop",
                "weights", "card"):
        table.add_column(col, overflow="fold")
    for m in models:
        meta = m.metadata()
        arch = meta.get("arch", {})
        variant = str(meta.get("variant", "?")) + (" (residual)" if arch.get("residual") else "")
        table.add_row(m.name + (" (default)" if m.name == DEFAULT_MODEL else ""), variant,
                      f"x{meta.get('scale', '?')}", str(meta.get("bands", "?")),
                      str(meta.get("dtype", "?")), str(meta.get("iterations", "?")),
                      str(meta.get("data", {}).get("hr_size", "?")),
                      f"{m.path.stat().st_size / 2**20:.1f} MB",
                      str(m.card) if m.card else "-")
    out = Console()
    out.print(table)
    for m in models:
        summary = m.summary()
        if summary:
            out.print(f"[bold]{m.name}[/bold]: {summary}", highlight=False)
