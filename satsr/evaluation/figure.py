"""The eval verb's figure: the same crop of HR and of every method side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from satsr.errors import SatsrError
from satsr.evaluation.metrics import LPIPS_VARIANTS, to_uint8
from satsr.evaluation.result import EvalResult, _fmt

# Deferred imports: matplotlib is imported by write_figure (see satsr.evaluation.scoring).


def _crops(hr: np.ndarray, preds: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """The same centred crop of HR and every prediction, as (h, w, 3) uint8."""
    h, w = hr.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    out = {"HR": to_uint8(hr[:, y:y + ch, x:x + cw])}
    for m, p in preds.items():
        out[m] = to_uint8(p[:, y:y + ch, x:x + cw])
    return out


def write_figure(result: EvalResult, path: str | Path) -> None:
    """A side-by-side of the same crop for HR and every method, labelled (the paper's Fig. 6)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from satsr.data.raster import atomic_path

    crops = result.figure_crops
    if not crops:
        raise SatsrError("no image to draw the figure from")
    n = len(crops)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.2), squeeze=False)
    s = result.summary()
    # vgg-l first: alex-l alone rewards blockiness (nearest often beats bicubic on it)
    lp = sorted([k for k in result.available if k.endswith("-l")],
                key=lambda k: k != "vgg-l") or [k for k in result.available
                                                 if k in LPIPS_VARIANTS]
    for ax, (label, img) in zip(axes[0], crops.items(), strict=True):
        ax.imshow(img, interpolation="nearest")
        title = label
        if label != "HR" and lp:
            title += f"\n{lp[0]} {_fmt(s[label][lp[0]][0])}"
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    suffix = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=150)
    except ValueError as exc:
        raise SatsrError(f"cannot write figure {path}: {exc}") from exc
    finally:
        plt.close(fig)
