"""`satsr band-samples`: make-dataset folders -> one single-band dataset for band-by-band models."""

from __future__ import annotations

from pathlib import Path

import typer

from satsr.cli.options import out_option, overwrite_option

# Deferred imports: rasterio and rich (and the satsr modules that import them) are imported
# inside the command, so that `satsr --help` and every other verb start without them.


def command(
    datasets: list[Path] = typer.Argument(..., metavar="DATA...", show_default=False,
                                          help="make-dataset folders (any band counts and "
                                               "dtypes; their splits are kept)."),
    out: Path = out_option("Output dataset folder of single-band float32 chips."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Make single-band training data for a band-by-band model from make-dataset folders.

    Every band of every chip becomes one float32 sample in unit range, scaled by the range
    measured on its source raster, as `upscale --scaling input` measures a user's raster.
    """
    from rich.console import Console

    from satsr.data.bandsamples import band_samples

    s = band_samples(datasets, out, overwrite=overwrite)
    Console().print(f"{sum(s.counts.values())} single-band samples in {s.out} "
                    f"(train {s.counts['train']}, val {s.counts['val']}, test "
                    f"{s.counts['test']}) from {len(s.sources)} source rasters")
