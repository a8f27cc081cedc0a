"""The `satsr` command line: one thin Typer function per verb (in satsr/commands/)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import typer

from satsr import __version__
from satsr.commands import demo, evaluate, make_dataset, models, train, upscale
from satsr.errors import PRINTABLE_ERRORS, SatsrError, printable

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


#: Exit status after SIGTERM (128 + 15, as a shell reports a process it terminated).
EXIT_TERMINATED = 143

_terminated = False


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM takes Ctrl-C's path: whatever SIGINT does now (training: finish the step, save
    a checkpoint and stop; else KeyboardInterrupt, which unwinds through every atomic write
    and deletes its staging part), and main() exits 143."""
    global _terminated
    _terminated = True
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored or default: still stop
        raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Every warning as one line `satsr: warning: MESSAGE`, without a source line."""
    stream = file if file is not None else sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(f"satsr: warning: {printable(message)}\n")


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        # rasterio's: the dataset's nodata hides an alpha band. satsr reads masks itself
        # (satsr.raster.valid_mask) and says what it uses; the remark is noise here.
        warnings.filterwarnings("ignore", message=".*nodata attribute is shadowing")
        if not sys.warnoptions:  # unless asked for with -W: deprecation notes (GDAL's,
            # affine's, torch's) speak to developers, not to someone running satsr
            for cat in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.filterwarnings("ignore", category=cat)
        yield


@contextlib.contextmanager
def _printable_streams() -> Iterator[None]:
    """stdout and stderr write a non-UTF-8 file name (lone surrogates) as \\xNN instead of
    failing with 'surrogates not allowed' in the middle of a run."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors in ("strict", "surrogateescape", "backslashreplace") and \
                hasattr(stream, "reconfigure"):
            with contextlib.suppress(Exception):
                stream.reconfigure(errors=PRINTABLE_ERRORS)
                changed.append((stream, errors))
    try:
        yield
    finally:
        for stream, errors in changed:
            with contextlib.suppress(Exception):
                stream.reconfigure(errors=errors)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit.

    A successful run returns normally (click's standalone mode would raise SystemExit(0)),
    so that `main([...])` can be called from Python. Warnings print as one line each;
    SIGTERM stops a run as Ctrl-C does (partial outputs deleted, training checkpointed) and
    exits 143.
    """
    global _terminated
    _terminated = False
    with _printable_streams(), _one_line_warnings(), _sigterm_as_interrupt():
        try:
            app(args=argv, prog_name="satsr")
        except SystemExit as exc:
            if _terminated:
                print("satsr: terminated", file=sys.stderr)
                sys.exit(EXIT_TERMINATED)
            if exc.code not in (0, None):
                raise
        except SatsrError as exc:
            print(f"satsr: error: {printable(exc)}", file=sys.stderr)
            sys.exit(EXIT_TERMINATED if _terminated else exc.exit_code)
        except KeyboardInterrupt:
            print(f"satsr: {'terminated' if _terminated else 'interrupted'}", file=sys.stderr)
            sys.exit(EXIT_TERMINATED if _terminated else 130)
