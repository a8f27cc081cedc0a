"""One prepared GPU session (issues 20 and 21): the CUDA tests, the bundled RGB model's two-stage
recipe at full scale, its model file, val logs and card, and the GPU measurements, in one
command of at most 8 minutes on an H200.

1. On the CPU machine, in the repository root, cut everything the GPU run needs into one
   ignored folder, `gpu-carry/` (sized to travel with the working tree under the device
   tool's 64 MiB; it prints the total and refuses to finish when over):

       python examples/gpu_run.py data                  # ../shared/data, /work/corpus

2. On the GPU machine, the device tool's `run`, with carry ["gpu-carry"], timeout_s 600 and
   the command (first thing in a session lent a GPU; it ends within ~8 minutes):

       set -o pipefail; PYTHONUNBUFFERED=1 timeout 580 python3 examples/gpu_run.py run --out $OUT

   If device time is left after it (the session has 15 minutes, start-ups included), the
   measurements that did not fit (the 10980^2 tile) in a second command, same carry:

       timeout 330 python3 examples/gpu_run.py run --out $OUT --steps measure --deadline-s 300

   Everything comes back in $OUT (at most 8 files, as the tool allows):
   gpu_run.json (the summary: one entry per step), gpu_run.jsonl (the same, one JSON line
   per step as it finishes), log.txt (the children's output), val-rgb-pre.csv and
   val-rgb-ft.csv (the stages' val logs), satsr-rgb-x4.safetensors + card.md (the model,
   fp16: `bundled_models.finalize`'s, with the adaptive strength decided per tile or per
   raster as rescope chooses it, where it can run there, else the selected round as the
   trainer left it), and rgb-ft-run.tar (stage 2's model, val logs
   and config, to run finalize on the CPU machine when it could not run on the GPU one:
   finalize scores vgg-l, and VGG16's LPIPS weights do not fit in the carry):

       tar xf rgb-ft-run.tar -C WORK
       python examples/gpu_run.py finalize WORK/rgb-ft gpu-carry/data/rgb8 FINAL [--quick]

What `data` cuts (into gpu-carry/data, named as examples/bundled_models.py's WORK/data):
- `corpus-rgb8`: 256-px chips of the fetched corpus (`examples/corpus.py OUT`: OUT/rgb8/*.tif,
  photographs, drone and aerial images, panchromatic images as grey), split 0.95 / 0.05 / 0,
  for stage 1 (`rgb-pre`);
- `rgb8`: chips of the shared 8-bit sources (the held-out Manila copy, the other sub-metre
  rasters, Landsat 7 and the RGB bands of the RGBN ones) through the committed split
  `examples/splits/shared.json`, with train, val and test chips, for stage 2 (`rgb-ft`) and
  as the eval dataset (val: round selection and the finishing step; test: scores). Its chips
  are 192 px, not 256: the committed split's blocks are ~200 px (one raster, one split) and a
  chip lies in one block, so no 256-px chip can be cut through it; stage 2 trains at HR 192.
- Sources smaller than the chip size, or whose split blocks all are, are left out and named
  (e.g. colorado_aerial_0.15m.tif, 383x232 px, at 256 px); so are missing ones.
- Chips are lossless WebP GeoTIFFs (about 30 % smaller than make-dataset's deflate).
- `wheels/`: rasterio, lpips, shapely, affine, cligj, click-plugins for CPython 3.12
  (manylinux x86-64), the machine lacking them; the large ones re-packed with LZMA members
  (pip installs them as usual; same files, same RECORD hashes), so they fit.
- `torch/hub/checkpoints/alexnet-owt-7be5be79.pth`: AlexNet's convolutions for LPIPS alex-l in
  fp16 (5 MB; VGG16's do not fit, so the GPU run selects rounds by alex-l where the recipe
  says pe-l).

What `run` does, each step one JSON line (its seconds, its result or error), under a
deadline (--deadline-s, default 470 s from its start; a step that would pass it is cut short or
skipped, saying so):
1. installs the carried wheels with `pip install --target` into a folder that is put on
   PYTHONPATH for every child process; LPIPS weights from TORCH_HOME=gpu-carry/torch;
2. `pytest tests/test_cuda.py`;
3. stage 1, RECIPES["rgb-pre"] of examples/bundled_models.py, and stage 2, RECIPES["rgb-ft"]
   (`--init-from` stage 1), with their arguments unchanged except --hr-size, -b, -n,
   --device, --amp, --val-every / --val-chips (and --select alex-l where VGG16's LPIPS is
   missing). The iteration count comes from a wall-clock budget per stage (--pre-seconds 60,
   --ft-seconds 170 of training, less if the deadline needs it; `satsr train` has no time
   limit of its own): a short pilot run (`-n 100`) measures it/s, then `--resume` (exact)
   trains to the count that fills the budget;
4. the finishing step: `bundled_models.finalize(run_dir, data_dir, out_dir, quick=...)` (the
   aliasing probe, the adaptive strength and where it is decided; data_dir is the rgb8
   dataset) when it exists and VGG16's LPIPS is there, else the plain model file and card;
5. issue 21's GPU measurements (--measure-s 75 kept for them): benchmarks/upscale_pipeline.py's
   train_vs_minimal, validation_seconds, model_path and sentinel_tile when the checkout has it
   (see `measurements`), else benchmarks/train_step.py's step vs minimal loop; each is printed
   as the benchmark's report line and as `TARGET name: value (target <= x): met|MISSED`
   (upscale with the default model vs the bare bf16 forward, >= 0.5x output MPix/s; train
   realistic vs the minimal loop, <= 1.15x; a 48-chip validation, <= 2 s; the 10980^2 x 4
   uint16 tile x4, <= 90 s).

`--quick` shrinks everything (tiny chips and counts, a 2-block generator, a few iterations, no
wheel download) so that both subcommands run on a CPU in CI (tests/test_gpu_script.py, with
`--device cpu`); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SATSR = [sys.executable, "-m", "satsr"]
CARRY = ROOT / "gpu-carry"
#: the device tool's limit on what travels: tracked + untracked-not-ignored files + carry
BUDGET_MIB = 64.0
#: what the GPU machine lacks, as in this project's venv
WHEELS = ["rasterio==1.4.4", "lpips==0.1.4", "shapely==2.2.0", "affine==3.0.1", "cligj==0.7.2",
          "click-plugins==1.1.1.2"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
ALEXNET = "alexnet-owt-7be5be79.pth"
#: lossless WebP chips (8-bit RGB only)
CHIP_CO = ["--co", "COMPRESS=WEBP", "--co", "WEBP_LOSSLESS=TRUE", "--co", "PREDICTOR=1"]
#: chip side and count of each carried dataset: full / quick
SIZES = {"corpus-rgb8": (256, 64), "rgb8": (192, 48)}
COUNTS = {"corpus-rgb8": (100, 30), "rgb8": (200, 24)}
#: rgb8 under the split file: --split only shares --count (train, val, test)
RGB8_SPLIT = "0.7,0.12,0.18"
STAGES = ("rgb-pre", "rgb-ft")


def _bm() -> Any:
    sys.path.insert(0, str(EXAMPLES))
    import bundled_models

    return bundled_models


def _mib(n: float) -> float:
    return round(n / 2**20, 2)


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------ data

def fits(path: Path, size: int, split: dict | None) -> str:
    """Why source `path` cannot give `size`-px chips ("" when it can): missing, smaller than
    the chip, or (with the split file's entries `split`, by name) every block smaller."""
    import rasterio

    if not path.is_file():
        return "missing"
    with rasterio.open(path) as ds:
        w, h = ds.width, ds.height
    if w < size or h < size:
        return f"{w}x{h} px, smaller than the chip size {size}"
    if split is not None:
        entry = split.get(path.name)
        if entry is None:
            return "not in the split file"
        if not any(b[2] >= size and b[3] >= size for b in entry["blocks"]):
            bw = max(b[2] for b in entry["blocks"])
            bh = max(b[3] for b in entry["blocks"])
            return f"its split-file blocks are at most {bw}x{bh} px, smaller than {size}"
    return ""


def cut(name: str, sources: list[Path], args: list[str], size: int, out: Path,
        split_file: Path | None, allow_missing: bool) -> dict:
    """`satsr make-dataset` of the sources that fit `size`, naming the ones left out (a
    missing one stops it unless `allow_missing`)."""
    split = None
    if split_file is not None:
        split = {s["name"]: s for s in json.loads(split_file.read_text())["sources"]}
    kept, skipped = [], {}
    for s in sources:
        why = fits(s, size, split)
        if why:
            skipped[s.name] = why
            print(f"{name}: leaving out {s.name}: {why}", flush=True)
        else:
            kept.append(s)
    missing = [k for k, v in skipped.items() if v == "missing"]
    if missing and not allow_missing:
        raise SystemExit(f"{name}: missing sources {missing} (--shared, --corpus)")
    if not kept:
        raise SystemExit(f"{name}: no source fits {size}-px chips")
    cmd = [*SATSR, "make-dataset", *map(str, kept), *args, "--size", str(size), *CHIP_CO,
           "--seed", "0", "-o", str(out / name), "--overwrite"]
    if split_file is not None:
        cmd += ["--split-file", str(split_file)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    counts = json.loads((out / name / "index.geojson").read_text())["satsr"]["counts"]
    return {"size": size, "sources": [s.name for s in kept], "left_out": skipped,
            "counts": counts, "mib": _mib(_du(out / name))}


def _repack_lzma(wheel: Path) -> None:
    """Rewrite a wheel's members with LZMA (pip reads them; the RECORD hashes are of the
    uncompressed files, so they stay valid)."""
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as zi, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as zo:
        for info in zi.infolist():
            zo.writestr(info, zi.read(info), compress_type=zipfile.ZIP_LZMA)
    tmp.replace(wheel)


def fetch_wheels(folder: Path) -> None:
    """The packages the GPU machine lacks, as CPython 3.12 manylinux wheels, no other deps."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    *plat, "-d", str(folder), *WHEELS], check=True)
    for w in sorted(folder.glob("*.whl")):
        if w.stat().st_size > 2**20:
            before = w.stat().st_size
            _repack_lzma(w)
            print(f"{w.name}: {_mib(before)} -> {_mib(w.stat().st_size)} MiB (LZMA)", flush=True)


def write_alexnet(folder: Path) -> Path:
    """AlexNet's ImageNet convolutions (as satsr finds them here) in fp16, torchvision's layout
    and file name, for TORCH_HOME=<carry>/torch on the GPU machine."""
    import torch

    from satsr.evaluation.weights import load_backbone

    state = load_backbone("alexnet").state
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ALEXNET
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()
                if k.startswith("features.")}, path)
    return path


def tree_bytes(root: Path) -> int:
    """Bytes of what travels besides the carry: tracked and untracked-not-ignored files."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"],
                               cwd=root, check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        print("warning: not a git checkout: the working tree is not counted", flush=True)
        return 0
    files = (root / n for n in names.decode().split("\0") if n)
    return sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())


