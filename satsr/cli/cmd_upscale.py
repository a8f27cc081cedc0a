"""`satsr upscale`: super-resolve rasters of any size into georeferenced outputs."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Any

import typer

from satsr.cli.options import (
    bands_option,
    cli_message,
    creation_options_option,
    device_option,
    model_option,
    nodata_option,
    out_option,
    overwrite_option,
    parse_creation_options,
)
from satsr.errors import SatsrError, UpscaleWarning, printable, showing_warnings

# Deferred imports: torch, rasterio and rich (and the satsr modules that import them) are
# imported inside the command, so that `satsr --help` and every other verb start without
# them.


def expand_inputs(items: list[Path]) -> tuple[list[Path], bool]:
    """Inputs as given, folders (their rasters) and quoted globs -> (files, several?)."""

    from satsr.inference.writer import RASTER_SUFFIXES

    files: list[Path] = []
    several = len(items) > 1
    for item in items:
        text = str(item)
        if item.is_dir():
            found = sorted(p for p in item.iterdir()
                           if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
            if not found:
                raise SatsrError(f"no raster (.tif, .png, .jpg) in folder {item}")
            files += found
            several = True
        elif not item.exists() and any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not found:
                raise SatsrError(f"no file matches {text}")
            files += found
            several = True
        else:
            files.append(item)
    return files, several


def _check_values(tile: int | None, overlap: int, batch_size: int | None, bands: str | None,
                  scale: int | None, strength: float | None = None) -> None:
    """Refuse values that mean nothing, rather than quietly reading them as "the default"."""
    if tile is not None and tile < 1:
        raise SatsrError(f"--tile must be a positive number of pixels, not {tile}")
    if overlap < 0:
        raise SatsrError(f"--overlap must be 0 or more pixels, not {overlap}")
    if batch_size is not None and batch_size < 1:
        raise SatsrError(f"--batch-size must be at least 1, not {batch_size}")
    if bands is not None and not bands.strip():
        raise SatsrError("--bands is empty: give 1-based band numbers like 1,2,3, or leave "
                         "it out for all bands but alpha")
    if scale is not None and scale not in (2, 4, 8):
        raise SatsrError(f"--scale must be 2, 4 or 8, not {scale}")
    if strength is not None:
        from satsr.inference.modelfile import strength_value

        strength_value(strength)


def _check_tiling(device_kind: str, tile: int | None, overlap: int) -> None:
    """The tile stride check of satsr.inference.tiling, worded with the flags (before any
    file work)."""
    from satsr.inference.engine import DEFAULT_TILE
    from satsr.inference.tiling import check_tiling

    if tile is None:
        check_tiling(DEFAULT_TILE.get(device_kind, 256), overlap, "the default --tile",
                     "--overlap")
    else:
        check_tiling(tile, overlap, "--tile", "--overlap")


def command(
    inputs: list[Path] = typer.Argument(..., metavar="IN...", show_default=False,
                                        help="Rasters, folders of rasters or globs."),
    out: Path = out_option("Output file (one input) or existing folder (several)."),
    model: Path | None = model_option("Model file, run folder from `satsr train`, or bundled "
                                      "model name (default: the bundled model the choice "
                                      "table of `satsr models` gives the raster)."),
    method: str | None = typer.Option(None, "--method", show_default=False,
                                      help="Classical baseline instead of a model: bicubic or "
                                           "nearest."),
    scale: int | None = typer.Option(None, "--scale", show_default=False,
                                     help="Scale factor for --method: 2, 4 or 8 (default 4). A "
                                          "model has its own: omit it, or give that one."),
    bands: str | None = bands_option(),
    nodata: float | None = nodata_option(),
    tile: int | None = typer.Option(None, "--tile", show_default=False,
                                    help="Tile side in input pixels (default 256 on CPU, 512 "
                                         "on CUDA)."),
    overlap: int = typer.Option(32, "--overlap",
                                help="Pixels shared by neighbouring tiles; 2r+1 (r = model's "
                                     "receptive radius, 29 px for 10 blocks) makes tiling "
                                     "exact."),
    batch_size: int | None = typer.Option(None, "--batch-size", show_default=False,
                                          help="Tiles per forward pass (default 1 on CPU, 4 on "
                                               "CUDA)."),
    device: str = device_option(),
    cog: bool = typer.Option(False, "--cog", help="Write a Cloud Optimized GeoTIFF with "
                                                  "overviews."),
    co: list[str] | None = creation_options_option("GDAL creation option (repeatable)."),
    overwrite: bool = overwrite_option(),
    strength: float | None = typer.Option(
        None, "--strength", show_default=False,
        help="Residual models: how much of the learned correction is added to bicubic, from "
             "0 (bicubic) to 1 (as trained); default: the model's recorded strength (1 unless "
             "its card says otherwise)."),
    scaling: str = typer.Option(
        "auto", "--scaling",
        help="Band scaling into the model's units: model (the numbers it was trained with), "
             "input (each band's p0.1-p99.9 measured on the raster, written into the output's "
             "tags), or auto (the model's for rasters of its training dtype, else input)."),
    skip_existing: bool = typer.Option(
        False, "--skip-existing",
        help="Skip outputs that are already complete (same size, scale, model or method, "
             "bands), so an interrupted run resumes. Under torchrun the inputs are shared "
             "out over the ranks (see README, Running at scale)."),
    precision: str = typer.Option(
        "fp32", "--precision",
        help="How the model runs: fp32, or bf16 (bfloat16 autocast on CUDA or the CPU: faster "
             "on recent GPUs; the bundled model stays within 2 DN of fp32). Recorded in the "
             "output's tags."),
    adaptive: str | None = typer.Option(
        None, "--adaptive", show_default=False,
        help="Models with an aliasing probe: raster (one correction share from samples of "
             "the whole raster, JPEG grid included), tile (each tile's own), or off (the "
             "whole correction everywhere); default: the model's (see its card)."),
) -> None:
    """Super-resolve rasters with a trained model (or a classical baseline), tile by tile."""

    from rich.console import Console

    from satsr.data.raster import parse_bands
    from satsr.inference.batch import upscale_rasters
    from satsr.inference.engine import load_engine
    from satsr.inference.writer import adaptive_scope, check_adaptive_option
    from satsr.nn.device import resolve_device

    _check_values(tile, overlap, batch_size, bands, scale, strength)
    if precision not in ("fp32", "bf16"):
        raise SatsrError(f"--precision takes fp32 or bf16, not {precision!r}")
    if precision != "fp32" and method is not None:
        raise SatsrError("--precision bf16 applies to a model: --method computes in float32")
    files, several = expand_inputs(inputs)
    creation = parse_creation_options(co)
    band_list = parse_bands(bands)
    _check_targets(files, several, out, overwrite or skip_existing, model)
    check_adaptive_option(adaptive)
    if model is not None or method is not None:  # a bad model or method fails before work
        adaptive_scope(load_engine(model, method, scale, device, strength), adaptive)
    err = Console(stderr=True)
    _check_tiling(resolve_device(device).type, tile, overlap)  # worded with the flags
    world = int(os.environ.get("WORLD_SIZE", "1"))
    with showing_warnings(UpscaleWarning,
                          lambda msg: print(f"satsr: warning: {msg}", file=sys.stderr)):
        summary = upscale_rasters(
            files, out, model, method=method, scale=scale, device=device, bands=band_list,
            nodata=nodata, tile=tile, overlap=overlap, batch_size=batch_size, cog=cog,
            creation_options=creation, overwrite=overwrite, skip_existing=skip_existing,
            progress=err.is_terminal, scaling=scaling, strength=strength, precision=precision,
            adaptive=adaptive, keep_going=several or world > 1, on_file=_print_outcome,
            error_text=_one_line,
            log=lambda line: print(f"satsr: {line}", file=sys.stderr, flush=True))
    report_summary(summary, several)


def _check_targets(files: list[Path], several: bool, out: Path, replace: bool,
                   model: Path | None) -> None:
    """Each input's output: never onto one of the inputs or a device, checked before any
    work; an existing output is left to --skip-existing (complete ones are skipped) or
    --overwrite (`replace`: either was given)."""
    from satsr.data.raster import check_output

    if several:
        if not out.is_dir():
            raise SatsrError(f"with several inputs, -o must be an existing folder: {out}")
        targets = [out / f.name for f in files]
        names = [t.name for t in targets]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SatsrError(f"several inputs share the output name {sorted(dup)[0]}")
    else:
        targets = [out / files[0].name if out.is_dir() else out]
    for t in targets:
        check_output(t, replace, inputs=[*files, model], option="out")


def _print_outcome(outcome: Any, result: Any) -> None:
    """One input done: its failure on stderr, else the skipped or written line."""
    from rich.console import Console

    from satsr.inference.batch import FAILED, SKIPPED

    if outcome.status == FAILED:
        print(f"satsr: error: {printable(outcome.src)}: {outcome.error}", file=sys.stderr,
              flush=True)
    elif outcome.status == SKIPPED:
        print(f"skipped {printable(outcome.dst)}: already complete", flush=True)
    else:
        Console().print(result.line(), soft_wrap=True, highlight=False)


def _one_line(exc: BaseException) -> str:
    """A failed input's error in one line, worded with the flags."""
    text = cli_message(exc) if isinstance(exc, SatsrError) else str(exc)
    return printable(text.splitlines()[0]) if text.strip() else type(exc).__name__


def report_summary(summary: Any, several: bool) -> None:
    """Rank 0's summary line (several inputs, a torchrun job, or skipped outputs) and, in a
    job, each failure again; rank 0 exits non-zero when any input failed (the other ranks
    exit 0: their failures are in rank 0's summary). Each rank has said its own line."""
    if summary.rank != 0:
        return
    if several or summary.world > 1 or summary.skipped:
        print(f"satsr: {summary.line()}", flush=True)
    if summary.world > 1:
        for f in summary.failed:
            print(f"satsr: failed: {printable(f.src)} (rank {f.rank}): {f.error}",
                  file=sys.stderr, flush=True)
    if summary.failed:
        raise SatsrError(f"{len(summary.failed)} of {len(summary.files)} inputs failed "
                         "(see above)")
