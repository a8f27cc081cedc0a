"""Issue 19: the eight ways a user could lose data, each tried as a hostile user would, in one
place. Every case must end in one `satsr: error:` line and a non-zero exit (or the right
result), and leave every file that was there byte-identical.

The output policy behind them is satsr.data.raster.check_output (one function for every verb)
and atomic_path / atomic_dir (every write checked, published by a rename only when complete).
A full disk is simulated without root with RLIMIT_FSIZE (`ulimit -f`): every write past the
limit fails with EFBIG, as it would fail with ENOSPC, and GDAL reports it as a logged error.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import real_crop, refused, run_cli, write_dataset

ROOT = Path(__file__).resolve().parents[1]
SRC = "netherlands_aerial_0.25m.tif"


def digest(folder_or_file: Path) -> dict[str, str]:
    """Every file under a path -> its sha256 (a folder's tree, or one file)."""
    p = Path(folder_or_file)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    return {str(q.relative_to(p.parent)): hashlib.sha256(q.read_bytes()).hexdigest()
            for q in files}


@pytest.fixture()
def src(shared, tmp_path) -> Path:
    """A 128 px crop of real imagery (fast to cut and to upscale)."""
    return real_crop(shared / SRC, tmp_path / "mysrc.tif", 128)


def make_ds(src: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    code, _, err = run_cli(["make-dataset", str(src), "-o", str(out), "--size", "32", "-n", "6",
                            "--split", "0.5,0.25,0.25", *extra], capsys)
    return code, err


# ------------------------------------------------------------------ 1, 2: --write-split


def test_1_write_split_onto_the_source_is_refused_before_any_work(src, tmp_path, capsys):
    before = digest(src)
    code, err = make_ds(src, tmp_path / "ws", capsys, "--write-split", str(src), "--overwrite")
    refused(code, err, "--write-split", "input")
    assert digest(src) == before and not (tmp_path / "ws").exists()


def test_2_write_split_onto_an_existing_file_needs_overwrite(src, tmp_path, capsys):
    precious = tmp_path / "precious.json"
    precious.write_text('{"mine": true}\n')
    code, err = make_ds(src, tmp_path / "ws", capsys, "--write-split", str(precious))
    refused(code, err, "--overwrite")
    assert precious.read_text() == '{"mine": true}\n' and not (tmp_path / "ws").exists()
    # inside -o (which the run replaces), a folder, a missing folder: before any work too
    for bad in (tmp_path / "ws" / "s.json", tmp_path, tmp_path / "nope" / "s.json"):
        code, err = make_ds(src, tmp_path / "ws", capsys, "--write-split", str(bad))
        refused(code, err)
        assert not (tmp_path / "ws").exists()
    code, err = make_ds(src, tmp_path / "ws", capsys, "--write-split", str(precious),
                        "--overwrite")  # the right result when asked for
    assert code == 0, err and json.loads(precious.read_text())["blocks"]


# ------------------------------------------------------------------ 3: devices, pipes


def test_3_a_device_or_pipe_is_never_replaced(src, tmp_path, capsys):
    fifo = tmp_path / "node"
    os.mkfifo(fifo)
    code, _, err = run_cli(["upscale", str(src), "-o", str(fifo), "--method", "bicubic",
                            "--overwrite"], capsys)
    refused(code, err, "not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    code, _, err = run_cli(["eval", "--pred", str(src), "--ref", str(src), "--metric", "l2",
                            "--json", str(fifo), "--overwrite"], capsys)
    refused(code, err, "--json", "not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    if Path("/dev/null").exists():  # as root, os.replace would turn it into a file
        code, _, err = run_cli(["upscale", str(src), "-o", "/dev/null", "--method", "bicubic",
                                "--overwrite"], capsys)
        refused(code, err, "not a regular file")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# ------------------------------------------------------------------ 4: a full disk


def _limited(limit: int, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m satsr ARGS` with files capped at `limit` bytes: writes past it fail."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                              "")}
    return subprocess.run([sys.executable, "-m", "satsr", *args], cwd=cwd, env=env,
                           preexec_fn=cap, capture_output=True, text=True, timeout=300)


def test_4_a_full_disk_raises_keeps_the_old_file_and_publishes_nothing(src, tmp_path, capsys):
    good = tmp_path / "up.tif"
    code, _, err = run_cli(["upscale", str(src), "-o", str(good), "--method", "bicubic"],
                           capsys)
    assert code == 0, err
    before = digest(good)
    for extra in ([], ["--cog"]):
        r = _limited(20_000, "upscale", str(src), "-o", str(good), "--method", "bicubic",
                     "--overwrite", *extra, cwd=tmp_path)
        assert r.returncode != 0 and "wrote" not in r.stdout, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "satsr: error: cannot write" in r.stderr
        assert digest(good) == before  # the previous good file is intact
        assert not [p for p in tmp_path.iterdir() if ".part" in p.name]
    # a dataset, a JSON report: one line, nothing half-made
    ws = tmp_path / "ws"
    code, err = make_ds(src, ws, capsys)
    assert code == 0, err
    ds_before = digest(ws)
    r = _limited(2_000, "make-dataset", str(src), "-o", str(ws), "--size", "32", "-n", "6",
                 "--split", "0.5,0.25,0.25", "--overwrite", "--seed", "3", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "satsr: error:" in r.stderr and digest(ws) == ds_before
    report = tmp_path / "r.json"
    report.write_text("{}\n")
    r = _limited(50, "eval", "--pred", str(src), "--ref", str(src), "--metric", "l2",
                 "--json", str(report), "--overwrite", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "satsr: error: cannot write" in r.stderr and report.read_text() == "{}\n"
    # a training checkpoint: one line, no traceback
    r = _limited(30_000, "train", str(ws), "-o", str(tmp_path / "run"), "--iterations", "1",
                 "--hr-size", "16", "-b", "1", "--n-blocks", "1", "--features", "8",
                 "--val-every", "0", "--variant", "mse", "--device", "cpu", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "satsr: error: cannot write" in r.stderr and "checkpoint" in r.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# ------------------------------------------------------------------ 5, 6, 8: folders


def test_5_make_dataset_never_deletes_its_own_sources_or_a_foreign_folder(src, tmp_path,
                                                                           capsys):
    mk = tmp_path / "mk"
    mk.mkdir()
    shutil.copy(src, mk / "src.tif")
    (mk / "notes.txt").write_text("my notes\n")
    before = digest(mk)
    code, err = make_ds(mk / "src.tif", mk, capsys, "--overwrite")
    refused(code, err, "input")
    assert digest(mk) == before


def test_6_band_samples_never_replaces_its_input_nor_reads_one_twice(src, tmp_path, capsys):
    ds_b = write_dataset(tmp_path / "dsB", src, 32, {"train": 2, "val": 1, "test": 1})
    before = digest(ds_b)
    code, _, err = run_cli(["band-samples", str(ds_b), "-o", str(ds_b), "--overwrite"], capsys)
    refused(code, err, "input")
    assert digest(ds_b) == before
    code, _, err = run_cli(["band-samples", str(ds_b), str(ds_b), "-o",
                            str(tmp_path / "bs")], capsys)
    refused(code, err, "DATA", "twice")
    assert not (tmp_path / "bs").exists()


def test_8_overwrite_deletes_only_folders_satsr_wrote(src, tmp_path, capsys):
    somedir = tmp_path / "somedir"
    somedir.mkdir()
    (somedir / "thesis.tex").write_text("years of work\n")
    before = digest(somedir)
    code, err = make_ds(src, somedir, capsys, "--overwrite")
    refused(code, err, "not written by satsr")
    assert digest(somedir) == before
    ds_b = write_dataset(tmp_path / "dsB", src, 32, {"train": 2, "val": 1, "test": 1})
    code, _, err = run_cli(["band-samples", str(ds_b), "-o", str(somedir), "--overwrite"],
                           capsys)
    refused(code, err, "not written by satsr")
    assert digest(somedir) == before
    # satsr's own output folders carry its marker and are replaced with --overwrite
    ws = tmp_path / "ws"
    assert make_ds(src, ws, capsys)[0] == 0 and (ws / ".satsr-output").is_file()
    code, err = make_ds(src, ws, capsys, "--overwrite", "--seed", "2")
    assert code == 0, err
    bs = tmp_path / "bs"
    for _ in range(2):
        code, _, err = run_cli(["band-samples", str(ds_b), "-o", str(bs), "--overwrite"],
                               capsys)
        assert code == 0, err


# ------------------------------------------------------------------ 7: eval reports


def test_7_eval_reports_never_replace_an_input_nor_each_other(src, tmp_path, capsys):
    ref = tmp_path / "r.tif"
    shutil.copy(src, ref)
    before = {**digest(src), **digest(ref)}
    base = ["eval", "--pred", str(src), "--ref", str(ref), "--metric", "l2"]
    for flag, target in (("--json", ref), ("--csv", src), ("--figure", ref)):
        code, _, err = run_cli([*base, flag, str(target), "--overwrite"], capsys)
        refused(code, err, flag, "input")
        assert {**digest(src), **digest(ref)} == before
    same = tmp_path / "r.json"
    for pair in (("--json", "--csv"), ("--json", "--figure")):
        code, _, err = run_cli([*base, pair[0], str(same), pair[1], str(same)], capsys)
        refused(code, err, *pair)
        assert not same.exists()
