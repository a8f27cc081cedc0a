"""The tables of `satsr eval` and `satsr models` stay readable in an 80-column terminal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import run_cli
from rich.console import Console

from satsr.evaluation import scoring as ev
from satsr.evaluation.metrics import METRICS

BOX = "│┃║─━═┏┓┗┛┣┫┳┻╋┡┩╇┌┐└┘├┤┬┴┼╭╮╰╯╞╡╪╘╛╒╕╤╧"


def _tokens(text: str) -> list[str]:
    """The words of a rendered table: split on white space and box-drawing characters."""
    return [t for t in re.split(rf"[\s{BOX}]+", text) if t]


def _render(renderable: object, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def _check_readable(narrow: str, wide: str, width: int = 80, extra: str = "") -> None:
    """No cut cell, no line past the width, and every word of the narrow rendering is a whole
    word of the unconstrained one (a word broken mid-word leaves fragments that are not);
    `extra`: words of layouts that only narrow terminals get (their headers)."""
    assert "…" not in narrow, narrow
    assert max(len(line) for line in narrow.splitlines()) <= width, narrow
    words = set(_tokens(wide)) | set(_tokens(extra))
    broken = [t for t in _tokens(narrow) if t not in words]
    assert not broken, (broken, narrow)


def _layouts(res: ev.EvalResult) -> list[object]:
    """Every layout the eval table can choose from (their headers are legitimate words)."""
    table = res.table()
    return list(getattr(table, "layouts", [table]))


def _realistic_result() -> ev.EvalResult:
    """4 methods x all 9 metrics (squeeze unavailable), 12 images, spread like a real run."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = {"l2": 0.0021, "dssim": 0.2293, "psnr": 24.51, "alex": 3.027, "alex-l": 0.4346,
            "vgg": 4.688, "vgg-l": 0.425}
    methods = ["satsr-rgb-x4", "adv+rec-3000it", "bicubic", "nearest"]
    values = {m: {k: list(v * (1 + 0.1 * i) * (1 + 0.2 * rng.standard_normal(12)))
                  for k, v in base.items()} for i, m in enumerate(methods)}
    return ev.EvalResult(methods=methods, metrics=list(METRICS), values=values,
                         unavailable={"squeeze": "no weights", "squeeze-l": "no weights"},
                         info={"samples": 12, "scale": 4, "colorspace": "lab"})


def test_eval_table_fits_80_columns_without_cut_cells_or_broken_words() -> None:
    res = _realistic_result()
    narrow, wide = _render(res.table(), 80), _render(res.table(), 400)
    every_layout = "\n".join(_render(t, 400) for t in _layouts(res))
    _check_readable(narrow, wide, extra=every_layout)
    for m in res.methods:
        assert m in _tokens(narrow)
    s = res.summary()
    for k in ("l2", "psnr", "vgg-l"):  # every number is shown, with its CI
        mean, ci = s["bicubic"][k]
        assert ev._fmt(mean) in narrow and f"±{ev._fmt(ci, 2)}" in narrow
    assert "rank" in narrow and "max PE" in narrow
    # a wide terminal keeps one row per method
    assert sum(line.lstrip("│┃ ").startswith("bicubic") for line in wide.splitlines()) == 1


@pytest.mark.parametrize("width", [60, 40])
def test_eval_table_narrower_terminals_fall_back_to_one_block_per_method(width: int) -> None:
    res = _realistic_result()
    narrow = _render(res.table(), width)
    every_layout = "\n".join(_render(t, 400) for t in _layouts(res))
    _check_readable(narrow, _render(res.table(), 400), width, extra=every_layout)
    assert "rank" in narrow and all(m in narrow for m in res.methods)


