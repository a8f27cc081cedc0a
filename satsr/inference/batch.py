"""Many rasters in one call, in one process or sharded over a torchrun job: upscale_rasters.

    torchrun --standalone --nproc-per-node 4 -m satsr upscale scenes/ -o out/ --skip-existing

Each process of the job (rank) takes its own device (`cuda:LOCAL_RANK`, or the CPU) and its
own share of the inputs, and writes each of its outputs with `upscale_raster`, exactly as a
one-process run does (same code, same bytes; atomic: a finished output only ever appears at
its path by rename). The sharding:

- Balanced by pixel count, not by file count: rank 0 reads every input's header, and the
  inputs are dealt largest first (ties: input order) to the rank with the fewest pixels so
  far (ties: the lowest rank). Deterministic: the same inputs on the same number of ranks
  give the same shares. An input whose header cannot be read weighs 0 (it fails, alone,
  on its rank with the same one-line error a one-process run gives).
- One failure does not stop the others: each rank records a failed input's one-line error
  and goes on with its next input.
- At the end the ranks gather their records (torch.distributed, the job's default process
  group: gloo, on the CPU and on CUDA alike, since only a few small Python objects travel,
  and gloo waits the `WAIT` below for a slow rank, where NCCL's watchdog would abort after
  10 minutes); every rank returns the same UpscaleSummary.

`skip_existing`: an output is complete, and skipped, when a file is at its path (outputs are
only published by atomic rename, so a file there is whole), it opens as a raster, its size is
the input's times the scale, and, for GeoTIFFs (which hold satsr's tags; PNG and JPEG may not),
its tags name the same scale, model or method and bands as this run. Rank 0 checks every
output before the work is shared out, so a resumed job balances what is left. An output that
is there but not complete is treated as any existing output: refused without `overwrite`.
"""

from __future__ import annotations

import heapq
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from satsr.errors import SatsrError, printable
from satsr.inference.engine import DEFAULT_OVERLAP, Engine, load_engine
from satsr.inference.writer import UpscaleResult, upscale_raster

#: How long a rank that has finished waits for the others at the final gather.
WAIT = timedelta(hours=48)

WRITTEN, SKIPPED, FAILED = "written", "skipped", "failed"


@dataclass
class FileOutcome:
    """What became of one input."""

    src: str
    dst: str
    status: str  # "written", "skipped" (already complete) or "failed"
    rank: int  # the rank that wrote it, tried it, or (skipped) found it complete
    pixels: int = 0  # output pixels written (width x height)
    seconds: float = 0.0
    error: str | None = None  # the one-line error of a failed input


@dataclass
class RankReport:
    """One rank's share of the job."""

    rank: int
    device: str
    seconds: float  # this rank's time on its share
    files: list[FileOutcome] = field(default_factory=list)
    planned_pixels: int = 0  # input pixels dealt to this rank

    def line(self, world: int) -> str:
        """The per-rank log line."""
        done = [f for f in self.files if f.status == WRITTEN]
        failed = len(self.files) - len(done)
        mpix = sum(f.pixels for f in done) / 1e6
        n = len(self.files)
        return (f"rank {self.rank}/{world} ({self.device}): {n} file{'' if n == 1 else 's'}, "
                f"{len(done)} written, {failed} failed, {mpix:.2f} MPix of output in "
                f"{self.seconds:.1f} s")


@dataclass
class UpscaleSummary:
    """What `upscale_rasters` did, over every rank (each rank returns the same one)."""

    files: list[FileOutcome]  # in input order
    ranks: list[RankReport]
    seconds: float  # wall time of the whole call, to the end of the slowest rank
    rank: int = 0  # the rank that returned this summary

    @property
    def world(self) -> int:
        return len(self.ranks)

    def _with(self, status: str) -> list[FileOutcome]:
        return [f for f in self.files if f.status == status]

    @property
    def written(self) -> list[FileOutcome]:
        return self._with(WRITTEN)

    @property
    def skipped(self) -> list[FileOutcome]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[FileOutcome]:
        return self._with(FAILED)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def output_pixels(self) -> int:
        return sum(f.pixels for f in self.written)

    @property
    def mpix_per_s(self) -> float:
        return self.output_pixels / 1e6 / max(self.seconds, 1e-9)

    def line(self) -> str:
        """The one summary line (rank 0 prints it)."""
        n, procs = len(self.files), f"{self.world} process{'es' if self.world > 1 else ''}"
        if n and len(self.skipped) == n:
            return (f"nothing to do: all {n} outputs are already complete "
                    f"({n} skipped, on {procs})")
        return (f"{n} inputs on {procs}: {len(self.written)} written, {len(self.skipped)} "
                f"skipped (already complete), {len(self.failed)} failed; "
                f"{self.output_pixels / 1e6:.2f} MPix of output in {self.seconds:.1f} s "
                f"({self.mpix_per_s:.2f} MPix/s)")


