"""The public Python API (`import satsr`): the README's example runs, names load lazily."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import satsr

#: The README's Python example, word for word (README.md, "Python").
README_EXAMPLE = """\
import satsr

satsr.make_dataset(["big.tif"], "chips", size=128, count=100)
satsr.train(data="chips", out="run", iterations=100, hr_size=64)
satsr.upscale_raster("small.tif", "small_x4.tif", model="run")
print(satsr.evaluate("chips", models=["run"], methods=["bicubic"], metrics=["psnr"]).summary())
"""

#: What the test shrinks so the example runs in seconds (the API calls stay the same).
SHRINK = {
    "count=100": "count=24",
    "size=128": "size=64",
    "iterations=100, hr_size=64": "iterations=2, hr_size=32, batch_size=2, n_blocks=1, "
                                  "features=8, val_every=0, device='cpu'",
}


def test_readme_example_runs_on_tiny_data(shared, tmp_path, monkeypatch, capsys):
    code = README_EXAMPLE
    for old, new in SHRINK.items():
        assert old in code
        code = code.replace(old, new)
    shutil.copy(shared / "netherlands_aerial_0.25m.tif", tmp_path / "big.tif")
    shutil.copy(shared / "colorado_aerial_0.15m.tif", tmp_path / "small.tif")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README example", "exec"), {})
    out = capsys.readouterr().out
    assert "bicubic" in out and "run" in out and "psnr" in out
    assert (tmp_path / "run" / "model.safetensors").is_file()
    import rasterio

    with rasterio.open(tmp_path / "small.tif") as a, rasterio.open(tmp_path / "small_x4.tif") as b:
        assert (b.width, b.height) == (4 * a.width, 4 * a.height)


def test_public_names_are_exported_and_load():
    for name in ("load_model", "upscale_raster", "make_dataset", "train", "evaluate",
                 "SatsrError", "TrainConfig", "Degradation", "EvalResult"):
        assert name in satsr.__all__
        assert getattr(satsr, name) is not None
    with pytest.raises(AttributeError):
        _ = satsr.no_such_name


def test_import_satsr_and_the_cli_do_not_import_torch():
    code = ("import sys, satsr, satsr.cli; import satsr.errors; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_upscale_raster_takes_a_method_without_an_engine(shared, tmp_path):
    res = satsr.upscale_raster(shared / "colorado_aerial_0.15m.tif", tmp_path / "o.tif",
                               method="bicubic", scale=2, device="cpu")
    assert (res.width, res.height) == (383 * 2, 232 * 2)


def test_library_errors_name_arguments_and_the_cli_names_flags(shared, tmp_path, capsys):
    from satsr.cli import main

    with pytest.raises(satsr.SatsrError, match=r"^colorspace must be lab or rgb"):
        satsr.evaluate(shared / "colorado_aerial_0.15m.tif", colorspace="xyz")
    with pytest.raises(SystemExit):
        main(["eval", str(shared / "colorado_aerial_0.15m.tif"), "--colorspace", "xyz"])
    assert "satsr: error: --colorspace must be lab or rgb" in capsys.readouterr().err


def test_cli_shows_the_arguments_an_error_names_as_flags_but_leaves_paths_alone():
    from satsr.cli.options import cli_message

    exc = satsr.SatsrError("pred/ref compare two rasters: give no data, models or methods",
                           option=("pred", "ref", "data", "models", "methods"))
    assert cli_message(exc) == ("--pred/--ref compare two rasters: give no DATA, --model or "
                                "--method")
    exc = satsr.SatsrError("batch_size 9 is larger than /runs/batch_size/data.tif holds",
                           option="batch_size")
    assert cli_message(exc) == "--batch-size 9 is larger than /runs/batch_size/data.tif holds"
    exc = satsr.SatsrError("x.tif: the model reads 3 bands but 4 are selected (bands 1,2,3,4 "
                           "of 4); choose 3 with bands", option="bands")
    assert cli_message(exc) == ("x.tif: the model reads 3 bands but 4 are selected (--bands "
                                "1,2,3,4 of 4); choose 3 with --bands")
