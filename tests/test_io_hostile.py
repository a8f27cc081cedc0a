"""Hostile input and hostile ends for every verb: damaged rasters, kill -TERM / -KILL in the
middle of a write, file names that are not UTF-8, and warnings that leak source lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import run_cli
from rasterio.windows import Window

import satsr.data.raster
from satsr.data.crops import read_crop
from satsr.data.make_dataset import make_dataset
from satsr.data.raster import parse_bands
from satsr.errors import SatsrError

ROOT = Path(__file__).resolve().parents[1]
SRC = "netherlands_aerial_0.25m.tif"


def _crop(src: Path, dst: Path, size: int = 128, **profile) -> Path:
    """A `size` px crop of `src` as a deflate GeoTIFF (extra creation options in `profile`)."""
    with rasterio.open(src) as ds:
        win = Window(0, 0, size, size)
        data = ds.read(window=win)
        prof = {"driver": "GTiff", "width": size, "height": size, "count": ds.count,
                "dtype": ds.dtypes[0], "crs": ds.crs, "transform": ds.window_transform(win),
                "compress": "deflate", **profile}
        ci = ds.colorinterp
    with rasterio.open(dst, "w", **prof) as out:
        out.write(data)
        out.colorinterp = ci
    return dst


@pytest.fixture(scope="module")
def tiled(shared, tmp_path_factory) -> Path:
    """128 px of real imagery in 32 px tiles (a COG-like layout: header first, then tiles)."""
    return _crop(shared / SRC, tmp_path_factory.mktemp("tiled") / "whole.tif", tiled=True,
                 blockxsize=32, blockysize=32)


@pytest.fixture(scope="module")
def truncated(tiled, tmp_path_factory) -> Path:
    """`tiled` cut to 60 % of its bytes: the header opens, the last tiles are gone."""
    data = tiled.read_bytes()
    path = tmp_path_factory.mktemp("cut") / "cut.tif"
    path.write_bytes(data[:int(len(data) * 0.6)])
    with rasterio.open(path) as ds:  # the defect's precondition: it opens
        assert ds.width == 128
    return path


def _one_line_error(code: int, err: str, *needles: str) -> str:
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("satsr: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name or ".old" in p.name)


# ------------------------------------------------------------------ damaged / truncated data

DAMAGED = ("cut.tif", "at window (", "damaged or truncated")


def test_upscale_of_a_truncated_raster_is_one_line(truncated, tmp_path, capsys):
    code, _, err = run_cli(["upscale", str(truncated), "-o", str(tmp_path / "o.tif"),
                            "--method", "bicubic"], capsys)
    _one_line_error(code, err, *DAMAGED)
    assert list(tmp_path.iterdir()) == []


def test_make_dataset_of_a_truncated_raster_is_one_line(truncated, tmp_path, capsys):
    code, _, err = run_cli(["make-dataset", str(truncated), "-o", str(tmp_path / "ds"),
                            "--size", "32", "-n", "10"], capsys)
    _one_line_error(code, err, *DAMAGED)
    assert list(tmp_path.iterdir()) == []


def test_make_dataset_mask_scan_of_a_truncated_raster_is_one_error(truncated, tmp_path):
    # --nodata makes the validity scan (satsr.data.sampling.Scanner) read the pixels
    with pytest.raises(SatsrError, match=r"cut\.tif at window \(\d+, \d+, \d+, \d+\)"):
        make_dataset([truncated], tmp_path / "ds", size=32, count=10, nodata=0)


@pytest.mark.parametrize("broken", ["pred", "ref"])
def test_eval_of_a_truncated_raster_is_one_line(tiled, truncated, tmp_path, capsys, broken):
    pred, ref = (truncated, tiled) if broken == "pred" else (tiled, truncated)
    code, _, err = run_cli(["eval", "--pred", str(pred), "--ref", str(ref), "--metric", "psnr",
                            "--no-progress"], capsys)
    _one_line_error(code, err, *DAMAGED)


def test_eval_of_truncated_rasters_as_data_is_one_line(truncated, capsys):
    code, _, err = run_cli(["eval", str(truncated), "--metric", "psnr", "--no-progress"],
                           capsys)
    _one_line_error(code, err, *DAMAGED)


def test_read_window_and_training_crops_name_file_and_window(truncated):
    with rasterio.open(truncated) as ds:
        with pytest.raises(SatsrError) as exc:
            satsr.data.raster.read_window(ds, [1, 2, 3], Window(96, 96, 32, 32), truncated)
    msg = str(exc.value)
    assert "\n" not in msg and str(truncated) in msg and "window (96, 96, 32, 32)" in msg
    with pytest.raises(SatsrError, match=r"cut\.tif at window \(64, 64, 64, 64\)"):
        read_crop(truncated, 64, 64, 64, 3)


# ------------------------------------------------------------- SIGTERM, SIGKILL, stale parts

def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "satsr", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="backslashreplace")


def _wait_for_part(proc: subprocess.Popen, folder: Path, busy: float = 0.3,
                   timeout: float = 60.0) -> Path:
    """The staging part in `folder`, once it exists and has been written to for `busy` s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        parts = [p for p in folder.iterdir() if p.name.endswith(".part")]
        if parts:
            time.sleep(busy)
            return parts[0]
        if proc.poll() is not None:
            pytest.fail(f"the run ended before writing: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no staging part appeared")


