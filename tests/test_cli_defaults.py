"""Every CLI default agrees with the library's: `satsr upscale`, `satsr eval`,
`satsr make-dataset`, `satsr demo` and `satsr band-samples` against satsr.upscale_raster /
upscale_rasters, satsr.evaluate, satsr.make_dataset, satsr.demo.run_demo and
satsr.data.bandsamples.band_samples (their signatures read with inspect, the CLI's from its
click parameters); `satsr train` builds its flags from TrainConfig itself.

A flag either has a library argument (same name, or the one in RENAMED) whose default it
repeats, or it is listed in CLI_ONLY with the reason it has none. A new flag that is in
neither fails here, as does a default changed on one side only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
import typer.main
from helpers import run_cli
from rasterio.transform import from_origin

import satsr
from satsr.cli.app import app
from satsr.data.bandsamples import band_samples
from satsr.data.sampling import parse_split
from satsr.demo import run_demo

#: CLI parameter -> library argument, where the names differ.
RENAMED: dict[str, dict[str, str]] = {
    "upscale": {"inputs": "src", "out": "dst", "co": "creation_options"},
    "eval": {"model": "models", "method": "methods", "metric": "metrics",
             "degradation": "degradations", "lpips_weights": "weights_dir"},
    "make-dataset": {"co": "creation_options"},
    "demo": {},
    "band-samples": {},
}

#: CLI parameters without a library argument of the same meaning, and why.
CLI_ONLY: dict[str, dict[str, str]] = {
    "upscale": {
        # upscale_rasters' (the many-inputs call the CLI makes), checked against it below
        "skip_existing": "upscale_rasters",
    },
    "eval": {
        # the library returns an EvalResult; writing it is the CLI's job
        "json_out": "EvalResult.write_json", "csv_out": "EvalResult.write_csv",
        "figure": "write_figure", "overwrite": "of those three outputs",
        # a library call is quiet unless asked; the CLI shows a bar unless told not to
        "progress": "CLI True, library False on purpose",
        # hidden former spelling of --lpips-weights, merged into it (weights_dir)
        "weights_dir_alias": "--weights-dir",
    },
    "make-dataset": {},
    "demo": {},
    "band-samples": {},
}

#: Library arguments of one verb that the CLI does not expose, and why.
LIBRARY_ONLY_OF: dict[str, dict[str, str]] = {
    "demo": {"sample": "the demo runs on the bundled sample",
             "figure_crop": "the demo's figure has one size"},
}

#: Required library arguments that a verb defaults, and why.
CLI_DEFAULT_ONLY: dict[tuple[str, str], str] = {
    ("demo", "out"): "run_demo needs a folder; `satsr demo` writes ./satsr-demo unless told",
}

#: Library arguments the CLI does not expose as a flag of that name, and why.
LIBRARY_ONLY = {
    # the CLI shows progress when stderr is a terminal (upscale, make-dataset)
    "progress",
}

#: Values that mean "nothing given" on either side: Typer's list options default to None,
#: the library's sequences to () or None.
EMPTY = (None, (), [])

#: How a CLI string default reads as the library's value.
PARSE: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("make-dataset", "split"): parse_split,
}

LIBRARY: dict[str, Callable[..., Any]] = {
    "upscale": satsr.upscale_raster,
    "eval": satsr.evaluate,
    "make-dataset": satsr.make_dataset,
    "demo": run_demo,
    "band-samples": band_samples,
}


def _cli_params(verb: str) -> dict[str, Any]:
    command = typer.main.get_command(app).commands[verb]
    return {p.name: p for p in command.params}


def _same(verb: str, name: str, cli: Any, lib: Any) -> bool:
    if cli in EMPTY and lib in EMPTY:
        return True
    parse = PARSE.get((verb, name))
    if parse is not None:
        return bool(parse(cli) == parse(lib))
    return bool(cli == lib and type(cli) is type(lib))


@pytest.mark.parametrize("verb", sorted(LIBRARY))
def test_every_cli_default_is_the_librarys(verb: str) -> None:
    sig = inspect.signature(LIBRARY[verb]).parameters
    params = _cli_params(verb)
    wrong, unknown = [], []
    for name, param in params.items():
        if name in CLI_ONLY[verb]:
            continue
        lib_name = RENAMED[verb].get(name, name)
        if lib_name not in sig:
            unknown.append(name)
            continue
        lib = sig[lib_name]
        if lib.default is inspect.Parameter.empty and (verb, name) in CLI_DEFAULT_ONLY:
            continue
        if lib.default is inspect.Parameter.empty:  # required in the library
            assert param.required, f"{verb} {name}: required by the library, optional here"
            continue
        if not _same(verb, name, param.default, lib.default):
            wrong.append(f"{name}: CLI {param.default!r} vs library {lib.default!r}")
    assert unknown == [], f"{verb}: flags with no library argument (add to CLI_ONLY): {unknown}"
    assert wrong == []
    exposed = {RENAMED[verb].get(n, n) for n in params}
    missing = [n for n in sig if n not in exposed and n not in LIBRARY_ONLY
               and n not in LIBRARY_ONLY_OF.get(verb, {})]
    assert missing == [], f"{verb}: library arguments without a flag: {missing}"


def test_upscale_defaults_agree_with_upscale_rasters_too() -> None:
    """The CLI runs upscale_rasters; its raster options are upscale_raster's, same defaults."""
    one = inspect.signature(satsr.upscale_raster).parameters
    many = inspect.signature(satsr.upscale_rasters).parameters
    for name, p in one.items():
        if name in many and p.default is not inspect.Parameter.empty:
            assert many[name].default == p.default, name
    params = _cli_params("upscale")
    assert params["skip_existing"].default is many["skip_existing"].default is False


