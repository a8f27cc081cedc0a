"""`satsr demo`: upscale the bundled sample with the bundled model, score it, draw it."""

from __future__ import annotations

from pathlib import Path

from satsr.cli.options import device_option, model_option, out_option, overwrite_option

# Deferred imports: torch, rasterio and rich (and the satsr modules that import them) are
# imported inside the command, so that `satsr --help` and every other verb start without
# them.


def command(
    out: Path = out_option("Folder for the demo's outputs.", Path("satsr-demo")),
    model: Path | None = model_option("Model file, run folder or bundled model name (default: "
                                      "the bundled model `satsr models` gives the sample)."),
    device: str = device_option(),
    overwrite: bool = overwrite_option("Replace earlier demo outputs."),
) -> None:
    """Run satsr end to end on its bundled sample: 4x GeoTIFF, eval table, side-by-side PNG."""
    from rich.console import Console

    from satsr.demo import run_demo

    err = Console(stderr=True)
    res = run_demo(out, model=model, device=device, overwrite=overwrite,
                   progress=err.is_terminal)
    con = Console()
    con.print(f"sample: {res.sample}\nmodel:  {res.model}", highlight=False, soft_wrap=True)
    con.print(res.upscale_line, highlight=False, soft_wrap=True)
    con.print(res.table)
    if res.unavailable:
        first = next(iter(res.unavailable.values()))
        con.print(f"[dim]not shown: {', '.join(res.unavailable)} ({first})[/dim]",
                  highlight=False)
    con.print(f"side-by-side (HR, nearest, bicubic, satsr): {res.figure}\n"
              f"eval table: {res.json} and {res.csv}\n"
              f"georeferenced 4x GeoTIFF: {res.upscaled}", highlight=False, soft_wrap=True)
