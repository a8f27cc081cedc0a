"""`satsr train`: train a GCN-family generator on a make-dataset folder.

Its option flags are derived from the declarations in satsr.training.config (one per
option: name, type, default, help, whether --resume may change it), so no option can be
forgotten here; only --config, --resume and --overwrite are the command's own.
"""

from __future__ import annotations

import inspect
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

import typer

from satsr.cli.options import (
    flag,
    lpips_weights_alias_option,
    merge_lpips_weights,
    overwrite_option,
)
from satsr.errors import SatsrError
from satsr.training.config import CHANGEABLE_ON_RESUME, TrainConfig, resolve_config

# Deferred imports: torch, rasterio and rich (and the satsr modules that import them) are
# imported inside the command, so that `satsr --help` and every other verb start without
# them.

_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def _number(x: float) -> str:
    """A float as help shows it: 2e-4 rather than 0.0002, 1 rather than 1.0."""
    if x != 0 and abs(x) < 1e-2:
        mantissa, exponent = f"{x:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{x:g}"


def _default_text(f: Field[Any]) -> str:
    """The option's true default, in words where its declaration says so."""
    shown = f.metadata["shown"]
    if shown is not None and "{}" not in shown:
        return str(shown)
    v = f.default
    text = ("on" if v else "off") if isinstance(v, bool) else \
        _number(v) if isinstance(v, float) else str(v)
    return shown.format(text) if shown else text


def _help(f: Field[Any]) -> str:
    """The declared help with the true default in place of `{default}` (its bracket escaped:
    rich would read `[default: ...]` as markup and drop it)."""
    return str(f.metadata["help"]).replace("{default}", f"\\[default: {_default_text(f)}]")


def _parameter(f: Field[Any]) -> inspect.Parameter:
    """The Typer parameter of one declared option (None = not given: the config wins)."""
    meta = f.metadata
    base = Path if meta["path"] else _TYPES[str(f.type).split(" |")[0]]
    info: Any
    if f.name == "data":
        info = typer.Argument(None, metavar=meta["metavar"], show_default=False, help=_help(f))
    elif base is bool:
        name = flag(f.name)
        info = typer.Option(None, f"{name}/--no-{name[2:]}", show_default=False, help=_help(f))
    else:
        info = typer.Option(None, flag(f.name), *meta["flags"], metavar=meta["metavar"],
                            show_default=False, help=_help(f))
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                             annotation=base | None)


def _resume_help() -> str:
    """--resume's help, listing the options a resumed run may change (from the config)."""
    others = [flag(n) for n in CHANGEABLE_ON_RESUME if n not in ("data", "out", "iterations")]
    return ("Continue the run in RUN exactly, with its saved options. Only --iterations (to "
            "train longer), DATA (a moved copy of the same dataset), "
            f"{', '.join(others[:-1])} and {others[-1]} may change; any other changed "
            "option is refused, as is another number of processes.")


def _own_parameters() -> dict[str, inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    return {
        "config": inspect.Parameter("config", kw, annotation=Path | None, default=typer.Option(
            None, "--config", show_default=False,
            help="TOML or YAML file of options (the CLI wins).")),
        "resume": inspect.Parameter("resume", kw, annotation=bool, default=typer.Option(
            False, "--resume", help=_resume_help())),
        "overwrite": inspect.Parameter("overwrite", kw, annotation=bool,
                                       default=overwrite_option("Delete a previous run in "
                                                                "RUN and start again.")),
        "weights_dir_alias": inspect.Parameter("weights_dir_alias", kw, annotation=Path | None,
                                               default=lpips_weights_alias_option()),
    }


def command(**kwargs: Any) -> None:
    """Train a super-resolution generator (GCN family) on a make-dataset folder."""
    from rich.console import Console
    from rich.table import Table

    from satsr.training.loop import train

    config, resume = kwargs.pop("config"), kwargs.pop("resume")
    overwrite = kwargs.pop("overwrite")
    kwargs["lpips_weights"] = merge_lpips_weights(kwargs["lpips_weights"],
                                                  kwargs.pop("weights_dir_alias"))
    if resume and overwrite:
        raise SatsrError("--resume and --overwrite contradict each other: pick one")
    options = {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}
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


def _signature() -> inspect.Signature:
    """data, out, --config, every other declared option, --resume, --overwrite (and the
    hidden --weights-dir, the former name of --lpips-weights)."""
    declared = [_parameter(f) for f in fields(TrainConfig)]
    own = _own_parameters()
    params = [*declared[:2], own["config"], *declared[2:], own["resume"], own["overwrite"],
              own["weights_dir_alias"]]
    return inspect.Signature(params, return_annotation=None)


_SIGNATURE = _signature()
command.__dict__["__signature__"] = _SIGNATURE  # what inspect.signature and Typer read
command.__annotations__ = {p.name: p.annotation for p in _SIGNATURE.parameters.values()}