# --------------------------------------------------------------------------- the sharding

def balance(weights: Sequence[int], world: int) -> list[list[int]]:
    """Indices of `weights` dealt to `world` ranks: largest first (ties: lower index) to the
    least-loaded rank (ties: lower rank); each rank's indices in input order."""
    if world < 1:
        raise SatsrError(f"world size must be at least 1, not {world}")
    heap = [(0, r) for r in range(world)]
    shares: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(weights)), key=lambda k: (-int(weights[k]), k)):
        load, r = heapq.heappop(heap)
        shares[r].append(i)
        heapq.heappush(heap, (load + int(weights[i]), r))
    return [sorted(s) for s in shares]


def input_pixels(src: Path) -> int:
    """Width x height of a raster from its header; 0 when it cannot be read."""
    from rasterio.errors import NotGeoreferencedWarning

    from satsr.data.raster import gdal_env, open_raster

    try:
        with gdal_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_raster(src) as ds:
                return int(ds.width) * int(ds.height)
    except Exception:  # noqa: BLE001  (it fails on its rank, with its own error)
        return 0


def is_complete(src: Path, dst: Path, engine: Engine | None,
                bands: Sequence[int] | None = None) -> bool:
    """Whether `dst` is a finished output of `src` by this run's settings (module doc).

    `engine`: the run's model or method; None when each input gets the bundled model the
    choice table gives it (that choice is then made here too).
    """
    from rasterio.errors import NotGeoreferencedWarning

    from satsr.data.raster import gdal_env, open_raster

    if not dst.is_file():
        return False
    try:
        with gdal_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_raster(src) as ds:
                size = (int(ds.width), int(ds.height))
            with open_raster(dst) as out:
                got, driver, tags = (int(out.width), int(out.height)), out.driver, out.tags()
        if engine is None:
            from satsr.inference.choice import choose_model
            from satsr.inference.modelfile import read_metadata

            path = choose_model(src, bands).path
            scale, kind, name = int(read_metadata(path)["arch"]["scale"]), "MODEL", path.name
        else:
            scale = engine.scale
            kind = "MODEL" if engine.is_model else "METHOD"
            name = Path(engine.name).name if engine.is_model else engine.name
    except Exception:  # noqa: BLE001  (unreadable: not complete; the run says why)
        return False
    if got != (size[0] * scale, size[1] * scale):
        return False
    if driver != "GTiff" and "SATSR_SCALE" not in tags:
        return True  # PNG / JPEG may hold no tags: the size is what there is to check
    return (tags.get("SATSR_SCALE") == str(scale) and tags.get(f"SATSR_{kind}") == name
            and (not bands or tags.get("SATSR_BANDS") == ",".join(map(str, bands))))