def test_cli_only_lists_only_real_flags() -> None:
    for verb, names in CLI_ONLY.items():
        assert set(names) <= set(_cli_params(verb)), verb
    for verb, names in RENAMED.items():
        assert set(names) <= set(_cli_params(verb)), verb


def test_upscale_raster_strength_is_the_clis(tmp_path: Path, capsys) -> None:
    """satsr.upscale_raster(strength=...) writes the bytes `satsr upscale --strength` writes."""
    from satsr.data.scaling import BandScaling
    from satsr.errors import SatsrError
    from satsr.inference.engine import load_engine
    from satsr.inference.modelfile import save_model
    from satsr.nn import Generator

    torch.manual_seed(0)
    g = Generator(3, 4, n_blocks=1, features=8, residual=True, upsample="nearest")
    with torch.no_grad():
        g.tail.weight.normal_(0, 0.05)
    model = save_model(tmp_path / "m.safetensors", g.eval(),
                       {"variant": "mse", "scaling": BandScaling.for_uint8(3).to_dict()})
    src = tmp_path / "in.tif"
    data = np.random.default_rng(0).integers(30, 220, (3, 24, 24), dtype=np.uint8)
    with rasterio.open(src, "w", driver="GTiff", width=24, height=24, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 1, 1)) as ds:
        ds.write(data)
    code, _, err = run_cli(["upscale", str(src), "-o", str(tmp_path / "cli.tif"), "-m",
                            str(model), "--strength", "0.5", "--overlap", "8",
                            "--device", "cpu"], capsys)
    assert code == 0, err
    satsr.upscale_raster(src, tmp_path / "api.tif", model, strength=0.5, overlap=8,
                         device="cpu")
    with rasterio.open(tmp_path / "cli.tif") as a, rasterio.open(tmp_path / "api.tif") as b:
        assert np.array_equal(a.read(), b.read())
        assert a.tags()["SATSR_STRENGTH"] == b.tags()["SATSR_STRENGTH"] == "0.5"
    with pytest.raises(SatsrError, match="strength"):
        satsr.upscale_raster(src, tmp_path / "m.tif", method="bicubic", strength=0.5)
    with pytest.raises(SatsrError, match="strength"):
        satsr.upscale_raster(src, tmp_path / "e.tif", load_engine(model, device="cpu"),
                             strength=0.5)


