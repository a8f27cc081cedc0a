"""`satsr upscale` sharded over torchrun ranks (issue 23), and --skip-existing.

The torchrun test runs the README's one-machine command ("Running at scale") on the CPU:
the command is read from the README, and only what a test must change is changed: `torchrun`
becomes `python -m torch.distributed.run` (this interpreter), 2 processes, the test's folders,
and `--method bicubic --device cpu` appended (seconds, no GPU). Every torchrun command of that
section is also parsed by torchrun's own parser and by satsr's.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

import satsr
from satsr.inference.batch import balance, is_complete

ROOT = Path(__file__).resolve().parents[1]
#: Input sizes (width, height): unequal, so that balancing by pixels shows.
SIZES = [(96, 80), (64, 64), (48, 40), (40, 32), (24, 24)]


def _scene(path: Path, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (3, height, width), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3,
                       dtype="uint8", crs=CRS.from_epsg(32631),
                       transform=Affine(1.0, 0, 500000, 0, -1.0, 5700000)) as ds:
        ds.write(data)
    return path


@pytest.fixture
def scenes(tmp_path) -> Path:
    folder = tmp_path / "scenes"
    folder.mkdir()
    for k, (w, h) in enumerate(SIZES):
        _scene(folder / f"s{k}.tif", w, h, k)
    return folder


def readme_commands() -> list[str]:
    """The torchrun command lines of the README's "Running at scale" (continuations joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Running at scale", 1)[1].split("\n## ", 1)[0]
    lines = re.sub(r"\\\n\s*", " ", section).splitlines()
    return [ln.strip() for ln in lines if re.match(r"\s*(srun\s+)?torchrun\s", ln)]


def _python_env() -> dict[str, str]:
    """The environment of a child process that imports this checkout's satsr."""
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), path) if p),
                OMP_NUM_THREADS="1")


