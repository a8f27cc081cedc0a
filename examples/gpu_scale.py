"""Prepared GPU check of issue 23: `satsr upscale` and `satsr train` under torchrun on CUDA.

    python examples/gpu_scale.py --out $OUT                        # GPU machine, ~3 min
    python examples/gpu_scale.py --out /tmp/gs --quick --device cpu  # check it on a CPU

Steps, each reported as one JSON line and together in OUT/gpu_scale.json:
1. `one_process`: `satsr upscale` of 4 RGB uint8 rasters (mosaics of tests/data's
   netherlands_aerial_0.25m.tif, 2048^2, 1536^2, 1024^2, 512^2) in one process with the model
   the choice table gives them (satsr-rgb-x4): end-to-end output MPix/s of one GPU, the number
   README "Running at scale" lacks.
2. `torchrun_upscale`: the same inputs under the README's one-machine command
   (`torchrun --standalone --nproc-per-node R ...`), R = the GPUs present, at least 2 (two
   ranks then share the one GPU; upscale's ranks talk over gloo, which allows it): exit code,
   the rank lines and the summary, and whether every output is byte-identical to step 1's.
3. `torchrun_train`: `satsr train` (tiny: 20 iterations, HR 64) under torchrun with 2 ranks
   on CUDA, i.e. NCCL. With one GPU both ranks land on cuda:0, which NCCL is expected to
   refuse: the exit code and the last lines are recorded either way, not hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "data" / "netherlands_aerial_0.25m.tif"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def _report(out: Path, key: str, value: object, log: dict) -> None:
    log[key] = value
    print(json.dumps({key: value}), flush=True)
    (out / "gpu_scale.json").write_text(json.dumps(log, indent=1) + "\n")


def _mosaic(path: Path, size: int) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import upscale as bench

    bench.SOURCE = SOURCE
    return bench.make_input(path, size)


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), path) if p))


def _tail(proc: subprocess.CompletedProcess[str], n: int = 12) -> list[str]:
    return (proc.stdout + proc.stderr).strip().splitlines()[-n:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (check it on a CPU)")
    a = ap.parse_args()
    import torch

    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    gpus = torch.cuda.device_count() if a.device != "cpu" else 0
    log: dict = {"device": a.device, "gpus": gpus, "quick": a.quick,
                 "gpu_name": torch.cuda.get_device_name(0) if gpus else None}
    sizes = [128, 96, 64, 32] if a.quick else [2048, 1536, 1024, 512]
    scenes = out / "scenes"
    scenes.mkdir(exist_ok=True)
    for k, s in enumerate(sizes):
        _mosaic(scenes / f"scene{k}_{s}.tif", s)
    dev = ["--device", a.device]

    one = out / "one"
    one.mkdir(exist_ok=True)
    t = time.time()
    p = subprocess.run([sys.executable, "-m", "satsr", "upscale", str(scenes), "-o", str(one),
                        "--overwrite", *dev], capture_output=True, text=True, env=_env())
    secs = time.time() - t
    mpix = sum((4 * s) ** 2 for s in sizes) / 1e6
    _report(out, "one_process", {"rc": p.returncode, "seconds_whole_process": round(secs, 1),
                                 "output_mpix": mpix, "tail": _tail(p, 8)}, log)

    many = out / "many"
    many.mkdir(exist_ok=True)
    ranks = max(2, gpus)
    t = time.time()
    p = subprocess.run([*TORCHRUN, "--nproc-per-node", str(ranks), "-m", "satsr", "upscale",
                        str(scenes), "-o", str(many), "--skip-existing", *dev],
                       capture_output=True, text=True, env=_env())
    same = {f.name: (many / f.name).is_file() and (many / f.name).read_bytes() == f.read_bytes()
            for f in sorted(one.iterdir())}
    _report(out, "torchrun_upscale", {
        "rc": p.returncode, "ranks": ranks, "seconds_whole_job": round(time.time() - t, 1),
        "byte_identical": same,
        "lines": [ln for ln in (p.stdout + p.stderr).splitlines()
                  if ln.startswith(("satsr: ", "wrote "))][-12:]}, log)

    ds = out / "ds"
    if not (ds / "index.geojson").exists():
        subprocess.run([sys.executable, "-m", "satsr", "make-dataset", str(SOURCE), "-o", str(ds),
                        "--size", "64", "-n", "24", "--split", "0.8,0.2,0"], check=True,
                       env=_env(), capture_output=True)
    t = time.time()
    p = subprocess.run([*TORCHRUN, "--nproc-per-node", "2", "-m", "satsr", "train", str(ds),
                        "-o", str(out / "run"), "--overwrite", "--hr-size", "64", "-b", "2",
                        "-n", "20", "--n-blocks", "2", "--val-every", "0", *dev],
                       capture_output=True, text=True, env=_env())
    _report(out, "torchrun_train", {"rc": p.returncode, "ranks": 2, "gpus": gpus,
                                    "backend": "nccl" if a.device != "cpu" else "gloo",
                                    "seconds": round(time.time() - t, 1),
                                    "tail": _tail(p)}, log)


if __name__ == "__main__":
    main()
