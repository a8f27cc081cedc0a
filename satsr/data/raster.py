"""rasterio helpers shared by every verb: opening, reading, band selection, validity masks,
safe writes.

Every pixel read of the package goes through `read_window` / `valid_mask`, so a raster whose
header opens but whose data is damaged (a truncated download) fails with one line naming the
file and the window. Every output is staged by `atomic_path` / `atomic_dir` in a hidden
`.NAME.HOST-PID-RANDOM.part` beside the target; a later run that writes the same target
removes the parts its dead predecessors left (see `remove_stale_parts`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp
from rasterio.errors import NodataShadowWarning, RasterioError, RasterioIOError
from rasterio.windows import Window

from satsr.errors import SatsrError, SatsrWarning

try:  # GDAL errors rasterio lets through unwrapped in a few code paths
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - private module moved
    CPLE_BaseError = RasterioError

#: What a failed pixel read raises: rasterio's wrapper and the GDAL error under it.
READ_ERRORS: tuple[type[BaseException], ...] = (RasterioIOError, CPLE_BaseError)
#: What GDAL refusing a call raises through rasterio: rasterio's errors and GDAL's own.
GDAL_ERRORS: tuple[type[BaseException], ...] = (RasterioError, CPLE_BaseError)

#: Bound GDAL's block cache (bytes) so memory stays flat whatever the raster's size.
GDAL_CACHEMAX = 64 * 1024 * 1024


def gdal_env() -> rasterio.Env:
    """The GDAL environment every verb runs in."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHEMAX, GDAL_TIFF_INTERNAL_MASK=True)


# ------------------------------------------------------------------- names GDAL can open

#: The real path of datasets opened through an alias (see `gdal_path`), for messages.
_REAL_NAMES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _alias_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="satsr-alias-"))


def gdal_path(path: str | Path) -> tuple[str, Path | None]:
    """(a name GDAL can open `path` by, the temporary folder to delete once done or None).

    rasterio hands GDAL strict UTF-8, so a path holding bytes that are not UTF-8 (kept by
    os.fsdecode as lone surrogates, b"in\\xff.tif") cannot be opened by its name. Such a
    file is reached through a symlink with a plain name in a private temporary folder, its
    siblings of the same stem (world file, .aux.xml, .msk, .ovr) linked beside it so that
    GDAL still finds them.
    """
    given = os.fspath(path)
    if _utf8(given):
        return given, None
    p = os.path.abspath(given)
    folder, name = os.path.split(p)
    stem = name.split(".", 1)[0]
    alias_stem = "raster"
    tmp = _alias_dir()
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name == name or (stem and e.name.startswith(stem + ".")):
                    rest = e.name[len(stem):]
                    if _utf8(rest):
                        os.symlink(os.path.join(folder, e.name), tmp / (alias_stem + rest))
        if not (tmp / (alias_stem + name[len(stem):])).is_symlink():  # odd suffix
            os.symlink(p, tmp / alias_stem)
            return str(tmp / alias_stem), tmp
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(tmp / (alias_stem + name[len(stem):])), tmp


def dataset_path(ds: Any) -> str:
    """The path `ds` was opened from (its real name, not an alias), for messages."""
    return _REAL_NAMES.get(ds, getattr(ds, "name", "?"))


def open_raster(path: str | Path) -> rasterio.io.DatasetReader:
    """Open a raster for reading (any file name), or fail with one clear line."""
    p = Path(path)
    if not p.exists():
        raise SatsrError(f"input not found: {p}")
    if p.is_dir():
        raise SatsrError(f"input is a folder, not a raster: {p}")
    try:
        name, alias = gdal_path(p)
    except OSError as exc:
        raise SatsrError(f"cannot open {p}: {exc.strerror or exc}") from exc
    try:
        ds = rasterio.open(name)
    except RasterioIOError as exc:
        if alias is not None:
            shutil.rmtree(alias, ignore_errors=True)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SatsrError(f"not a readable raster: {p} ({detail.replace(name, p.name)})") \
            from exc
    if alias is not None:
        _REAL_NAMES[ds] = str(p)
        weakref.finalize(ds, shutil.rmtree, alias, True)
    return ds


# ----------------------------------------------------------------------------- reading

