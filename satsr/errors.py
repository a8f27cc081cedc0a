"""Every exception and warning class of satsr, and the one-line text the CLI prints for them."""

from __future__ import annotations

import codecs
import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TextIO


class SatsrError(Exception):
    """A user-facing error: bad path, wrong band count, missing weights, corrupt file...

    The message must be one line that says what is wrong and, where possible, what to do.
    It names arguments as Python does (`batch_size must be at least 1`); `option` lists the
    argument names it speaks of, so the CLI can show them as its flags (`--batch-size`).
    """

    exit_code = 2

    def __init__(self, message: str = "", *, option: str | tuple[str, ...] | None = None
                 ) -> None:
        super().__init__(message)
        self.options: tuple[str, ...] = ((option,) if isinstance(option, str)
                                         else tuple(option or ()))


class MissingWeightsError(SatsrError):
    """Pretrained backbone weights (VGG19, AlexNet, ...) are not on this machine."""


class DegradationError(SatsrError):
    """A degradation preset or file that cannot be used (unknown step, bad parameter...)."""


class NonFiniteError(SatsrError):
    """A tile's input or output held NaN or inf: the run stops before anything is published."""


class TrainingStopped(SatsrError):
    """The run stopped early on request (Ctrl-C); its checkpoint was saved."""

    exit_code = 130


class TrainingDiverged(SatsrError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class SatsrWarning(UserWarning):
    """Something the user should know that does not stop the run (e.g. a source without CRS)."""


class MetricUnavailableWarning(SatsrWarning):
    """A metric cannot be computed here (e.g. its LPIPS weights are missing) and is skipped."""


class UpscaleWarning(SatsrWarning):
    """Something about one upscaled raster the user should know that does not stop the run."""


#: Name of the codec error handler that writes what `printable` writes (see `escape_error`).
PRINTABLE_ERRORS = "satsr.printable"


def _escape(ch: str) -> str:
    """One character as an escape: a byte of a non-UTF-8 file name (held by os.fsdecode as
    a lone surrogate U+DC80..U+DCFF) as \\xNN of that byte, anything else as Python writes it."""
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def escape_error(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: escape what the stream's encoding cannot write (see `_escape`)."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return "".join(_escape(c) for c in exc.object[exc.start:exc.end]), exc.end


codecs.register_error(PRINTABLE_ERRORS, escape_error)


def printable(text: object) -> str:
    """`text` as one line any UTF-8 stream can write.

    A path whose name holds bytes that are not UTF-8 (b"in\\xff.tif") reaches Python as a
    str with lone surrogates, which `print` refuses ("surrogates not allowed"); such bytes
    come out as \\xNN, as `ls -b` shows them. Lines are joined by single spaces.
    """
    s = str(text)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", PRINTABLE_ERRORS).decode("utf-8")
    if "\n" not in s and "\r" not in s:
        return s
    return " ".join(part.strip() for part in s.splitlines() if part.strip())


@contextlib.contextmanager
def showing_warnings(kind: type[Warning], show: Callable[[str], None]) -> Iterator[None]:
    """Within the block, every warning of class `kind` (a repeated one too) goes to `show` as
    its message, as it happens; other warnings go where they went before."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", kind)
        before = warnings.showwarning

        def emit(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
            if issubclass(category, kind):
                show(str(message))
            else:
                before(message, category, filename, lineno, file, line)

        warnings.showwarning = emit
        yield
