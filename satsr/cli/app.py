"""The `satsr` command line: one thin Typer function per verb (satsr/cli/cmd_*.py)."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import typer

from satsr import __version__
from satsr.cli import (
    cmd_band_samples,
    cmd_demo,
    cmd_eval,
    cmd_make_dataset,
    cmd_models,
    cmd_train,
    cmd_upscale,
)
from satsr.cli.options import cli_message
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


def paragraphs(doc: str | None) -> str:
    """A command's docstring as its help text, each paragraph on one line: Typer's rich help
    keeps a docstring's line breaks, so a paragraph hard-wrapped at the source's width broke
    mid-sentence in a narrower terminal ("averaged with a" / "Student-t ..."). The terminal
    wraps each paragraph itself."""
    blocks = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in b.splitlines()) for b in blocks)


for _name, _cmd in (("make-dataset", cmd_make_dataset.command),
                    ("band-samples", cmd_band_samples.command), ("train", cmd_train.command),
                    ("upscale", cmd_upscale.command), ("eval", cmd_eval.command),
                    ("models", cmd_models.command), ("demo", cmd_demo.command)):
    app.command(_name, help=paragraphs(_cmd.__doc__))(_cmd)


#: Exit status after SIGTERM (128 + 15, as a shell reports a process it terminated).
EXIT_TERMINATED = 143
#: Exit status after Ctrl-C (128 + 2).
EXIT_INTERRUPTED = 130

#: Seconds between progress lines when stderr is not a terminal (satsr.progress.LINE_EVERY).
LINE_EVERY_S = 30.0

#: The signal that is stopping the current main() call, if any.
_stopped_by: int | None = None


def _on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C: as Python's default (KeyboardInterrupt), remembering that it came."""
    global _stopped_by
    _stopped_by = _stopped_by or signal.SIGINT
    raise KeyboardInterrupt


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM takes Ctrl-C's path: whatever SIGINT does now (training: finish the step, save
    a checkpoint and stop; else KeyboardInterrupt, which unwinds through every atomic write
    and deletes its staging part), and main() exits 143."""
    global _stopped_by
    _stopped_by = signal.SIGTERM
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not _on_sigint:
        handler(signal.SIGINT, frame)
    else:  # ours, or SIGINT ignored: stop now
        raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_stop_cleanly() -> Iterator[None]:
    """Install the handlers above for the duration of one main() call (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.getsignal(signal.SIGINT)
    if old_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if old_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, old_int)


def _stop_exit() -> None:
    """One line and the conventional status (130, 143) for a run stopped by a signal."""
    term = _stopped_by == signal.SIGTERM
    print(f"satsr: {'terminated' if term else 'interrupted'}", file=sys.stderr)
    sys.exit(EXIT_TERMINATED if term else EXIT_INTERRUPTED)


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
        # (satsr.data.raster.valid_mask) and says what it uses; the remark is noise here.
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


@contextlib.contextmanager
def _progress_lines() -> Iterator[None]:
    """Where stderr is not a terminal no bar is drawn: long runs print a progress line every
    LINE_EVERY_S seconds ($SATSR_PROGRESS_EVERY seconds when set; 0: none)."""
    import satsr.progress

    every: float | None = LINE_EVERY_S
    with contextlib.suppress(ValueError):
        every = float(os.environ.get("SATSR_PROGRESS_EVERY", LINE_EVERY_S))
    tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    before = satsr.progress.LINE_EVERY
    satsr.progress.LINE_EVERY = None if tty or not every or every <= 0 else every
    try:
        yield
    finally:
        satsr.progress.LINE_EVERY = before


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit.

    A successful run returns normally (click's standalone mode would raise SystemExit(0)),
    so that `main([...])` can be called from Python. Warnings print as one line each;
    SIGTERM stops a run as Ctrl-C does (partial outputs deleted, training checkpointed) and
    exits 143.
    """
    global _stopped_by
    _stopped_by = None
    with _progress_lines(), _printable_streams(), _one_line_warnings(), \
            _signals_stop_cleanly():
        try:
            app(args=argv, prog_name="satsr")
        except SystemExit as exc:
            if _stopped_by is not None:
                _stop_exit()
            if exc.code not in (0, None):
                raise
        except SatsrError as exc:  # e.g. training saved its checkpoint and stopped
            print(f"satsr: error: {printable(cli_message(exc))}", file=sys.stderr)
            sys.exit(EXIT_TERMINATED if _stopped_by == signal.SIGTERM else exc.exit_code)
        except KeyboardInterrupt:
            _stop_exit()
        except Exception:  # not swallowed: re-raised unless a stop signal caused it
            # a signal that lands inside a library's cleanup (rasterio.Env.__exit__, ...) can
            # turn the KeyboardInterrupt into another error on the way out; the staging
            # parts were deleted on the way (and a later run removes any that were not)
            if _stopped_by is not None:
                _stop_exit()
            raise