VERBS = {
    # a slow write: 20000 chips, and a 4000 x 4000 bicubic upscale
    "make-dataset": ["make-dataset", "src.tif", "-o", "ds", "--size", "16", "-n", "20000"],
    "upscale": ["upscale", "src.tif", "-o", "big.tif", "--method", "bicubic"],
}


@pytest.mark.parametrize("verb", list(VERBS))
def test_sigterm_deletes_the_staging_part_and_exits_143(shared, tmp_path, verb):
    os.symlink(shared / SRC, tmp_path / "src.tif")
    proc = _start(VERBS[verb], tmp_path)
    _wait_for_part(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "satsr: terminated" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.tif"]


@pytest.mark.parametrize("verb", list(VERBS))
def test_parts_of_a_killed_run_are_removed_by_the_next_write(shared, tmp_path, capsys, verb):
    os.symlink(shared / SRC, tmp_path / "src.tif")
    proc = _start(VERBS[verb], tmp_path)
    part = _wait_for_part(proc, tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    assert part.exists()  # kill -9 leaves it: nothing can run in the killed process
    small = ["make-dataset", str(tmp_path / "src.tif"), "-o", str(tmp_path / "ds"), "--size",
             "16", "-n", "10"] if verb == "make-dataset" else \
        ["upscale", str(tmp_path / "src.tif"), "-o", str(tmp_path / "big.tif"), "--method",
         "nearest", "--scale", "2"]
    code, _, err = run_cli(small, capsys)
    assert code == 0, err
    assert not part.exists() and _leftovers(tmp_path) == []
    warned = [ln for ln in err.splitlines() if "partial output" in ln]
    assert len(warned) == 1 and warned[0].startswith("satsr: warning: removed 1 "), err


def test_parts_of_live_or_foreign_runs_are_kept(tmp_path):
    from satsr.data.raster import _HOST
    target = tmp_path / "o.tif"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".o.tif.{_HOST}-{dead.pid}-abc.part"
    stale_side = tmp_path / f".o.tif.{_HOST}-{dead.pid}-abc.part.aux.xml"
    live = tmp_path / f".o.tif.{_HOST}-{os.getpid()}-def.part"  # this process, now
    foreign = tmp_path / f".o.tif.000000-{dead.pid}-ghi.part"  # another host's run
    other = tmp_path / f".p.tif.{_HOST}-{dead.pid}-jkl.part"  # another target's
    for p in (stale, stale_side, live, foreign, other):
        p.write_bytes(b"x")
    assert sorted(satsr.data.raster.remove_stale_parts(target)) == sorted([stale, stale_side])
    assert live.exists() and foreign.exists() and other.exists()


def test_parts_of_an_earlier_process_with_the_same_pid_are_stale(tmp_path, monkeypatch):
    from satsr.data.raster import _HOST

    # in a container every run may get the same pid: a part older than this process is stale
    part = tmp_path / f".o.tif.{_HOST}-{os.getpid()}-abc.part"
    part.write_bytes(b"x")
    monkeypatch.setattr(satsr.data.raster, "_process_start", lambda pid: time.time() + 60)
    assert satsr.data.raster.remove_stale_parts(tmp_path / "o.tif") == [part]


def test_sigterm_during_training_saves_a_checkpoint_and_exits_143(shared, tmp_path):
    from helpers import write_dataset

    ds = write_dataset(tmp_path / "ds", shared / SRC, 32, {"train": 4, "val": 1})
    run = tmp_path / "run"
    script = (
        "import os, signal, sys\n"
        "import satsr.training.gcn as t\n"
        "step = t.GCNModel.step\n"
        "def slow(self, hr):\n"
        "    out = step(self, hr)\n"
        "    if self.iteration == 2:  # the step counts itself: during the second\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return out\n"
        "t.GCNModel.step = slow\n"
        "from satsr.cli.app import main\n"
        "main(sys.argv[1:])\n")
    proc = subprocess.run(
        [sys.executable, "-c", script, "train", str(ds), "-o", str(run), "--variant", "mse",
         "--iterations", "50", "--hr-size", "32", "--batch-size", "2", "--n-blocks", "1",
         "--features", "8", "--val-every", "0", "--device", "cpu"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 143, proc.stderr
    assert "Traceback" not in proc.stderr and "interrupted at iteration 2" in proc.stderr
    from satsr.training.rundir import load_checkpoint

    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 2
    assert _leftovers(run) == []


# ------------------------------------------------------------------------ non-UTF-8 names

@pytest.fixture()
def odd(shared, tmp_path) -> Path:
    """A real raster whose file name holds the byte 0xff (not UTF-8)."""
    folder = tmp_path / "in"
    folder.mkdir()
    plain = _crop(shared / SRC, folder / "plain.tif", 64)
    return plain.rename(folder / os.fsdecode(b"in\xff.tif"))  # rasterio cannot write it


def test_printable_shows_undecodable_bytes_as_escapes():
    from satsr.errors import printable

    assert printable(os.fsdecode(b"/a/in\xff\xc3\xa9.tif")) == "/a/in\\xffé.tif"
    assert printable("two\nlines") == "two lines"


def test_error_naming_a_non_utf8_path_is_one_line(tmp_path, capsys):
    missing = tmp_path / os.fsdecode(b"gone\xfe.tif")
    code, _, err = run_cli(["upscale", str(missing), "-o", str(tmp_path / "o.tif"),
                            "--method", "nearest"], capsys)
    _one_line_error(code, err, "gone\\xfe.tif")


def _aliases() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("satsr-alias-*"))


def test_every_verb_works_on_a_non_utf8_file_name(odd, tmp_path, capsys):
    aliases = _aliases()
    out = tmp_path / os.fsdecode(b"out\xfe.tif")
    code, stdout, err = run_cli(["upscale", str(odd), "-o", str(out), "--method", "bicubic"],
                                capsys)
    assert code == 0, err
    assert "out\\xfe.tif" in stdout
    ds_dir = tmp_path / os.fsdecode(b"ds\xfd")
    code, stdout, err = run_cli(["make-dataset", str(odd), "-o", str(ds_dir), "--size", "16",
                                 "-n", "10"], capsys)
    assert code == 0, err
    assert len(list((ds_dir / "chips").rglob("*.tif"))) == 10
    code, stdout, err = run_cli(["eval", "--pred", str(odd), "--ref", str(odd), "--metric",
                                 "psnr", "--no-progress"], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["eval", str(ds_dir), "--metric", "psnr", "--no-progress"],
                                capsys)
    assert code == 0, err
    assert _leftovers(tmp_path) == [] and _aliases() <= aliases


def test_outputs_in_a_non_utf8_folder(odd, tmp_path, capsys):
    folder = tmp_path / os.fsdecode(b"f\xff")
    folder.mkdir()
    code, _, err = run_cli(["upscale", str(odd), "-o", str(folder / "o.tif"), "--method",
                            "nearest", "--scale", "2"], capsys)
    assert code == 0, err
    with satsr.data.raster.open_raster(folder / "o.tif") as ds:
        assert ds.width == 128
    code, _, err = run_cli(["make-dataset", str(odd), "-o", str(folder / "ds"), "--size", "16",
                            "-n", "5"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["ds", "o.tif"]


# ------------------------------------------------------------------------------- warnings

@pytest.fixture()
def rgba_nodata(shared, tmp_path) -> Path:
    """RGBA with a declared nodata value as well: rasterio's NodataShadowWarning case."""
    return _crop(shared / "bali_drone_rgba_0.35m.tif", tmp_path / "rgba.tif", 96, nodata=0)


def test_nodata_shadow_warning_does_not_leak(rgba_nodata, tmp_path, capsys):
    for args in (["upscale", str(rgba_nodata), "-o", str(tmp_path / "o.tif"), "--method",
                  "nearest"],
                 ["make-dataset", str(rgba_nodata), "-o", str(tmp_path / "ds"), "--size", "16",
                  "-n", "5", "--max-nodata", "1"]):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            code, _, err = run_cli(args, capsys)
        assert code == 0, err
        assert "shadowing" not in err and ".py:" not in err, err
        assert not [w for w in seen if "shadowing" in str(w.message)]


def test_any_warning_in_a_verb_prints_as_one_line(tiled, tmp_path, capsys, monkeypatch):
    real = satsr.data.raster.parse_bands

    def noisy(spec):  # stands for a torch / library UserWarning raised inside a verb
        warnings.warn("something deep inside\n  said this", UserWarning, stacklevel=1)
        return real(spec)

    monkeypatch.setattr(satsr.data.raster, "parse_bands", noisy)
    code, _, err = run_cli(["upscale", str(tiled), "-o", str(tmp_path / "o.tif"), "--method",
                            "nearest"], capsys)
    assert code == 0, err
    assert "satsr: warning: something deep inside said this" in err.splitlines(), err
    assert ".py:" not in err and "warnings.warn" not in err, err


# ---------------------------------------------------------------------------- --bands ""

@pytest.mark.parametrize("spec", ["", " "])
def test_empty_bands_is_an_error(tiled, tmp_path, capsys, spec):
    with pytest.raises(SatsrError, match="^bands is empty") as caught:
        parse_bands(spec)
    assert caught.value.options == ("bands",)  # the CLI shows it as --bands (below)
    assert parse_bands(None) is None
    code, _, err = run_cli(["make-dataset", str(tiled), "-o", str(tmp_path / "ds"), "--size",
                            "16", "-n", "5", "--bands", spec], capsys)
    _one_line_error(code, err, "--bands")
    assert not (tmp_path / "ds").exists()


def test_library_reads_stay_exact(tiled):
    with rasterio.open(tiled) as ds:
        win = Window(3, 5, 17, 11)
        read = satsr.data.raster.read_window
        np.testing.assert_array_equal(read(ds, [1, 2], win), ds.read([1, 2], window=win))
        np.testing.assert_array_equal(read(ds), ds.read())