def budget_report(parts: dict[str, int], budget_mib: float) -> tuple[float, bool]:
    """Print each part and the total in MiB; (total MiB, whether it fits)."""
    total = sum(parts.values())
    for k, v in parts.items():
        print(f"  {k:48s} {_mib(v):8.2f} MiB", flush=True)
    ok = total <= budget_mib * 2**20
    print(f"  {'total':48s} {_mib(total):8.2f} MiB of {budget_mib:g} MiB: "
          f"{'fits' if ok else 'OVER BUDGET'}", flush=True)
    return _mib(total), ok


def step_data(a: argparse.Namespace) -> None:
    bm = _bm()
    bm.SHARED = a.shared
    q = int(a.quick)
    carry: Path = a.carry
    data = carry / "data"
    data.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"quick": a.quick, "datasets": {}}
    photos = sorted((a.corpus / "rgb8").glob("*.tif"))
    if not photos:
        raise SystemExit(f"no corpus images in {a.corpus}/rgb8 (examples/corpus.py OUT)")
    # as the corpus-rgb8 dataset of the rgb-pre recipe: no split file (no corpus raster is
    # in the committed split), 5 % of the area for validation
    manifest["datasets"]["corpus-rgb8"] = cut(
        "corpus-rgb8", photos, ["--max-nodata", "0.01", "--nodata", "0", "--split",
                                "0.95,0.05,0", "--count", str(COUNTS["corpus-rgb8"][q])],
        SIZES["corpus-rgb8"][q], data, None, a.quick)
    # as bundled_models.py's rgb8 (sources, bands, nodata, split file), bigger chips, fewer
    with tempfile.TemporaryDirectory() as tmp:
        manila = bm._held_out_manila(Path(tmp)) if (a.shared / "manila_aerial_0.1m.tif"
                                                    ).is_file() else a.shared / "MANILA"
        d = bm.DATASETS["rgb8"]
        sources = [manila if s == "MANILA" else a.shared / s for s in d.sources]
        manifest["datasets"]["rgb8"] = cut(
            "rgb8", sources, ["--bands", "1,2,3", "--nodata", "0", "--max-nodata", "0.01",
                              "--split", RGB8_SPLIT, "--count", str(COUNTS["rgb8"][q])],
            SIZES["rgb8"][q], data, a.split_file, a.quick)
    for old in data.iterdir():  # only what this run cut travels
        if old.name not in manifest["datasets"]:
            shutil.rmtree(old)
    if a.quick:
        print("quick: no wheels fetched (the GPU run installs none)", flush=True)
        shutil.rmtree(carry / "wheels", ignore_errors=True)
    elif not a.keep_wheels or not list((carry / "wheels").glob("*.whl")):
        fetch_wheels(carry / "wheels")
    manifest["wheels"] = sorted(w.name for w in (carry / "wheels").glob("*.whl"))
    write_alexnet(carry / "torch" / "hub" / "checkpoints")
    parts = {"working tree (tracked + untracked, not ignored)": tree_bytes(ROOT),
             **{f"data/{n}": _du(data / n) for n in manifest["datasets"]},
             "wheels": _du(carry / "wheels") if (carry / "wheels").is_dir() else 0,
             "torch (AlexNet fp16)": _du(carry / "torch")}
    print(f"what travels to the GPU machine with carry [{carry.name!r}]:", flush=True)
    total, ok = budget_report(parts, a.budget_mib)
    manifest.update(parts_mib={k: _mib(v) for k, v in parts.items()}, total_mib=total,
                    budget_mib=a.budget_mib)
    (carry / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if not ok:
        raise SystemExit(f"refusing: {total} MiB would travel, over the {a.budget_mib:g} MiB "
                         "the device tool takes (lower the chip counts in COUNTS, or carry "
                         "less)")
    print(f"ready: {carry} ({total} MiB with the working tree)", flush=True)


# ------------------------------------------------------------------------------------- run

class Run:
    """The `run` subcommand's state: the output folder, the log and the deadline."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.out: Path = a.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()
        self.deadline = self.t0 + a.deadline_s
        self.summary: dict[str, Any] = {"quick": a.quick, "device": a.device, "steps": {}}
        (self.out / "gpu_run.jsonl").write_text("")
        self.logfile = (self.out / "log.txt").open("a")

    def left(self) -> float:
        return self.deadline - time.time()

    def report(self, key: str, value: dict) -> None:
        value = {"seconds": None, **value}
        self.summary["steps"][key] = value
        self.summary["total_seconds"] = round(time.time() - self.t0, 1)
        line = json.dumps({key: value})
        print(line[:2000], flush=True)
        with (self.out / "gpu_run.jsonl").open("a") as f:
            f.write(line + "\n")
        (self.out / "gpu_run.json").write_text(json.dumps(self.summary, indent=1) + "\n")

    def child(self, cmd: list[str], timeout: float) -> tuple[int, str]:
        """Run a child process (output to log.txt); (exit code, its output); 124 on timeout."""
        self.logfile.write(f"\n+ {' '.join(cmd)}\n")
        self.logfile.flush()
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                               timeout=max(1.0, timeout))
            rc, text = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as exc:
            def s(x: Any) -> str:
                return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")

            rc, text = 124, s(exc.stdout) + s(exc.stderr) + f"\n[timed out after {timeout:.0f} s]"
        self.logfile.write(text)
        self.logfile.flush()
        return rc, text


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def install(r: Run) -> None:
    """pip install --target the carried wheels; the folder goes on PYTHONPATH for children."""
    t = time.time()
    wheels = sorted((r.a.carry / "wheels").glob("*.whl"))
    site = r.a.site
    paths = [str(ROOT)]
    if wheels:
        rc, tail = r.child([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                            "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade",
                            "--target", str(site), *map(str, wheels)], 120)
        if rc:
            r.report("install", {"rc": rc, "tail": _tail(tail)})
            raise SystemExit("the carried wheels did not install")
        paths.insert(0, str(site))
        sys.path.insert(0, str(site))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
    torch_home = r.a.carry / "torch"
    if (torch_home / "hub" / "checkpoints" / ALEXNET).is_file():
        os.environ["TORCH_HOME"] = str(torch_home)
    rc, tail = r.child([sys.executable, "-c", (
        "import json, rasterio, shapely, lpips, torch\n"
        "from satsr.evaluation.metrics import lpips_unavailable\n"
        "print(json.dumps({'rasterio': rasterio.__version__, 'gdal': rasterio.__gdal_version__,"
        " 'torch': torch.__version__, 'cuda': torch.cuda.is_available(), 'gpu':"
        " torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,"
        " 'lpips_missing': list(lpips_unavailable(['alex-l', 'vgg-l']))}))")], 120)
    line = next((x for x in tail.splitlines()[::-1] if x.startswith("{")), "")
    info = json.loads(line) if rc == 0 and line else {"rc": rc or 1, "tail": _tail(tail)}
    rc = rc or int(not line)
    r.summary["select"] = "pe-l" if not info.get("lpips_missing") else "alex-l"
    r.report("install", {"seconds": round(time.time() - t, 1),
                         "wheels": [w.name for w in wheels] or "none carried (quick data)",
                         "site": str(site) if wheels else None,
                         "torch_home": os.environ.get("TORCH_HOME"), **info})
    if rc:
        raise SystemExit("the environment check failed")


def cuda_tests(r: Run) -> None:
    t = time.time()
    rc, tail = r.child([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_cuda.py"], min(150, r.left()))
    r.report("cuda_tests", {"seconds": round(time.time() - t, 1), "rc": rc,
                            "tail": _tail(tail, 1)})


def _set(args: list[str], names: tuple[str, ...], value: str) -> list[str]:
    """args with option `names` set to value (replaced in place, else appended)."""
    out = list(args)
    for i, x in enumerate(out[:-1]):
        if x in names:
            out[i + 1] = value
            return out
    return [*out, names[0], value]


def stage_args(r: Run, name: str) -> list[str]:
    """RECIPES[name]'s `satsr train` arguments with this run's overrides (hr-size, batch,
    device, amp, val-chips; select alex-l where VGG16's LPIPS is missing)."""
    a, q = r.a, r.a.quick
    args = [x.replace("{work}", str(a.work)) for x in _bm().RECIPES[name].train]
    hr = SIZES["corpus-rgb8" if name == "rgb-pre" else "rgb8"][int(q)]
    args = _set(args, ("--hr-size",), str(hr))
    args = _set(args, ("-b", "--batch-size"), str(2 if q else a.batch))
    args = _set(args, ("--val-chips",), str(2 if q else a.val_chips))
    if _option(args, "--select") == "pe-l" and r.summary.get("select") == "alex-l":
        args = _set(args, ("--select",), "alex-l")
    args += ["--device", a.device, "--amp" if a.device.startswith("cuda") else "--no-amp"]
    if q:  # a tiny generator, so that CI's CPU trains it in seconds
        args += ["--n-blocks", "2", "--features", "16", "--workers", "0"]
    return args


def _option(args: list[str], name: str) -> str | None:
    return next((args[i + 1] for i, x in enumerate(args[:-1]) if x == name), None)


def _log_rate(run_dir: Path) -> tuple[int, float]:
    """(last iteration, iterations per training second) from RUN/log.csv, whose rows carry the
    time of the write that flushed them (every --log-every iterations): between the first
    write's last row and the last one's."""
    flushes: dict[float, int] = {}
    for line in (run_dir / "log.csv").read_text().splitlines()[1:]:
        it, secs = line.split(",")[:2]
        flushes[float(secs)] = max(int(it), flushes.get(float(secs), 0))
    (t0, i0), (t1, i1) = min(flushes.items()), max(flushes.items())
    if t1 > t0:
        return i1, (i1 - i0) / (t1 - t0)
    return i1, i1 / max(t1, 1e-6)


def train_stage(r: Run, name: str, data: Path, seconds: float, reserve: float) -> bool:
    """A pilot run measures it/s; --resume trains to the count that fills `seconds` of
    training. False when it failed (reported)."""
    t = time.time()
    run_dir = r.a.work / name
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    args = stage_args(r, name)
    pilot = 2 if r.a.quick else r.a.pilot

    def cmd(n: int, every: int) -> list[str]:
        return _set(_set(args, ("-n", "--iterations"), str(n)), ("--val-every",), str(every))

    base = [*SATSR, "train", str(data), "-o", str(run_dir)]
    rc, tail = r.child([*base, *cmd(pilot, pilot), "--overwrite"], r.left() - reserve)
    if rc:
        r.report(name, {"seconds": round(time.time() - t, 1), "rc": rc, "phase": "pilot",
                        "tail": _tail(tail)})
        return False
    _, rate = _log_rate(run_dir)
    wall_left = r.left() - reserve - 20  # the resumed process's start and last validation
    budget = max(0.0, min(seconds, wall_left))
    total = max(pilot + 1, int(rate * budget))
    if r.a.quick:
        total = min(total, pilot + 2)
    rounds = 1 if r.a.quick else 2 if name == "rgb-pre" else 5
    every = max(1, total // rounds)
    args = cmd(total, every)
    rc, tail = r.child([*base, *args, "--resume"], r.left() - reserve + 10)
    res: dict[str, Any] = {"seconds": round(time.time() - t, 1), "rc": rc,
                           "pilot_iterations": pilot, "pilot_it_per_s": round(rate, 2),
                           "budget_s": round(budget, 1), "iterations_planned": total,
                           "val_every": every, "args": args}
    if (run_dir / "log.csv").is_file():
        last, _ = _log_rate(run_dir)
        secs = float((run_dir / "log.csv").read_text().splitlines()[-1].split(",")[1])
        res.update(iterations=last, train_seconds=round(secs, 1),
                   samples_per_s=round(last * int(_option(args, "-b") or 10) / secs, 2))
    if (run_dir / "val.csv").is_file():
        shutil.copy2(run_dir / "val.csv", r.out / f"val-{name}.csv")
        res["val"] = (run_dir / "val.csv").read_text().strip().splitlines()
        res["val_bicubic"] = json.loads((run_dir / "val_bicubic.json").read_text())
    if rc:
        res["tail"] = _tail(tail)
    r.report(name, res)
    return rc == 0 and (run_dir / "model.safetensors").is_file()


#: what OUT/rgb-ft-run.tar keeps of stage 2's run folder: enough for `finalize` elsewhere
RUN_FILES = ("model.safetensors", "val.csv", "val_bicubic.json", "config.yaml", "log.csv")


def finish(r: Run) -> None:
    """OUT/satsr-rgb-x4.safetensors and OUT/card.md: through bundled_models.finalize (the
    adaptive strength) when it exists and VGG16's LPIPS is here (its variant choice scores
    vgg-l), else the selected round as it is. Also OUT/rgb-ft-run.tar, so that finalize can
    run on the CPU machine later (`tar xf rgb-ft-run.tar -C WORK`, then `python
    examples/gpu_run.py finalize WORK/rgb-ft gpu-carry/data/rgb8 FINAL`)."""
    import tarfile

    t = time.time()
    run_dir = r.a.work / "rgb-ft"
    with tarfile.open(r.out / "rgb-ft-run.tar", "w") as tar:
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                tar.add(run_dir / name, arcname=f"rgb-ft/{name}")
    why = ""
    if not hasattr(_bm(), "finalize"):
        why = "examples/bundled_models.py has no finalize"
    elif r.summary.get("select") != "pe-l":
        why = "finalize scores vgg-l, and VGG16's LPIPS weights did not travel"
    if not why:
        final = r.a.work / "final"  # its variant files stay outside OUT (8 files come back)
        cmd = [sys.executable, str(Path(__file__).resolve()), "finalize", str(run_dir),
               str(r.a.carry / "data" / "rgb8"), str(final)]
        rc, tail = r.child(cmd + (["--quick"] if r.a.quick else []), r.left() - r.a.measure_s)
        if rc == 0:
            shutil.copy2(final / "model.safetensors", r.out / "satsr-rgb-x4.safetensors")
            shutil.copy2(final / "card.md", r.out / "card.md")
            r.report("finalize", {"seconds": round(time.time() - t, 1), "rc": 0,
                                  "by": "examples/bundled_models.py finalize",
                                  "model": "satsr-rgb-x4.safetensors", "card": "card.md",
                                  "run": "rgb-ft-run.tar"})
            return
        why = f"finalize failed (rc {rc}): {_tail(tail, 3)}"
    path, card = plain_model(r, run_dir, why)
    r.report("model", {"seconds": round(time.time() - t, 1), "model": path.name,
                       "card": card.name, "run": "rgb-ft-run.tar",
                       "by": f"examples/gpu_run.py, no finishing step: {why}"})


def plain_model(r: Run, run_dir: Path, why: str) -> tuple[Path, Path]:
    """OUT/satsr-rgb-x4.safetensors (the selected round, fp16) and OUT/card.md."""
    from satsr.inference.modelfile import load_model, save_model

    gen, meta = load_model(run_dir / "model.safetensors")
    steps = r.summary["steps"]
    meta["name"] = "satsr-rgb-x4"
    meta["training"] = {"by": "examples/gpu_run.py run", "hardware": steps["install"].get("gpu")
                        or "CPU", "stages": {s: {k: steps[s].get(k) for k in (
                            "iterations", "train_seconds", "samples_per_s", "args")}
                            for s in STAGES if s in steps}}
    path = save_model(r.out / "satsr-rgb-x4.safetensors", gen, meta, half=True)
    lines = ["# satsr-rgb-x4 (GPU run, not finished)", "",
             "The 8-bit RGB model's two-stage recipe (examples/bundled_models.py RECIPES "
             "`rgb-pre`, then `rgb-ft` from it), trained by `examples/gpu_run.py run`"
             f"{' --quick (numbers mean nothing)' if r.a.quick else ''} on "
             f"{meta['training']['hardware']}. No adaptive strength ({why}): this is the "
             "selected round as it left the trainer (strength 1); rgb-ft-run.tar beside it "
             "lets `bundled_models.finalize` run elsewhere.", ""]
    for s in STAGES:
        st = steps.get(s, {})
        lines += [f"## {s}", "",
                  f"- {st.get('iterations')} iterations in {st.get('train_seconds')} s of "
                  f"training ({st.get('samples_per_s')} samples/s; pilot "
                  f"{st.get('pilot_it_per_s')} it/s)",
                  f"- `satsr train DATA {' '.join(st.get('args', []))}`", ""]
        val = st.get("val") or []
        if val:
            head = val[0].split(",")
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *("| " + " | ".join(f"{float(x):.4g}" for x in row.split(",")) + " |"
                        for row in val[1:])]
            bic = st.get("val_bicubic") or {}
            lines += ["| bicubic | " + " | ".join(
                f"{bic[k]:.4g}" if k in bic else "" for k in head[1:]) + " |", ""]
    sel = meta.get("selection", {})
    lines += [f"Kept: round {sel.get('iteration')} by val {sel.get('criterion')} "
              f"(PSNR floor {sel.get('psnr_floor')} dB below bicubic).", ""]
    card = r.out / "card.md"
    card.write_text("\n".join(lines) + "\n")
    return path, card


def step_finalize(a: argparse.Namespace) -> None:
    """bundled_models.finalize(RUN_DIR, DATA_DIR, OUT_DIR): DATA_DIR is the rgb8 dataset (its
    train split fits the aliasing probe, its val split chooses the variant)."""
    print(_bm().finalize(a.run_dir, a.data_dir, a.out_dir, quick=a.quick), flush=True)


# ------------------------------------------------------------------- measurements (issue 21)

def measurements(device: str, quick: bool, bench: Path) -> list[tuple[str, float, Callable]]:
    """(name, seconds to allow, call) of issue 21's GPU measurements, the only place that names
    them: benchmarks/upscale_pipeline.py's validation_seconds, train_vs_minimal, model_path and
    sentinel_tile where the branch has it, else benchmarks/train_step.py's step_round and
    minimal_round (satsr's adv+rec step vs the minimal loop). Quick: tiny sizes."""
    sys.path.insert(0, str(bench))
    cuda = device.startswith("cuda")
    prec = "bf16" if cuda else "fp32"
    try:
        import upscale_pipeline as up
    except ImportError:
        return [("train_vs_minimal", 60, lambda: step_vs_minimal(device, quick))]
    if quick:
        return [
            ("validation", 60, lambda: up.validation_seconds(device, chips=2, quick=True,
                                                             hr_size=32)),
            ("train_vs_minimal", 60, lambda: up.train_vs_minimal(
                device, True, hr_size=32, batch_size=2, iterations=2, rounds=1)),
            ("model_path", 60, lambda: up.model_path(size=64, quick=True, device=device,
                                                     precision=prec, bare_precision=prec)),
            ("sentinel_tile", 60, lambda: up.sentinel_tile(device, True, size=64,
                                                           precision=prec))]
    # the targets in order of cost; the 10980^2 tile needs its own ~3 minutes
    return [("train_vs_minimal", 35, lambda: up.train_vs_minimal(device, iterations=40,
                                                                 rounds=2)),
            ("validation", 25, lambda: up.validation_seconds(device)),
            ("model_path", 25, lambda: up.model_path(device=device, precision=prec,
                                                     bare_precision=prec)),
            ("sentinel_tile", 170, lambda: up.sentinel_tile(device, precision=prec))]


def step_vs_minimal(device: str, quick: bool) -> dict[str, float]:
    """s/it of GCNModel.step (adv+rec, realistic and bicubic degradation) vs the minimal loop,
    on random HR crops (benchmarks/train_step.py); HR 256 batch 10 on CUDA."""
    import torch
    from train_step import minimal_round, step_round

    from satsr.nn.device import resolve_device
    from satsr.training.config import TrainConfig

    dev = resolve_device(device)
    hr, b, n, warm = (32, 2, 2, 1) if quick else (256, 10, 40, 3)
    small = {"n_blocks": 2, "features": 16} if quick else {}
    crops = torch.rand(4 * b, 3, hr, hr, generator=torch.Generator().manual_seed(0)) * 2 - 1
    s = {deg: step_round(crops, TrainConfig(data="", out="", variant="adv+rec", hr_size=hr,
                                            batch_size=b, device=device, degradation=deg,
                                            **small), dev, warm, n)
         for deg in ("realistic", "bicubic")}
    m = minimal_round(crops, TrainConfig(data="", out="", variant="adv+rec", hr_size=hr,
                                         batch_size=b, device=device, **small), dev, warm, n)
    return {"hr_size": float(hr), "realistic_s_it": s["realistic"], "bicubic_s_it":
            s["bicubic"], "minimal_s_it": m, "ratio_realistic": s["realistic"] / m,
            "ratio_bicubic": s["bicubic"] / m}


def step_measure(a: argparse.Namespace) -> None:
    """Each measurement as one JSON line on stdout; one that would pass the deadline is
    skipped, saying so."""
    for name, allow, call in measurements(a.device, a.quick, a.benchmarks):
        left = a.deadline - time.time()
        if left < allow:
            print(json.dumps({"measure": name, "skipped": f"{left:.0f} s left, "
                              f"{allow:.0f} s needed"}), flush=True)
            continue
        t = time.time()
        try:
            res: dict[str, Any] = {"result": call()}
            res.update(_against_targets(a.benchmarks, name, res["result"]))
        except Exception as exc:  # one failed measurement must not lose the others
            res = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(json.dumps({"measure": name, "seconds": round(time.time() - t, 1), **res}),
              flush=True)


def _against_targets(bench: Path, name: str, result: Any) -> dict[str, Any]:
    """{"report": upscale_pipeline's lines for it, "targets": each value against the issue's
    target} where the checkout's benchmark has them, else {}."""
    sys.path.insert(0, str(bench))
    try:
        import upscale_pipeline as up
    except ImportError:
        return {}
    if not hasattr(up, "targets"):
        return {}
    return {"report": up.report({name: result}), "targets": up.targets({name: result})}


def measure(r: Run) -> None:
    t = time.time()
    cmd = [sys.executable, str(Path(__file__).resolve()), "measure", "--device", r.a.device,
           "--deadline", str(r.deadline - 5)] + (["--quick"] if r.a.quick else [])
    rc, text = r.child(cmd, r.left())
    found: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith('{"measure"'):
            rec = json.loads(line)
            found[rec.pop("measure")] = rec
    r.report("measure", {"seconds": round(time.time() - t, 1), "rc": rc, "results": found,
                         **({"tail": _tail(text)} if rc else {})})
    for name, rec in found.items():  # each measurement against its target, readable
        for line in rec.get("report", []):
            print(f"{name}: {line}", flush=True)
        for tg in rec.get("targets", []):
            print(f"TARGET {tg['name']}: {tg['value']:.3g} (target {tg['target']}): "
                  f"{'met' if tg['met'] else 'MISSED'}", flush=True)
        if "skipped" in rec or "error" in rec:
            print(f"{name}: {rec.get('skipped') or rec.get('error')}", flush=True)


def step_run(a: argparse.Namespace) -> None:
    r = Run(a)
    steps = set(a.steps.split(","))
    install(r)
    if "tests" in steps:
        cuda_tests(r)
    if "train" in steps:
        train(r)
    if "measure" in steps:
        measure(r)
    files = sorted(str(p.relative_to(a.out)) for p in a.out.rglob("*") if p.is_file())
    r.summary["files"] = files
    r.report("done", {"seconds": round(time.time() - r.t0, 1), "files": len(files)})
    if len(files) > 8:
        print(f"warning: {len(files)} files under OUT; the device tool returns 8", flush=True)
    failed = [k for k, v in r.summary["steps"].items() if v.get("rc") or "skipped" in v]
    if failed:
        raise SystemExit(f"failed or skipped: {', '.join(failed)} (see {a.out}/gpu_run.json)")


def train(r: Run) -> None:
    """Both stages, then the finishing step."""
    a = r.a
    # the seconds each later step keeps for itself: stage 2, finishing, measurements
    finishing = 30 if a.quick else 40
    ok = train_stage(r, "rgb-pre", a.carry / "data" / "corpus-rgb8", a.pre_seconds,
                     reserve=a.ft_seconds + 45 + finishing + a.measure_s)
    if ok:
        ok = train_stage(r, "rgb-ft", a.carry / "data" / "rgb8", a.ft_seconds,
                         reserve=finishing + a.measure_s)
    else:
        r.report("rgb-ft", {"skipped": "stage 1 failed"})
    if ok:
        finish(r)
    else:
        r.report("model", {"skipped": "training failed"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    d = sub.add_parser("data", help="Cut the carry folder (CPU machine).")
    d.add_argument("--carry", type=Path, default=CARRY)
    d.add_argument("--shared", type=Path, default=Path(os.environ.get(
        "SATSR_SHARED_DATA", ROOT.parent / "shared" / "data")))
    d.add_argument("--corpus", type=Path, default=Path("/work/corpus"),
                   help="examples/corpus.py's output folder (holds rgb8/*.tif).")
    d.add_argument("--split-file", type=Path, default=EXAMPLES / "splits" / "shared.json")
    d.add_argument("--budget-mib", type=float, default=BUDGET_MIB)
    d.add_argument("--keep-wheels", action="store_true",
                   help="Reuse wheels already in CARRY/wheels.")
    d.add_argument("--quick", action="store_true", help="Tiny chips and counts, no wheels.")
    r = sub.add_parser("run", help="The GPU session.")
    r.add_argument("--carry", type=Path, default=CARRY)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "satsr-gpu-run",
                   help="Run folders (checkpoints stay here, outside OUT).")
    r.add_argument("--site", type=Path, default=Path(tempfile.gettempdir()) / "satsr-gpu-site")
    r.add_argument("--device", default="cuda")
    r.add_argument("--batch", type=int, default=10)
    r.add_argument("--val-chips", type=int, default=32)
    r.add_argument("--pilot", type=int, default=100, help="Iterations of each pilot run.")
    r.add_argument("--pre-seconds", type=float, default=60, help="Stage 1 training seconds.")
    r.add_argument("--ft-seconds", type=float, default=170, help="Stage 2 training seconds.")
    r.add_argument("--measure-s", type=float, default=75,
                   help="Seconds kept for the measurements after training (those that do "
                   "not fit are skipped, saying so; without train they get all the time).")
    r.add_argument("--deadline-s", type=float, default=470,
                   help="Seconds from the start by which everything ends.")
    r.add_argument("--steps", default="tests,train,measure",
                   help="Which of tests, train (with the finishing step), measure to run "
                   "(the wheels are always installed): e.g. `measure` alone in a second "
                   "command with --measure-s 400 --deadline-s 420.")
    r.add_argument("--quick", action="store_true", help="Tiny sizes (check it on a CPU).")
    f = sub.add_parser("finalize", help="(internal) bundled_models.finalize in a child.")
    f.add_argument("run_dir", type=Path)
    f.add_argument("data_dir", type=Path)
    f.add_argument("out_dir", type=Path)
    f.add_argument("--quick", action="store_true")
    m = sub.add_parser("measure", help="(internal) the measurements, one JSON line each.")
    m.add_argument("--device", default="cuda")
    m.add_argument("--deadline", type=float, default=float("inf"))
    m.add_argument("--benchmarks", type=Path, default=ROOT / "benchmarks")
    m.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    {"data": step_data, "run": step_run, "finalize": step_finalize,
     "measure": step_measure}[a.step](a)


if __name__ == "__main__":
    main()
