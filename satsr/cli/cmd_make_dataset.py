"""`satsr make-dataset`: random chips from GeoTIFFs, spatially disjoint splits, an index."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from satsr.cli.options import (
    bands_option,
    creation_options_option,
    nodata_option,
    out_option,
    overwrite_option,
    parse_creation_options,
)
from satsr.errors import SatsrWarning, showing_warnings

# Deferred imports: torch, rasterio and rich (and the satsr modules that import them) are
# imported inside the command, so that `satsr --help` and every other verb start without
# them.


def command(
    sources: list[Path] = typer.Argument(..., metavar="SRC...", show_default=False,
                                         help="Source rasters (GeoTIFF or anything GDAL reads)."),
    out: Path = out_option("Output folder: chips/<split>/*.tif and index.geojson."),
    size: int = typer.Option(256, "--size", help="Chip side in pixels."),
    count: int = typer.Option(1000, "--count", "-n",
                              help="Total chips over all sources (shared by usable area)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same arguments + seed give "
                                               "byte-identical chips and index."),
    split: str = typer.Option("0.8,0.1,0.1", "--split",
                              help="train,val,test fractions of the area (whole blocks)."),
    aoi: Path | None = typer.Option(None, "--aoi", show_default=False,
                                    help="GeoJSON polygon(s), EPSG:4326 unless the file names "
                                         "a CRS: every chip lies wholly inside."),
    max_nodata: float = typer.Option(0.0, "--max-nodata",
                                     help="Largest fraction of masked pixels a chip may hold."),
    nodata: float | None = nodata_option(),
    bands: str | None = bands_option(),
    block: int | None = typer.Option(None, "--block", show_default=False,
                                     help="Split block side in pixels (default: automatic, a "
                                          "multiple of --size)."),
    co: list[str] | None = creation_options_option("GeoTIFF creation option for chips "
                                                   "(repeatable)."),
    overwrite: bool = overwrite_option("Replace an output folder satsr wrote (one holding "
                                       "anything else is never deleted)."),
    split_file: Path | None = typer.Option(
        None, "--split-file", show_default=False,
        help="Reuse the blocks and splits of a split file (e.g. examples/splits/shared.json); "
             "--split then only shares --count between the splits."),
    write_split: Path | None = typer.Option(
        None, "--write-split", show_default=False,
        help="Also save the blocks and splits used as a split file, for later datasets."),
) -> None:
    """Cut random chips from big rasters into train/val/test splits that never overlap."""

    from rich.console import Console
    from rich.table import Table

    from satsr.data.make_dataset import make_dataset
    from satsr.data.raster import parse_bands

    err = Console(stderr=True)
    with showing_warnings(SatsrWarning,
                          lambda msg: print(f"satsr: warning: {msg}", file=sys.stderr)):
        summary = make_dataset(
            sources, out, size=size, count=count, seed=seed, split=split, aoi=aoi,
            max_nodata=max_nodata, nodata=nodata, bands=parse_bands(bands), block=block,
            creation_options=parse_creation_options(co), overwrite=overwrite,
            progress=err.is_terminal, split_file=split_file, write_split=write_split,
        )
    table = Table(title=f"{sum(summary.counts.values())} chips of {summary.size} px "
                        f"({len(summary.bands)} x {summary.dtype}) in {summary.out}")
    table.add_column("split")
    table.add_column("chips", justify="right")
    table.add_column("blocks", justify="right")
    table.add_column("usable area", justify="right")
    for sp, n in summary.counts.items():
        table.add_row(sp, str(n), str(summary.blocks[sp]), f"{summary.area[sp]:.1%}")
    Console().print(table)
    Console().print(f"blocks of {summary.block_side} px; {summary.seconds:.1f} s")