def _window_text(ds: Any, window: Window | None) -> str:
    if window is None:
        return f"(0, 0, {ds.width}, {ds.height})"
    w = Window(*window) if not isinstance(window, Window) else window
    return f"({int(w.col_off)}, {int(w.row_off)}, {int(w.width)}, {int(w.height)})"


def _damaged(ds: Any, window: Window | None, exc: BaseException,
             path: str | Path | None) -> SatsrError:
    """The one-line error for a pixel read that GDAL could not do."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:  # GDAL's own words
        nxt = cause.__cause__ or cause.__context__
        assert nxt is not None
        cause = nxt
    lines = str(cause).splitlines() or [type(cause).__name__]
    detail = lines[0]
    name = str(path) if path is not None else dataset_path(ds)
    return SatsrError(f"cannot read {name} at window {_window_text(ds, window)}: data is "
                      f"damaged or truncated ({detail})")


def read_window(ds: Any, bands: int | Sequence[int] | None = None,
                window: Window | None = None, path: str | Path | None = None,
                **kwargs: Any) -> np.ndarray:
    """`ds.read(bands, window=window, **kwargs)`; a read GDAL cannot do (damaged or
    truncated data) raises SatsrError naming the file (`path`, else the dataset's) and the
    window, instead of rasterio's traceback. `bands` None reads every band."""
    try:
        if bands is None:
            return ds.read(window=window, **kwargs)
        return ds.read(bands if isinstance(bands, int) else list(bands), window=window,
                       **kwargs)
    except READ_ERRORS as exc:
        raise _damaged(ds, window, exc, path) from exc


def read_dataset_mask(ds: Any, window: Window | None = None, path: str | Path | None = None,
                      **kwargs: Any) -> np.ndarray:
    """`ds.dataset_mask(window=window, **kwargs)` with `read_window`'s one-line error.

    rasterio's NodataShadowWarning (a 4-band file with both a nodata value and an alpha
    band) is not shown: the mask is GDAL's either way and satsr applies it itself.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NodataShadowWarning)
            return ds.dataset_mask(window=window, **kwargs)
    except READ_ERRORS as exc:
        raise _damaged(ds, window, exc, path) from exc


def parse_bands(spec: str | None) -> list[int] | None:
    """'1,2,3' -> [1, 2, 3] (1-based band indexes); None -> None (the default bands).

    An empty or blank `spec` is an error: `--bands ""` is more likely a shell variable that
    came out empty than a request for the default bands.
    """
    if spec is None:
        return None
    if not spec.strip():
        raise SatsrError("bands is empty: give 1-based band numbers like 1,2,3, or leave "
                         "bands out for every band but alpha", option="bands")
    try:
        bands = [int(s) for s in spec.split(",")]
    except ValueError as exc:
        raise SatsrError(f"bands takes 1-based band numbers like 1,2,3, not {spec!r}",
                         option="bands") from exc
    if len(set(bands)) != len(bands):
        raise SatsrError(f"bands lists a band twice: {spec}", option="bands")
    return bands


def alpha_bands(ds: rasterio.io.DatasetReader) -> list[int]:
    """1-based indexes of the bands GDAL reports as alpha (a mask, not data)."""
    return [i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha]


def select_bands(ds: rasterio.io.DatasetReader, bands: Sequence[int] | None) -> list[int]:
    """Validate `bands` against `ds`; default to every non-alpha band."""
    if bands is None:
        alpha = set(alpha_bands(ds))
        return [i for i in range(1, ds.count + 1) if i not in alpha]
    bad = [b for b in bands if not 1 <= b <= ds.count]
    if bad:
        raise SatsrError(f"band(s) {bad} out of range: {dataset_path(ds)} has bands "
                         f"1..{ds.count}")
    return list(bands)


def valid_mask(ds: rasterio.io.DatasetReader, window: Window, data: np.ndarray | None = None,
               nodata: float | None = None) -> np.ndarray:
    """Boolean (H, W) array, True where a pixel holds data.

    A pixel is invalid when GDAL's dataset mask says so (declared nodata in every band, an
    alpha band, an internal mask), when any band of `data` is NaN, or, for a user-supplied
    `nodata` value on a file that declares none, when every band of `data` equals it.
    """
    mask = read_dataset_mask(ds, window, boundless=False) > 0
    if data is not None:
        if np.issubdtype(data.dtype, np.floating):
            mask &= ~np.isnan(data).any(axis=0)
        if nodata is not None:
            if np.isnan(nodata):
                mask &= ~np.isnan(data).any(axis=0)
            else:
                mask &= ~(data == np.asarray(nodata, dtype=data.dtype)).all(axis=0)
    return mask


def ground_resolution(ds: rasterio.io.DatasetReader) -> tuple[float, float]:
    """(x, y) pixel size in CRS units, not converted: metres or feet for a projected CRS,
    degrees for a geographic one, pixels when there is no georeferencing. The ground sample
    distance in metres is satsr.inference.choice.gsd_metres."""
    t = ds.transform
    return (float(np.hypot(t.a, t.d)), float(np.hypot(t.b, t.e)))


def publish_mode(path: str | Path) -> None:
    """Give a file made by mkstemp (mode 0600) the mode a plain new file gets (0666 - umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# ------------------------------------------------------------------------- safe writes

#: This machine in part names: a part made on another host sharing the folder is never
#: judged by this host's process table.
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
#: `.NAME.HOST-PID-RANDOM.part` (a file or folder being written), `.NAME.HOST-PID-RANDOM.old`
#: (a replaced output folder on its way out), each maybe followed by a GDAL sidecar suffix.
_PART = re.compile(r"^\.(?P<name>.*)\.(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]+)-[^.]*"
                   r"\.(?:part|old)(?:\..*)?$", re.DOTALL)
#: Clock slack (s) between a process's start time and the mtime of a part it wrote.
_SLACK = 2.0


def _part_name(target: Path) -> str:
    """The target's name as used in its part names: plain text, at most 100 bytes."""
    name = "".join(c if _utf8(c) else "_" for c in target.name)
    while len(name.encode("utf-8")) > 100:
        name = name[:-1]
    return name


def _process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), where the system tells (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5), counting from the state (field 3)
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _owner_gone(pid: int, mtime: float) -> bool:
    """Whether the process that wrote a part (pid, last modified at mtime) is gone.

    Gone: no process has that pid, or the one that has it started after the part was last
    written (the pid was reused, e.g. by this very process in a container).
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's (PermissionError) or unknowable
        pass
    started = _process_start(pid)
    return started is not None and started > mtime + _SLACK


def remove_stale_parts(target: str | Path) -> list[Path]:
    """Delete the staging parts of `target` left by runs that were killed (kill -9, power
    loss) before they could clean up; return what was deleted.

    A part is only deleted when it was made on this host and its process is gone (see
    `_owner_gone`): a run still writing the same target keeps its part.
    """
    target = Path(target)
    folder = target.parent
    name = _part_name(target)
    prefix = f".{name}."
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(prefix):
            continue
        m = _PART.match(e.name)
        if m is None or m["name"] != name or m["host"] != _HOST:
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if not _owner_gone(int(m["pid"]), st.st_mtime):
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
        except OSError:
            continue
        removed.append(folder / e.name)
    return removed


def _clean_before_write(target: Path) -> None:
    """remove_stale_parts, reported as one warning."""
    removed = remove_stale_parts(target)
    if removed:
        warnings.warn(f"removed {len(removed)} partial output(s) that an interrupted run "
                      f"left beside {target}: {', '.join(p.name for p in removed[:3])}"
                      + (" ..." if len(removed) > 3 else ""), SatsrWarning, stacklevel=4)


def _part_prefix(target: Path) -> str:
    return f".{_part_name(target)}.{_HOST}-{os.getpid()}-"


@contextlib.contextmanager
def _gdal_folder(folder: Path) -> Iterator[Path]:
    """`folder`, or a symlink to it that GDAL can take when its path is not UTF-8."""
    if _utf8(str(folder.absolute())):
        yield folder
        return
    tmp = _alias_dir()
    try:
        os.symlink(folder.absolute(), tmp / "out")
        yield tmp / "out"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: OS errors that mean "the write could not be done" (disk full, file too large, quota,
#: read-only file system, I/O error), whatever wrote: GDAL, json, torch.save.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO}
#: GDAL loggers (rasterio's error handler) whose records gdal_checked reads.
_GDAL_LOGGERS = ("rasterio._env", "rasterio._err")


class _GdalRecords(logging.Handler):
    """Collects the GDAL errors rasterio only logs (a failed flush at close, a full disk),
    and the warnings of a creation option GDAL ignores (COMPRESS=FOO)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if _TOLERATED:
            return
        msg = record.getMessage()
        if "GDAL signalled an error" in msg:
            m = re.search(r"msg='(.*)'", msg)
            self.errors.append(m.group(1) if m else msg)
        elif record.levelno >= logging.WARNING and ("creation option" in msg or
                                                    "value not recognised" in msg):
            self.errors.append(re.sub(r"^CPLE_\w+ in ", "", msg))


