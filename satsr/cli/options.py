"""Options shared by several verbs, each declared once (as rasterio's rio/options.py does),
and the policies behind them: output overwrite, device, creation options, error wording."""

from __future__ import annotations

import re
from typing import Any

import typer

from satsr.errors import SatsrError

#: Library argument names whose CLI spelling is not `--` + the name with dashes.
FLAG_NAMES = {"models": "--model", "methods": "--method", "metrics": "--metric",
              "degradations": "--degradation", "data": "DATA", "config_file": "--config",
              "sources": "SRC", "inputs": "IN", "datasets": "DATA",
              "json_out": "--json", "csv_out": "--csv", "weights_dir": "--lpips-weights"}


def flag(name: str) -> str:
    """The CLI spelling of a library argument name: batch_size -> --batch-size."""
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


#: A raster dtype as a word ("3 float64 bands" speaks of bands, not of --bands).
DTYPE_WORD = r"u?int\d+|float\d+|complex\d+|bool"


def cli_message(exc: SatsrError) -> str:
    """A library error as the CLI words it: the arguments it names shown as flags.

    Left alone: words of a path or file name (/runs/data, data.tif) and a name counted by the
    number before it ("reads 3 bands" speaks of bands, not of --bands).
    """
    parts = re.split(r"(\s+)", str(exc))
    for i in range(0, len(parts), 2):
        token, before = parts[i], parts[i - 2] if i >= 2 else ""
        if token.startswith(("/", "~", ".")) or "\\" in token or re.search(r"\.[A-Za-z_]", token) \
                or re.fullmatch(r"\(?[\d.,]*\d", before) or re.fullmatch(DTYPE_WORD, before) \
                or before in ("band", "model's"):
            continue
        for name in exc.options:
            token = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag(name), token)
        parts[i] = token
    return "".join(parts)


def parse_creation_options(items: list[str] | None) -> dict[str, str]:
    """Repeated `--co KEY=VALUE` -> {'KEY': 'VALUE', ...} (GDAL creation options)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SatsrError(f"--co takes KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out


# ------------------------------------------------------------------ options of several verbs
# Each returns a fresh Typer declaration; the verbs say only what differs (the help of an
# output option names their output).

#: The devices every verb accepts (resolved by satsr.nn.device.resolve_device).
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."
BANDS_HELP = "1-based bands, e.g. 1,2,3 (default: all but alpha)."
NODATA_HELP = "Nodata value for files that declare none (e.g. 0 for black corners)."


def overwrite_option(help: str = "Replace existing outputs.") -> Any:
    """--overwrite: without it an existing output is refused (satsr.data.raster.check_output)."""
    return typer.Option(False, "--overwrite", help=help)


def device_option() -> Any:
    """--device, for every verb that runs a network."""
    return typer.Option("auto", "--device", help=DEVICE_HELP)


def bands_option() -> Any:
    """--bands: which bands of the input rasters are read."""
    return typer.Option(None, "--bands", show_default=False, help=BANDS_HELP)


def nodata_option() -> Any:
    """--nodata: the nodata value of inputs that declare none."""
    return typer.Option(None, "--nodata", show_default=False, help=NODATA_HELP)


def creation_options_option(help: str) -> Any:
    """--co KEY=VALUE (repeatable): GDAL creation options of the written rasters."""
    return typer.Option(None, "--co", metavar="KEY=VALUE", show_default=False, help=help)


def model_option(help: str) -> Any:
    """--model / -m: a model file, run folder or bundled model name."""
    return typer.Option(None, "--model", "-m", show_default=False, help=help)


def progress_option() -> Any:
    """--progress/--no-progress (verbs without it show a bar when stderr is a terminal)."""
    return typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")


def out_option(help: str, default: Any = ...) -> Any:
    """-o/--out: where a verb writes (required unless a `default` is given)."""
    return typer.Option(default, "--out", "-o", show_default=default is not ..., help=help)


#: The folder of LPIPS backbone weights: one flag for eval and train.
LPIPS_WEIGHTS_FLAG = "--lpips-weights"
#: Its former spelling in eval, still accepted (hidden) so existing command lines work.
LPIPS_WEIGHTS_ALIAS = "--weights-dir"


def lpips_weights_alias_option() -> Any:
    """The hidden --weights-dir, the former name of --lpips-weights (see lpips_weights)."""
    return typer.Option(None, LPIPS_WEIGHTS_ALIAS, hidden=True, show_default=False,
                        help=f"Former name of {LPIPS_WEIGHTS_FLAG}.")


def merge_lpips_weights(value: Any, alias: Any) -> Any:
    """The LPIPS weights folder given as --lpips-weights or as its former name --weights-dir
    (the same folder twice is fine; two different ones are refused)."""
    if alias is None:
        return value
    if value is not None and value != alias:
        raise SatsrError(f"{LPIPS_WEIGHTS_ALIAS} is the former name of {LPIPS_WEIGHTS_FLAG}: "
                         "give the folder once")
    return alias
