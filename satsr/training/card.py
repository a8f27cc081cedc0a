"""The model card: the metadata training writes into RUN/model.safetensors.

What a model was trained on and how (variant, bands, scaling, degradation, the selected
round and its scores, the dataset), read back by satsr.inference.modelfile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from satsr.training.loop import Trainer


def model_metadata(t: Trainer) -> dict[str, Any]:
    """Metadata of RUN/model.safetensors (see satsr.inference.modelfile)."""
    gsd = t.index.gsd_range
    return {
        "variant": t.cfg.variant,
        "scale": t.cfg.scale,
        "bands": t.bands,
        "source_bands": t.index.meta.get("bands"),
        "dtype": t.index.dtype,
        "scaling": t.scaling.to_dict(),
        "gsd_range": list(gsd) if gsd else None,
        "iterations": t.iteration,
        "phi_depth": t.cfg.phi_depth,
        # trained on band samples (satsr.data.bandsamples): one band at a time, any sensor
        "bandwise": bool(t.index.meta.get("band_samples")),
        "degradation": t.model.degradation.to_dict(),
        "selection": {"criterion": t.cfg.select, "psnr_floor": t.cfg.psnr_floor,
                      "iteration": (t.iteration if t.exports_latest
                                    else t.selection.best_iteration),
                      "scores": None if t.exports_latest else t.validator.best_scores,
                      "bicubic": t.validator.baseline},
        "ema": t.cfg.ema or None,
        "init_from": t.init_from,
        **({"vgg_net": t.cfg.vgg_net} if t.variant.phi == "vgg" else {}),
        "data": {
            "dataset": str(t.index.root),
            "train_chips": len(t.train_chips),
            "val_chips": len(t.val_chips),
            "chip_size": list(t.chip_hw),
            "hr_size": t.cfg.hr_size,
            "sources": sorted({c.source for c in t.index.chips})[:20],
            "crs": sorted({c.crs for c in t.index.chips if c.crs})[:20],
        },
    }