def _launch(readme_line: str, scenes: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """Run a README command with the test's substitutions (module docstring)."""
    words = shlex.split(readme_line)
    assert words[0] == "torchrun"
    words[words.index("--nproc-per-node") + 1] = "2"
    words[words.index("scenes/")] = str(scenes)
    words[words.index("out/")] = str(out)
    cmd = [sys.executable, "-m", "torch.distributed.run", *words[1:], "--method", "bicubic",
           "--device", "cpu"]
    return subprocess.run(cmd, env=_python_env(), capture_output=True, text=True, timeout=600,
                          cwd=out.parent)


def test_readme_scale_out_commands_parse_with_torchrun_and_satsr():
    from torch.distributed.run import get_args_parser
    from typer.main import get_command

    from satsr.cli.app import app

    lines = readme_commands()
    assert len(lines) >= 5  # one machine: upscale and train; two machines x2; Slurm
    cli = get_command(app)
    for line in lines:
        words = shlex.split(line)
        words = words[words.index("torchrun") + 1:]
        args = get_args_parser().parse_args(words)  # torchrun's own parser
        assert args.module and args.training_script == "satsr", line
        verb, *rest = args.training_script_args
        cli.commands[verb].make_context(verb, list(rest))  # satsr's options exist
        if verb == "upscale":
            assert "--skip-existing" in rest
    multi = [ln for ln in lines if "--nnodes" in ln]
    assert any("--rdzv-backend c10d" in ln and "--rdzv-endpoint" in ln for ln in multi)
    assert any("--node-rank" in ln for ln in multi)
    assert any(ln.startswith("srun torchrun") for ln in multi)


def test_torchrun_two_cpu_ranks_shard_fail_alone_and_resume(scenes, tmp_path):
    line = next(ln for ln in readme_commands()
                if ln.startswith("torchrun --standalone") and " upscale " in ln)
    bad = scenes / "broken.tif"
    bad.write_text("not a raster")
    out = tmp_path / "out"
    out.mkdir()
    run = _launch(line, scenes, out)
    log = run.stdout + run.stderr
    assert run.returncode != 0, log

    # every good input written, byte-identical to a one-process run of the same inputs
    good = sorted(p for p in scenes.iterdir() if p.name != "broken.tif")
    ref = tmp_path / "ref"
    ref.mkdir()
    one = satsr.upscale_rasters(good, ref, method="bicubic", device="cpu")
    assert one.ok and len(one.written) == 5
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in good]
    for p in good:
        assert (out / p.name).read_bytes() == (ref / p.name).read_bytes(), p.name

    # each rank did work; the shares follow the pixel balance
    ranks = {int(m[1]): (int(m[2]), int(m[3]), int(m[4])) for m in re.finditer(
        r"satsr: rank (\d)/2 \(cpu\): (\d+) files?, (\d+) written, (\d+) failed", log)}
    assert set(ranks) == {0, 1}, log
    assert all(written >= 1 for _, written, _ in ranks.values()), ranks
    assert sum(files for files, _, _ in ranks.values()) == 6

    # the corrupt input failed alone, in one line, and rank 0's summary says so
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("satsr: error: ")]
    assert any(ln.startswith(f"satsr: error: {bad}: not a readable raster") for ln in errors)
    assert "satsr: error: 1 of 6 inputs failed (see above)" in errors
    assert re.search(r"satsr: 6 inputs on 2 processes: 5 written, 0 skipped "
                     r"\(already complete\), 1 failed; [\d.]+ MPix of output", run.stdout)
    assert re.search(rf"satsr: failed: {re.escape(str(bad))} \(rank \d\): not a readable",
                     run.stderr)

    # the input fixed (removed), a rerun with --skip-existing does nothing and says so
    bad.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _launch(line, scenes, out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "satsr: nothing to do: all 5 outputs are already complete" in again.stdout
    assert again.stdout.count("already complete") == 6  # 5 skipped lines and the summary
    assert "wrote " not in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("form", [
    "--rdzv-backend c10d",
    pytest.param("--node-rank 0", marks=pytest.mark.slow),
])
def test_two_machines_command_on_one_machine(scenes, tmp_path, form):
    """The README's several-machines command, each "machine" a torchrun of one CPU rank
    (HEAD: 127.0.0.1 and a free port; --node-rank 0 and 1 in the static form)."""
    line = next(ln for ln in readme_commands() if ln.startswith("torchrun --nnodes 2")
                and form in ln)
    out = tmp_path / "out"
    out.mkdir()
    port = str(_free_port())
    procs = []
    for node in (0, 1):
        words = shlex.split(line)
        words[words.index("--nproc-per-node") + 1] = "1"
        words[words.index("/shared/scenes/")] = str(scenes)
        words[words.index("/shared/out/")] = str(out)
        if "--rdzv-endpoint" in words:
            words[words.index("--rdzv-endpoint") + 1] = f"127.0.0.1:{port}"
        else:
            words[words.index("--node-rank") + 1] = str(node)
            words[words.index("--master-addr") + 1] = "127.0.0.1"
            words[words.index("--master-port") + 1] = port
        cmd = [sys.executable, "-m", "torch.distributed.run", *words[1:], "--method",
               "bicubic", "--device", "cpu"]
        procs.append(subprocess.Popen(cmd, env=_python_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=tmp_path))
    outputs = [p.communicate(timeout=600) for p in procs]
    log = "".join(o + e for o, e in outputs)
    assert [p.returncode for p in procs] == [0, 0], log
    assert sorted(p.name for p in out.iterdir()) == [f"s{k}.tif" for k in range(5)]
    assert len(re.findall(r"satsr: rank \d/2 \(cpu\): \d+ files?, [1-9]\d* written", log)) == 2
    assert "5 inputs on 2 processes: 5 written" in log


def test_balance_deals_largest_first_to_the_least_loaded_rank():
    weights = [w * h for w, h in SIZES] + [0]
    assert balance(weights, 2) == [[0, 5], [1, 2, 3, 4]]
    assert balance(weights, 2) == balance(list(weights), 2)  # deterministic
    assert balance([5, 5, 5, 5], 3) == [[0, 3], [1], [2]]  # ties: input order, lower rank
    assert balance([], 2) == [[], []]
    assert balance([1, 2], 4) == [[1], [0], [], []]


def test_skip_existing_one_process_skips_complete_outputs_only(scenes, tmp_path, capsys):
    from satsr.cli import main

    out = tmp_path / "out"
    out.mkdir()
    first = satsr.upscale_rasters(sorted(scenes.iterdir()), out, method="bicubic",
                                  device="cpu")
    assert [f.status for f in first.files] == ["written"] * 5 and first.world == 1
    assert first.output_pixels == sum(16 * w * h for w, h in SIZES)
    (out / "s1.tif").unlink()  # never written (an interrupted job)
    (out / "s2.tif").write_bytes((scenes / "s2.tif").read_bytes())  # not an output of s2
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(scenes), "-o", str(out), "--method", "bicubic", "--device",
              "cpu", "--skip-existing"])
    assert exc.value.code == 2
    cap = capsys.readouterr()
    assert cap.out.count("already complete") == 3 + 1  # s0, s3, s4 and the summary
    assert "wrote " in cap.out and "s1.tif" in cap.out
    assert "s2.tif: output exists" in cap.err and "1 of 5 inputs failed" in cap.err
    assert "5 inputs on 1 process: 1 written, 3 skipped" in cap.out
    # another method's output is not this run's: not complete
    assert is_complete(scenes / "s0.tif", out / "s0.tif", satsr.load_engine(
        method="bicubic", device="cpu"))
    assert not is_complete(scenes / "s0.tif", out / "s0.tif", satsr.load_engine(
        method="nearest", device="cpu"))
    assert not is_complete(scenes / "s0.tif", out / "s0.tif", satsr.load_engine(
        method="bicubic", scale=2, device="cpu"))
    assert not is_complete(scenes / "s0.tif", out / "missing.tif", None)


def test_skip_existing_one_input_to_a_file(scenes, tmp_path, capsys):
    from satsr.cli import main

    dst = tmp_path / "one_x4.tif"
    args = ["upscale", str(scenes / "s4.tif"), "-o", str(dst), "--method", "nearest",
            "--device", "cpu"]
    main(args)
    mtime = dst.stat().st_mtime_ns
    capsys.readouterr()
    main([*args, "--skip-existing"])
    cap = capsys.readouterr()
    assert f"skipped {dst}: already complete" in cap.out
    assert "nothing to do: all 1 outputs are already complete" in cap.out
    assert dst.stat().st_mtime_ns == mtime
    with pytest.raises(SystemExit) as exc:  # without the flag an existing output is refused
        main(args)
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err


def test_the_backend_is_nccl_on_cuda_and_gloo_on_the_cpu(monkeypatch):
    import torch.distributed as dist

    from satsr.nn import distributed

    seen: list[tuple[str, object]] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend, timeout=None: seen.append((backend, timeout)))
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    distributed.setup_distributed(True)  # satsr train on CUDA
    distributed.setup_distributed(False)  # satsr train on the CPU
    from satsr.inference.batch import WAIT

    distributed.setup_distributed(False, backend="gloo", timeout=WAIT)  # upscale
    assert seen == [("nccl", None), ("gloo", None), ("gloo", WAIT)]