def test_eval_cli_table_and_notes_at_80_columns(
        shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real command at COLUMNS=80, every metric: readable table, the squeeze note once."""
    import rasterio
    from rasterio.windows import Window

    src = tmp_path / "hr.tif"
    with rasterio.open(shared / "colorado_aerial_0.15m.tif") as ds:
        win = Window(100, 100, 128, 64)
        prof = {"driver": "GTiff", "width": 128, "height": 64, "count": 3, "dtype": "uint8",
                "crs": ds.crs, "transform": ds.window_transform(win)}
        data = ds.read(window=win)
    with rasterio.open(src, "w", **prof) as out:
        out.write(data)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    args = ["eval", str(src), "--method", "bicubic", "--method", "nearest", "--chip-size", "64",
            "--no-progress"]
    outs = {}
    for width in (80, 400):
        monkeypatch.setenv("COLUMNS", str(width))
        code, outs[width], err = run_cli(args, capsys)
        assert code == 0, err
    table = outs[80].split("\nn/a:")[0]
    _check_readable(table, outs[400], extra="metric")  # header of the metrics-as-rows layout
    assert outs[80].count("squeeze-l (") == 1 and err.count("squeeze-l are unavailable") == 1
    assert err.count("squeezenet1_1-b8a52dc0.pth (from") == 1


def test_models_table_fits_80_columns(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from satsr.inference.bundled import DEFAULT_MODEL, MODELS_DIR

    monkeypatch.setenv("COLUMNS", "80")
    code, narrow, err = run_cli(["models"], capsys)
    assert code == 0, err
    monkeypatch.setenv("COLUMNS", "400")
    _, wide, _ = run_cli(["models"], capsys)
    table = narrow.split("\nfiles:")[0]
    _check_readable(table, wide)
    assert DEFAULT_MODEL in _tokens(narrow) and "(default)" in narrow
    assert f"{DEFAULT_MODEL}.md" in _tokens(narrow)
    # the folder is printed once and whole (soft-wrapped by the terminal, never cut by rich)
    assert narrow.count(str(MODELS_DIR)) == 1
    assert narrow.count("\n") < 45  # two models and the choice table


ROOT = Path(__file__).resolve().parents[1]


def _before_after(*specs: str) -> list[str]:
    """The rows examples/before_after.py prints for LABEL=EVAL.json:MODEL specs."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "examples" / "before_after.py"), *specs],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()


def test_before_after_table_reads_the_committed_evals() -> None:
    import subprocess
    import sys

    ev = ROOT / "examples" / "results" / "rgb-x4-0.3" / "eval.json"
    rows = _before_after(f"0.2={ev}:before", f"0.3={ev}:satsr-rgb-x4")
    assert rows[0].startswith("| LR made by | 0.2, all 9 sources | 0.3, all 9 sources")
    # the README quotes the 0.3 model's clean sub-metre change: vgg-l -3.9 %, PSNR +0.33 dB
    clean = next(r for r in rows if r.startswith("| bicubic |")).split(" | ")
    assert clean[4].startswith("-3.9 % / +0.33 dB")
    assert any(r.startswith("| flat-block grain") for r in rows)
    # 0.5 (the same weights, the share decided per raster), from the bundled model's own eval
    ev = ROOT / "satsr" / "assets" / "models" / "satsr-rgb-x4.eval.json"
    rows = {r.split(" | ")[0]: r.split(" | ")
            for r in _before_after(f"0.3={ev}:before", f"0.5={ev}:satsr-rgb-x4")}
    # the README quotes: clean sub-metre -4.3 % / +0.35 dB / -18 %, JPEG -0.1 %, and
    # nearest-decimated input exactly bicubic
    assert rows["| bicubic"][4].startswith("-4.3 % / +0.35 dB / -18 %")
    assert rows["| jpeg"][4].startswith("-0.1 %")
    assert rows["| nearest"][4].startswith("+0.0 % / +0.00 dB / +0 %")
    # the 0.3 column of the new eval is 0.3's own eval: the same LR and weights, scored in
    # batches of another composition, so only float32 rounding may differ (a conv sum of n
    # terms errs by up to n * eps relative; n is in the thousands here: 1e-4)
    old = json.loads((ROOT / "examples" / "results" / "rgb-x4-0.3" / "eval.json").read_text())
    new = json.loads(ev.read_text())
    for fam, scores in old["mean"].items():
        for k, v in scores["satsr-rgb-x4"].items():
            assert new["mean"][fam]["before"][k] == pytest.approx(v, rel=1e-4), (fam, k)
    bad = subprocess.run([sys.executable, str(ROOT / "examples" / "before_after.py"), "x"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "LABEL=EVAL.json:MODEL" in bad.stderr


def test_band_by_band_before_after_table_is_the_one_in_the_readme() -> None:
    ev = ROOT / "satsr" / "assets" / "models" / "satsr-ms-x4.eval.json"
    rows = _before_after(f"0.2={ev}:before", f"0.6={ev}:satsr-ms-x4")
    # no sub-metre columns for the 5-300 m sources; the radiometry rows as % of range
    assert rows[0] == "| LR made by | 0.2, all 6 sources | 0.6, all 6 sources |"
    assert any(r.startswith("| band bias (mean SR - mean LR) | mean ") for r in rows)
    readme = (ROOT / "README.md").read_text()
    for r in rows:  # the README quotes the table as the committed eval gives it
        assert "  " + r in readme, r
