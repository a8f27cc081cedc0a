"""satsr: super-resolution of satellite and aerial imagery (Generative Collaborative Networks).

The public Python API (the CLI verbs are thin wrappers around it)::

    import satsr

    satsr.make_dataset(["big.tif"], "chips", size=128, count=100)
    satsr.train(data="chips", out="run", iterations=100, hr_size=64)
    satsr.upscale_raster("small.tif", "small_x4.tif", model="run")
    print(satsr.evaluate("chips", models=["run"], methods=["bicubic"], metrics=["psnr"]).summary())

(the README's example; tests/test_api.py runs it on tiny data). Names are imported on first
use, so `import satsr` (and the CLI's start-up) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from satsr.errors import SatsrError, SatsrWarning
from satsr.lazy import lazy_names

#: The one place the version is written: pyproject.toml reads it from here (dynamic), so
#: `satsr --version`, the package metadata and the CHANGELOG's release heading agree, even
#: in a source tree whose editable install is older.
__version__ = "0.6.0"

#: Public name -> the module that defines it (imported on first access).
_LAZY = {
    "load_model": "satsr.inference.modelfile",
    "load_engine": "satsr.inference.engine",
    "Engine": "satsr.inference.engine",
    "upscale_raster": "satsr.inference.writer",
    "UpscaleResult": "satsr.inference.writer",
    "upscale_rasters": "satsr.inference.batch",
    "UpscaleSummary": "satsr.inference.batch",
    "make_dataset": "satsr.data.make_dataset",
    "Summary": "satsr.data.make_dataset",
    "Degradation": "satsr.data.degrade",
    "train": "satsr.training.loop",
    "TrainConfig": "satsr.training.config",
    "TrainResult": "satsr.training.loop",
    "evaluate": "satsr.evaluation.evaluate",
    "EvalResult": "satsr.evaluation.scoring",
}

__all__ = [
    "Degradation", "Engine", "EvalResult", "SatsrError", "SatsrWarning", "Summary",
    "TrainConfig", "TrainResult", "UpscaleResult", "UpscaleSummary", "__version__", "evaluate",
    "load_engine", "load_model", "make_dataset", "train", "upscale_raster", "upscale_rasters",
]

if TYPE_CHECKING:
    from satsr.data.degrade import Degradation
    from satsr.data.make_dataset import Summary, make_dataset
    from satsr.evaluation.evaluate import evaluate
    from satsr.evaluation.scoring import EvalResult
    from satsr.inference.batch import UpscaleSummary, upscale_rasters
    from satsr.inference.engine import Engine, load_engine
    from satsr.inference.modelfile import load_model
    from satsr.inference.writer import UpscaleResult, upscale_raster
    from satsr.training.config import TrainConfig
    from satsr.training.loop import TrainResult, train


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
