"""The `satsr` command line: one thin Typer function per verb (in satsr/commands/)."""

from __future__ import annotations

import sys

import typer

from satsr import __version__
from satsr.commands import demo, evaluate, make_dataset, models, train, upscale
from satsr.errors import SatsrError

app = typer.Typer(
    name="satsr",
    help="Super-resolution of satellite and aerial imagery (Generative Collaborative Networks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"satsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Super-resolution of satellite and aerial imagery (Generative Collaborative Networks)."""


app.command("make-dataset")(make_dataset.command)
app.command("train")(train.command)
app.command("upscale")(upscale.command)
app.command("eval")(evaluate.command)
app.command("models")(models.command)
app.command("demo")(demo.command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit.

    A successful run returns normally (click's standalone mode would raise SystemExit(0)),
    so that `main([...])` can be called from Python.
    """
    try:
        app(args=argv, prog_name="satsr")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    except SatsrError as exc:
        print(f"satsr: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("satsr: interrupted", file=sys.stderr)
        sys.exit(130)