def output_paths(inputs: Sequence[Path], out: Path) -> list[Path]:
    """Where each input's output goes: into folder `out` under the input's name, or (one
    input, `out` not a folder) at `out` itself."""
    if len(inputs) == 1 and not out.is_dir():
        return [out]
    if not out.is_dir():
        raise SatsrError(f"with several inputs, out must be an existing folder: {out}",
                         option="out")
    targets = [out / p.name for p in inputs]
    names = [t.name for t in targets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SatsrError(f"several inputs share the output name {dup[0]}")
    return targets


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


# ------------------------------------------------------------------------------ the job

def upscale_rasters(inputs: Sequence[str | Path], out: str | Path,
                    model: Engine | str | Path | None = None, *, method: str | None = None,
                    scale: int | None = None, device: str = "auto",
                    bands: Sequence[int] | None = None, nodata: float | None = None,
                    tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                    batch_size: int | None = None, cog: bool = False,
                    creation_options: dict[str, str] | None = None, overwrite: bool = False,
                    skip_existing: bool = False, progress: bool = False,
                    scaling: str = "auto", strength: float | None = None,
                    precision: str = "fp32", adaptive: str | None = None,
                    keep_going: bool = True,
                    on_file: Callable[[FileOutcome, UpscaleResult | None], None] | None = None,
                    log: Callable[[str], None] | None = None,
                    error_text: Callable[[BaseException], str] | None = None) -> UpscaleSummary:
    """Super-resolve many rasters into folder `out` (one input: `out` may name the file),
    sharded over the ranks of a torchrun job when there is one (see the module docstring).

    The raster options are `upscale_raster`'s; `model` may also be a loaded Engine (one
    process only: each rank loads its own on its device). `skip_existing` skips outputs that
    are already complete. `keep_going=False` raises the first failure instead of recording
    it (one process only: the ranks of a job always record it). `on_file(outcome, result)`
    is called on the rank that handled each input (skipped ones: on rank 0) when it is done;
    `log` receives the informative lines (the model the choice table gives an input; in a
    job, each rank's line when its share is done); `error_text` words an exception in one
    line (default: its first line). Returns the same
    UpscaleSummary on every rank.
    """
    from satsr.nn.distributed import destroy_group_if_owned, setup_distributed

    t0 = time.perf_counter()
    say = log or (lambda line: None)
    srcs = [Path(p) for p in inputs]
    targets = _checked_targets(srcs, Path(out), isinstance(model, Engine) and (
        method is not None or scale is not None), skip_existing, overwrite)

    import torch.distributed as dist

    owned = not (dist.is_available() and dist.is_initialized())
    job = setup_distributed(False, backend="gloo", timeout=WAIT)
    try:
        if job.enabled and isinstance(model, Engine):
            raise SatsrError("a loaded Engine cannot be shared by the ranks of a job: give "
                             "model as a file, run folder or bundled name", option="model")
        engines = _Engines(job, model, method, scale, device, strength, bands, say)
        done, weights = _plan_job(job, srcs, targets, skip_existing, engines.given, bands)
        todo = [i for i in range(len(srcs)) if not done[i]]
        shares = balance([weights[i] for i in todo], job.world)
        mine = [todo[k] for k in shares[job.rank]]

        outcomes: dict[int, FileOutcome] = {}
        if job.is_writer:
            for i in range(len(srcs)):
                if done[i]:
                    outcomes[i] = FileOutcome(str(srcs[i]), str(targets[i]), SKIPPED, 0)
                    if on_file is not None:
                        on_file(outcomes[i], None)
        options = {"bands": bands, "nodata": nodata, "tile": tile, "overlap": overlap,
                   "batch_size": batch_size, "cog": cog, "creation_options": creation_options,
                   "overwrite": overwrite, "progress": progress and not job.enabled,
                   "scaling": scaling, "precision": precision, "adaptive": adaptive}
        t1 = time.perf_counter()
        for i in mine:
            outcome, result = _upscale_one(srcs[i], targets[i], engines, options, job.rank,
                                           keep_going or job.enabled, error_text or _first_line)
            outcomes[i] = outcome
            if on_file is not None:
                on_file(outcome, result)
            del result
        mine_report = (RankReport(job.rank, engines.label, time.perf_counter() - t1,
                                  [outcomes[i] for i in mine],
                                  sum(weights[i] for i in mine)),
                       {i: o for i, o in outcomes.items()})
        reports = _gather(job, mine_report, say)
        every: dict[int, FileOutcome] = {}
        for _, got in reports:
            every.update(got)
        return UpscaleSummary([every[i] for i in range(len(srcs))],
                              [rep for rep, _ in reports], time.perf_counter() - t0, job.rank)
    finally:
        destroy_group_if_owned(owned)


def _checked_targets(srcs: Sequence[Path], out: Path, method_with_engine: bool,
                     skip_existing: bool, overwrite: bool) -> list[Path]:
    """Each input's output path, checked before any model is loaded."""
    if not srcs:
        raise SatsrError("no input to upscale")
    targets = output_paths(srcs, out)
    if method_with_engine:
        raise SatsrError("method and scale apply when model is not an Engine",
                         option=("method", "scale"))
    if len(srcs) == 1 and not skip_existing:
        from satsr.data.raster import check_output

        check_output(targets[0], overwrite, source=srcs[0])
    return targets


class _Engines:
    """The engine of each input of one rank: the one given (loaded once, so a bad model
    fails before any work), else the bundled model the choice table gives the input (each
    loaded once, on first use)."""

    def __init__(self, job: Any, model: Engine | str | Path | None, method: str | None,
                 scale: int | None, device: str, strength: float | None,
                 bands: Sequence[int] | None, say: Callable[[str], None]) -> None:
        from satsr.nn.device import resolve_device
        from satsr.nn.distributed import training_device

        self.spec = str(training_device(device, job.local_rank)) if job.enabled else device
        self.scale, self.strength, self.bands, self.say = scale, strength, bands, say
        self.loaded: dict[str, Engine] = {}
        self.given: Engine | None = None
        if isinstance(model, Engine):
            self.given = model
        elif model is not None or method is not None:  # a bad model fails before any work
            self.given = load_engine(model, method, scale, self.spec, strength)
        self.label = str(self.given.device if self.given is not None
                         else resolve_device(self.spec))

    def for_input(self, src: Path) -> Engine:
        if self.given is not None:
            return self.given
        from satsr.inference.choice import choose_model

        choice = choose_model(src, self.bands)
        self.say(f"{printable(src.name)}: using {choice.model}: {choice.reason}")
        if choice.model not in self.loaded:
            self.loaded[choice.model] = load_engine(choice.path, None, self.scale, self.spec,
                                                    self.strength, from_choice=True)
        return self.loaded[choice.model]


def _plan_job(job: Any, srcs: Sequence[Path], targets: Sequence[Path], skip_existing: bool,
              given: Engine | None, bands: Sequence[int] | None,
              ) -> tuple[list[bool], list[int]]:
    """(done, weight) of each input: rank 0 decides what is left to do and how heavy each
    input is and tells the others, so that all ranks deal alike."""
    plan: list[Any] = [None]
    if job.is_writer:
        done = [bool(skip_existing and is_complete(s, d, given, bands))
                for s, d in zip(srcs, targets, strict=True)]
        weights = [0 if skip else input_pixels(s) if job.enabled else 1
                   for s, skip in zip(srcs, done, strict=True)]
        plan = [(done, weights)]
    if job.enabled:
        import torch.distributed as dist

        dist.broadcast_object_list(plan, src=0)
    done, weights = plan[0]
    return done, weights


def _upscale_one(src: Path, dst: Path, engines: _Engines, options: dict[str, Any], rank: int,
                 keep_going: bool, words: Callable[[BaseException], str],
                 ) -> tuple[FileOutcome, UpscaleResult | None]:
    """Upscale one input; a failure is recorded as its outcome (raised if not `keep_going`)."""
    ts = time.perf_counter()
    try:
        result = upscale_raster(src, dst, engines.for_input(src), **options)
    except Exception as exc:  # noqa: BLE001  (record it, finish the others)
        if not keep_going:  # (a rank of a job keeps going: one that stops would leave
            raise  # the others waiting at the gather)
        return FileOutcome(str(src), str(dst), FAILED, rank, seconds=time.perf_counter() - ts,
                           error=words(exc)), None
    return FileOutcome(str(src), str(dst), WRITTEN, rank, result.width * result.height,
                       result.seconds), result


def _gather(job: Any, mine: tuple[RankReport, dict[int, FileOutcome]],
            say: Callable[[str], None]) -> list[tuple[RankReport, dict[int, FileOutcome]]]:
    """Every rank's report and outcomes (in a job, each rank says its line first)."""
    if not job.enabled:
        return [mine]
    import torch.distributed as dist

    say(mine[0].line(job.world))  # before the gather: no rank is gone yet
    gathered: list[Any] = [None] * job.world
    dist.all_gather_object(gathered, mine)
    return gathered
