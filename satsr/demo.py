"""`satsr demo`: the bundled model on the bundled sample, end to end.

1. `satsr upscale` of the sample GeoTIFF with the model the choice table gives it
   -> DIR/sample_x4.tif (georeferenced: same CRS and footprint, 4x the pixels).
2. `satsr eval` of the sample taken as HR (degraded by 4 with satsr.data.degrade, then brought
   back by nearest, bicubic and the model) -> DIR/eval.json, DIR/eval.csv and
   DIR/side_by_side.png (the same crop of HR, nearest, bicubic and satsr).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from satsr.data.raster import check_output
from satsr.errors import SatsrError
from satsr.evaluation import scoring as ev
from satsr.evaluation.metrics import METRICS
from satsr.inference.bundled import SAMPLE
from satsr.inference.engine import load_engine
from satsr.inference.modelfile import model_scaling, read_metadata, resolve_model_path
from satsr.inference.writer import upscale_raster
from satsr.nn.device import resolve_device

OUTPUTS = ("sample_x4.tif", "side_by_side.png", "eval.json", "eval.csv")


@dataclass
class DemoResult:
    out: Path
    sample: Path
    model: Path
    upscaled: Path
    figure: Path
    json: Path
    csv: Path
    table: object  # rich Table of the eval
    upscale_line: str
    unavailable: dict[str, str]


def run_demo(out: str | Path, *, model: str | Path | None = None, sample: str | Path | None = None,
             device: str = "auto", overwrite: bool = False, progress: bool = False,
             figure_crop: int = 128) -> DemoResult:
    """Run the demo into folder `out` (created if needed); existing outputs need `overwrite`."""
    out = Path(out)
    sample = Path(sample) if sample is not None else SAMPLE
    if not sample.is_file():
        raise SatsrError(f"demo sample not found: {sample}")
    if model is not None:
        model_path = resolve_model_path(model)
    else:  # the bundled model the choice table gives the sample (as `satsr upscale` does)
        from satsr.inference.choice import choose_model

        model_path = choose_model(sample).path
    if read_metadata(model_path).get("bandwise"):  # before anything is written
        raise SatsrError(f"the demo scores RGB models against the RGB sample; "
                         f"{Path(model_path).stem} is a band-by-band (multispectral) model: "
                         f"run it with `satsr upscale RASTER -m {Path(model_path).stem} -o "
                         f"OUT.tif`")
    if out.exists() and not out.is_dir():
        raise SatsrError(f"output exists and is not a folder: {out}")
    targets = {name: out / name for name in OUTPUTS}
    for target in targets.values():
        if out.is_dir():
            check_output(target, overwrite, inputs=[sample, model_path])
    out.mkdir(parents=True, exist_ok=True)
    dev = str(resolve_device(device))

    # 1. the georeferenced 4x GeoTIFF
    engine = load_engine(model_path, None, 4, dev)
    up = upscale_raster(sample, targets["sample_x4.tif"], engine, overwrite=overwrite,
                        progress=progress)

    # 2. the eval table and the side-by-side figure
    meta = engine.meta
    scale = int(meta["arch"]["scale"])
    samples, total, scaling, info = ev.raster_samples([sample], 256, scale,
                                                      model_scaling(meta))
    methods = [ev.classical_method("nearest", scale), ev.classical_method("bicubic", scale),
               ev.model_method(model_path, scaling, scale, dev, name="satsr")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unavailable = ev.resolve_lpips(list(METRICS), False, None)
    metrics = [m for m in METRICS if m not in unavailable]  # a table that fits a terminal
    result = ev.score_samples(samples, methods, metrics, scaling, scale, ev.parse_rgb(None,
                              scaling.bands), device=dev, total=total,
                              progress=progress, figure_crop=figure_crop,
                              info={**info, "model": str(model_path)})
    result.write_json(targets["eval.json"])
    result.write_csv(targets["eval.csv"])
    ev.write_figure(result, targets["side_by_side.png"])
    return DemoResult(out=out, sample=sample, model=model_path,
                      upscaled=targets["sample_x4.tif"], figure=targets["side_by_side.png"],
                      json=targets["eval.json"], csv=targets["eval.csv"],
                      table=result.table(), upscale_line=up.line(),
                      unavailable=unavailable)