#: >0 while satsr itself handles a GDAL error (see gdal_tolerated).
_TOLERATED: list[None] = []


@contextlib.contextmanager
def gdal_tolerated() -> Iterator[None]:
    """Within the block, GDAL errors that the caller handles itself (an optional setting
    GDAL may refuse) do not fail the write around it (see gdal_checked)."""
    _TOLERATED.append(None)
    try:
        yield
    finally:
        _TOLERATED.pop()


@contextlib.contextmanager
def gdal_checked(target: str | Path, message: str | None = None) -> Iterator[None]:
    """Within the block, a GDAL error that rasterio only logs (e.g. "No space left on
    device" while flushing at close) or an ignored creation option raises SatsrError at the
    end of the block instead of letting a damaged output through."""
    handler = _GdalRecords()
    loggers = [logging.getLogger(n) for n in _GDAL_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield
    except (RasterioError, CPLE_BaseError) as exc:  # a write GDAL refused (full disk...)
        texts = [*handler.errors, str(exc), str(exc.__cause__ or "")]
        failed = [t for t in texts if re.search(r"writ|space|too large|disk|flush", t, re.I)]
        if not failed or message is not None:
            raise
        raise SatsrError(f"cannot write {target}: GDAL: {failed[0].splitlines()[0]}; nothing "
                         f"was published (an existing {Path(target).name} is left as it "
                         f"was)") from exc
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    if handler.errors:
        if message is not None:
            raise SatsrError(f"{message}: {handler.errors[0]}", option="co")
        raise SatsrError(f"cannot write {target}: GDAL: {handler.errors[0]}; nothing was "
                         f"published (an existing {Path(target).name} is left as it was)")


def check_creation_options(profile: dict[str, Any], convert: tuple[str, dict[str, Any]] | None
                           = None) -> None:
    """Refuse, before any work, GDAL creation options (--co) GDAL would reject or ignore
    (BLOCKXSIZE=7, COMPRESS=FOO): a 32x32 in-memory raster is made with `profile` (and copied
    with `convert` = (driver, options) when the output is made by a copy: COG, PNG)."""
    probe = {k: v for k, v in profile.items() if k not in ("crs", "transform", "nodata")}
    probe.update(width=32, height=32)
    token = secrets.token_hex(6)
    names = [f"/vsimem/satsr-co-{token}.tif", f"/vsimem/satsr-co-{token}.out"]
    what = "a creation option (co) is refused by GDAL"
    try:
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), gdal_checked(names[0], what):
            with rasterio.open(names[0], "w", **probe) as dst:
                dst.write(np.zeros((probe["count"], 32, 32), dtype=probe["dtype"]))
            if convert is not None:
                rasterio.shutil.copy(names[0], names[1], driver=convert[0], **convert[1])
    except (RasterioError, CPLE_BaseError, ValueError, TypeError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SatsrError(f"{what}: {detail}", option="co") from exc
    finally:
        for n in names:
            with contextlib.suppress(Exception):
                rasterio.shutil.delete(n)


def _write_failure(exc: BaseException, target: Path) -> SatsrError | None:
    """The one-line error for a write the OS refused (disk full...), else None."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        detail = exc.strerror or str(exc)
    elif isinstance(exc, RuntimeError) and re.search(  # torch.save's words for a failed write
            r"fail\w* (to )?writ|write fail|iostream error|unexpected pos|inline_container",
            str(exc)):
        detail = "the file could not be written (disk full?)"
    else:
        return None
    return SatsrError(f"cannot write {target}: {detail}; nothing was published (an existing "
                      f"{target.name} is left as it was)")


def _fsync(path: Path) -> None:
    """Flush a written file to the disk, so a full disk shows now, not after the rename."""
    with contextlib.suppress(IsADirectoryError, PermissionError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    The temporary is `.NAME.HOST-PID-RANDOM.part`: deleted on any exception (SIGTERM
    becomes one in the CLI), and by the next write of `target` if this process is killed
    outright. Its path is one GDAL can write even where `target`'s is not UTF-8. Every write
    is checked: a GDAL error rasterio only logs, a full disk (ENOSPC, EFBIG, ...) raise
    SatsrError, and `target` is left as it was.
    """
    target = Path(target)
    _clean_before_write(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_part_prefix(target), suffix=".part",
                                   dir=target.parent)
    except OSError as exc:
        raise SatsrError(f"cannot write {target}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _gdal_folder(target.parent) as gdal_parent, gdal_checked(target):
            yield gdal_parent / tmp_path.name
        _fsync(tmp_path)
        publish_mode(tmp_path)
        os.replace(tmp_path, target)
    except (OSError, RuntimeError) as exc:
        failure = _write_failure(exc, target)
        if failure is None:
            raise
        raise failure from exc
    finally:
        tmp_path.unlink(missing_ok=True)
        # GDAL may leave sidecars (.aux.xml, .msk) beside the temporary file
        with contextlib.suppress(OSError), os.scandir(tmp_path.parent) as entries:
            for e in entries:
                if e.name.startswith(tmp_path.name + "."):
                    with contextlib.suppress(OSError):
                        os.unlink(e.path)


def select_one_dtype(ds: Any, bands: Sequence[int] | None, name: str | Path,
                     purpose: str) -> tuple[list[int], str]:
    """The selected bands (see select_bands) and their one dtype; refuses none (only alpha)
    and a mix of dtypes. `purpose` says what the bands are for ("learn", "upscale")."""
    sel = select_bands(ds, list(bands) if bands is not None else None)
    if not sel:
        raise SatsrError(f"{name} has no band to {purpose} (only alpha bands)")
    dtypes = {ds.dtypes[b - 1] for b in sel}
    if len(dtypes) != 1:
        raise SatsrError(f"{name}: bands {sel} mix dtypes {sorted(dtypes)}")
    return sel, dtypes.pop()


#: The file satsr writes in every output folder it makes (make-dataset, band-samples): a
#: non-empty folder without it (or a satsr index) was not written by satsr, and --overwrite
#: never deletes it.
OUTPUT_MARKER = ".satsr-output"
#: Files that mark a folder as a satsr output written before OUTPUT_MARKER existed.
_INDEX = "index.geojson"
_LEGACY_MARKERS = (_INDEX,)


def _satsr_folder(path: Path) -> bool:
    """Whether folder `path` holds satsr's marker, or a satsr dataset index."""
    if (path / OUTPUT_MARKER).is_file():
        return True
    for name in _LEGACY_MARKERS:
        with contextlib.suppress(OSError, ValueError):
            with (path / name).open("rb") as f:
                if b'"satsr"' in f.read(4096):
                    return True
    return False


def write_marker(folder: str | Path, verb: str) -> None:
    """Mark `folder` as an output of satsr's `verb` (see OUTPUT_MARKER)."""
    (Path(folder) / OUTPUT_MARKER).write_text(
        f'{{"written_by": "satsr", "verb": "{verb}"}}\n')


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name the same file or folder (through links, .., bind mounts)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _inside(child: Path, parent: Path) -> bool:
    """Whether `child` is `parent` or lies under it (resolved)."""
    c, p = child.resolve(), parent.resolve()
    return c == p or p in c.parents


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(path: str | Path, overwrite: bool, *, folder: bool = False,
                 source: str | Path | None = None,
                 inputs: Sequence[str | Path | None] = (), option: str = "out",
                 make_parents: bool = False) -> None:
    """The output-path policy of every verb, checked before any work is done (as rasterio's
    rio/helpers.py resolve_inout).

    An output never resolves onto one of the run's `inputs` (or `source`), never lies above
    one (a folder output: --overwrite would delete it), is never a device, pipe or other
    non-regular file, and an existing non-empty folder is replaced (with `overwrite`) only
    when satsr wrote it (see OUTPUT_MARKER). An existing output is refused without
    `overwrite`; so is one of the wrong kind (a folder for a file, a file for a folder), and
    one in a place this user cannot write. A missing parent folder is refused, or, with
    `make_parents`, left for the writer to create. `option` names the flag of the output
    in messages.
    """
    path = Path(path)
    ins = [Path(p) for p in (*inputs, source) if p is not None]
    for src in ins:
        if not src.exists():
            continue
        if (path.exists() or path.is_symlink()) and _same(path, src):
            raise SatsrError(f"{option} {path} would replace an input of this run: {src}",
                             option=option)
        if folder and _inside(src, path):
            raise SatsrError(f"{option} {path} holds an input of this run ({src}): choose "
                             f"an output folder apart from the inputs", option=option)
    if path.exists() or path.is_symlink():
        try:
            mode = path.stat().st_mode
        except OSError as exc:  # a dangling symlink
            raise SatsrError(f"{option} {path} is a broken link: remove it or choose another "
                             f"path", option=option) from exc
        if folder:
            if not stat.S_ISDIR(mode):
                raise SatsrError(f"{option} exists and is not a folder: {path}", option=option)
            if any(path.iterdir()):
                if not overwrite:
                    raise SatsrError(f"output folder {path} is not empty (use overwrite to "
                                     f"replace it)", option="overwrite")
                if not _satsr_folder(path):
                    raise SatsrError(f"{path} is not empty and was not written by satsr (no "
                                     f"{OUTPUT_MARKER}): refusing to delete it with "
                                     f"overwrite; choose another {option}",
                                     option=("overwrite", option))
        else:
            if stat.S_ISDIR(mode):
                raise SatsrError(f"{option} is a folder, not a file: {path}", option=option)
            if not stat.S_ISREG(mode):
                raise SatsrError(f"{option} {path} is a device, pipe or socket, not a regular "
                                 f"file: satsr never replaces one", option=option)
            if not overwrite:
                raise SatsrError(f"output exists: {path} (use overwrite to replace it)",
                                 option="overwrite")
    parent = path.absolute().parent
    if not parent.is_dir():
        if parent.exists() or not make_parents:
            raise SatsrError(f"output folder does not exist: {parent}", option=option)
        parent = _existing_ancestor(parent)
        if not parent.is_dir():
            raise SatsrError(f"cannot make the folder of {option} {path}: {parent} is not a "
                             f"folder", option=option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SatsrError(f"cannot write {option} {path}: no write permission in {parent}",
                         option=option)


def make_parents(path: str | Path) -> None:
    """Create the missing parent folders of output `path` (after check_output passed)."""
    parent = Path(path).absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SatsrError(f"cannot make folder {parent}: {exc.strerror or exc}") from exc


def check_distinct_outputs(outputs: Sequence[tuple[str, str | Path | None]]) -> None:
    """Refuse two outputs of one run (flag, path) that name the same file."""
    seen: list[tuple[str, Path]] = []
    for flag_name, p in outputs:
        if p is None:
            continue
        q = Path(p)
        for other_flag, other in seen:
            if q.absolute() == other.absolute() or (q.exists() and other.exists()
                                                    and _same(q, other)):
                raise SatsrError(f"{other_flag} and {flag_name} name the same file {q}: "
                                 f"give each its own path", option=(other_flag, flag_name))
        seen.append((flag_name, q))


@contextlib.contextmanager
def atomic_dir(target: str | Path, overwrite: bool = False, verb: str = "satsr"
               ) -> Iterator[Path]:
    """Build a folder beside `target` and move it into place only on success.

    Refuses a non-empty `target` unless `overwrite`; an interrupted build leaves `target`
    as it was, and its staging folder `.NAME.HOST-PID-RANDOM.part` is deleted (by this run
    on an exception, by the next build of `target` after a kill -9).
    """
    target = Path(target)
    check_output(target, overwrite, folder=True, make_parents=True)
    make_parents(target)
    parent = target.resolve().parent
    _clean_before_write(parent / target.name)
    tmp = Path(tempfile.mkdtemp(prefix=_part_prefix(target), suffix=".part", dir=parent))
    try:
        with _gdal_folder(parent) as gdal_parent, gdal_checked(target):
            yield gdal_parent / tmp.name
        write_marker(tmp, verb)
        if target.exists():
            old = parent / f"{_part_prefix(target)}{secrets.token_hex(4)}.old"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:
        failure = _write_failure(exc, target)
        if failure is None:
            raise
        raise failure from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
