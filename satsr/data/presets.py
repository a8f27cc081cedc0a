"""The named degradation pipelines (presets) and the eval families, declared once.

Plain data, free of torch: the CLI's help texts list the preset names from here without
importing satsr.data.degrade, which builds and runs the pipelines (and re-exports these names).
"""

from __future__ import annotations

from typing import Any


def _sensor_like(description: str, mtf: list[float], read: list[float],
                 shot: list[float]) -> dict[str, Any]:
    """A pipeline like a sensor's: optics PSF blur, detector area average, read + shot noise
    (each parameter a [low, high] range drawn per image)."""
    return {"description": description,
            "steps": [{"blur": {"mtf": mtf}}, {"downscale": {"method": "area"}},
                      {"noise": {"read": read, "shot": shot}}]}


#: Named pipelines. Training presets range wider than the eval families they are judged on
#: (eval: JPEG 50-90, MTF 0.3-0.45 with noise, nearest at 1 and 0.82-1.18 x the scale), so
#: that they are not centred on any one test.
PRESETS: dict[str, dict[str, Any]] = {
    "bicubic": {
        "description": "anti-aliased bicubic downscale (what every model before 0.2 saw)",
        "steps": [{"downscale": {"method": "bicubic"}}],
    },
    "sensor": _sensor_like("optics PSF (MTF 0.2-0.6 at LR Nyquist), detector area average, "
                           "read + shot noise", [0.2, 0.6], [0.0, 0.012], [0.0, 0.02]),
    "realistic": {
        "description": "a randomised mix: optional PSF blur, bicubic / area / nearest "
                       "(integer and reprojection-like non-integer) resampling, optional "
                       "noise and JPEG 30-95",
        "order": "random",
        "steps": [
            {"blur": {"mtf": [0.15, 0.7], "p": 0.6}},
            {"one_of": [
                {"weight": 3, "steps": [{"downscale": {"method": "bicubic"}}]},
                {"weight": 3, "steps": [{"downscale": {"method": "area"}}]},
                {"weight": 1.5, "steps": [{"downscale": {"method": "nearest"}}]},
                {"weight": 1.5, "steps": [{"downscale": {"method": "nearest",
                                                         "ratio": [0.625, 1.5]}},
                                          {"resize": {"method": "nearest"}}]},
                {"weight": 1, "steps": [{"downscale": {"method": "area",
                                                       "ratio": [0.625, 1.5]}},
                                        {"resize": {"method": "bilinear"}}]},
            ]},
            {"noise": {"read": [0.0, 0.015], "shot": [0.0, 0.025], "p": 0.5}},
            {"jpeg": {"quality": [30, 95], "p": 0.4}},
        ],
    },
    # The evaluation families (fixed structure, parameters drawn per chip from the seed).
    "jpeg": {
        "description": "bicubic downscale, then JPEG quality 50-90",
        "steps": [{"downscale": {"method": "bicubic"}}, {"jpeg": {"quality": [50, 90]}}],
    },
    "blur-noise": _sensor_like("sensor-like: PSF (MTF 0.3-0.45 at LR Nyquist), area average, "
                               "read noise 0.3-0.8 % and shot noise 0.5-1.5 % of the band "
                               "range", [0.3, 0.45], [0.003, 0.008], [0.005, 0.015]),
    "nearest": {
        "description": "nearest-neighbour decimation by the scale",
        "steps": [{"downscale": {"method": "nearest"}}],
    },
    "nearest-reproject": {
        "description": "nearest decimation by a non-integer factor (0.82-1.18 x the scale), then "
                       "nearest resampling to the LR grid, as a reprojection does",
        "steps": [{"downscale": {"method": "nearest", "ratio": [0.82, 1.18]}},
                  {"resize": {"method": "nearest"}}],
    },
}

#: The families `satsr eval --degradation families` scores, in table order.
EVAL_FAMILIES = ("bicubic", "jpeg", "blur-noise", "nearest", "nearest-reproject")


def describe_presets() -> list[tuple[str, str]]:
    """(name, description) of every preset, for help texts and `satsr models`."""
    return [(k, str(v.get("description", ""))) for k, v in PRESETS.items()]