def test_names_declared_once_reach_the_help_texts() -> None:
    """Variant and degradation preset names come from their one declaration."""
    from satsr.data import degrade, presets
    from satsr.nn import phi, variants
    from satsr.training.config import FIELDS

    assert degrade.PRESETS is presets.PRESETS and degrade.EVAL_FAMILIES is presets.EVAL_FAMILIES
    assert phi.VARIANTS is variants.VARIANTS
    variant_help = FIELDS["variant"].metadata["help"]
    assert all(v in variant_help for v in variants.VARIANTS)
    assert ", ".join(presets.PRESETS) in FIELDS["degradation"].metadata["help"]
    eval_help = _cli_params("eval")["degradation"].help
    assert ", ".join(presets.PRESETS) in eval_help
    assert ", ".join(presets.EVAL_FAMILIES) in eval_help


# ------------------------------------------------ one name for the LPIPS weights folder

def _flags(verb: str) -> dict[str, Any]:
    command = typer.main.get_command(app).commands[verb]
    return {o: p for p in command.params for o in p.opts}


@pytest.mark.parametrize("verb", ["eval", "train"])
def test_lpips_weights_is_one_flag_with_a_hidden_former_name(verb: str) -> None:
    """eval and train name the LPIPS weights folder --lpips-weights; --weights-dir (eval's
    former name) is still accepted by both, hidden from the help."""
    flags = _flags(verb)
    assert not flags["--lpips-weights"].hidden
    assert flags["--weights-dir"].hidden
    assert flags["--weights-dir"] is not flags["--lpips-weights"]


def test_the_former_name_gives_the_same_folder() -> None:
    from satsr.cli.options import merge_lpips_weights
    from satsr.errors import SatsrError

    folder = Path("w")
    assert merge_lpips_weights(None, folder) == folder
    assert merge_lpips_weights(folder, None) == folder
    assert merge_lpips_weights(folder, folder) == folder
    assert merge_lpips_weights(None, None) is None
    with pytest.raises(SatsrError, match="former name of --lpips-weights"):
        merge_lpips_weights(folder, Path("other"))


def test_eval_reads_lpips_weights_under_either_name(tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    """Both spellings reach satsr.evaluate's weights_dir."""
    import satsr.evaluation.evaluate as ev

    seen: list[Any] = []

    def fake(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["weights_dir"])
        raise SystemExit(0)

    monkeypatch.setattr(ev, "evaluate", fake)
    for name in ("--lpips-weights", "--weights-dir"):
        run_cli(["eval", str(tmp_path), name, str(tmp_path)], capsys)
    assert seen == [tmp_path, tmp_path]
    code, _, err = run_cli(["eval", str(tmp_path), "--lpips-weights", str(tmp_path),
                            "--weights-dir", str(tmp_path / "x")], capsys)
    assert code != 0 and "former name of --lpips-weights" in err


def test_train_reads_lpips_weights_under_either_name(tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    """Both spellings reach TrainConfig.lpips_weights."""
    import satsr.training.loop as loop

    seen: list[Any] = []

    def fake(cfg: Any, **kwargs: Any) -> Any:
        seen.append(cfg.lpips_weights)
        raise SystemExit(0)

    monkeypatch.setattr(loop, "train", fake)
    for name in ("--lpips-weights", "--weights-dir"):
        run_cli(["train", str(tmp_path), "-o", str(tmp_path / "run"), name, str(tmp_path)],
                capsys)
    assert seen == [str(tmp_path), str(tmp_path)]


def test_command_help_reflows_to_the_terminal(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A command's help paragraphs carry no line breaks of their own (Typer's rich help keeps
    them, and a docstring hard-wrapped at 96 columns broke mid-sentence at 80): each paragraph
    is one line, and at 80 columns the terminal wraps it whole."""
    cmd = typer.main.get_command(app)
    assert isinstance(cmd, typer.main.TyperGroup)
    for name, sub in cmd.commands.items():
        assert sub.help, name
        for para in sub.help.split("\n\n"):
            assert para and "\n" not in para, (name, para)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(["eval", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0
    assert "averaged with a Student-t 95% CI. With --pred/--ref, the pair is scored whole" in text
    lines = [ln.strip() for ln in out.splitlines()]
    assert "averaged with a" not in lines  # the old mid-sentence break
