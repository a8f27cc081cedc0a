"""Resuming a training run: the checks a resume must pass, and the checkpoint's state.

`check_resumed_config` and `check_resumed_data` refuse, in one line, a resume that would
change what the run trains or measures; `state_dict` is what checkpoint.pt holds (everything
needed to continue exactly) and `load_state` restores it into a Trainer
(satsr.training.loop).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

from satsr.errors import SatsrError
from satsr.training.config import CHANGEABLE_ON_RESUME, TrainConfig
from satsr.training.rundir import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, rng_state, set_rng_state

if TYPE_CHECKING:
    from satsr.training.loop import Trainer


def check_resumed_config(t: Trainer, ckpt: dict[str, Any]) -> None:
    """Refuse, in one line, a resume that changes what the run trains or measures.

    Every option outside CHANGEABLE_ON_RESUME must equal the checkpoint's (a key an older
    checkpoint lacks counts as its default), and so must the number of processes: the
    global batch is batch_size x processes.
    """
    saved = ckpt["config"]
    changed = []
    for f in fields(TrainConfig):
        if f.name in CHANGEABLE_ON_RESUME:
            continue
        before = saved.get(f.name, f.default)
        now = getattr(t.cfg, f.name)
        if before != now:
            changed.append((f.name, before, now))
    if changed:
        names = ", ".join(n for n, _, _ in changed)
        was = ", ".join(f"{n}={b!r}" for n, b, _ in changed)
        given = ", ".join(f"{n}={a!r}" for n, _, a in changed)
        raise SatsrError(f"cannot change {names} of a resumed run ({t.run_dir} was "
                         f"trained with {was}; given {given}); only "
                         f"{', '.join(CHANGEABLE_ON_RESUME[2:])} may change",
                         option=(*(n for n, _, _ in changed), *CHANGEABLE_ON_RESUME))
    world = int(ckpt.get("sampler", {}).get("world", t.dist.world))
    if world != t.dist.world:
        raise SatsrError(f"cannot resume {t.run_dir} on {t.dist.world} process(es): "
                         f"it was trained on {world} (the global batch would change)")


def check_resumed_data(t: Trainer, ckpt: dict[str, Any]) -> None:
    """Refuse a resume on a dataset of other bands, dtype or train split."""
    n = len(t.train_chips)
    if int(ckpt["bands"]) != t.bands or str(ckpt.get("dtype")) != t.index.dtype:
        raise SatsrError(
            f"dataset {t.index.root} has {t.bands} {t.index.dtype} bands but "
            f"the resumed run was trained on {ckpt['bands']} {ckpt.get('dtype')} bands")
    split = ckpt.get("train_split")  # absent from older checkpoints
    now = train_split(t)
    if split is not None and (split["chips"] != now["chips"] or (
            split.get("content", now["content"]) != now["content"]) or (
            "content" not in split and split.get("digest") != now["digest"])):
        raise SatsrError(
            f"dataset {t.index.root} does not hold the train split the resumed run "
            f"was trained on ({split['chips']} chips then, {n} now, or other chips)")


def train_split(t: Trainer) -> dict[str, Any]:
    """Identity of the train split: chip count and a digest of the chips' relative paths.

    Lets a resume accept a moved dataset (`data` may change) but not a different one.
    """
    names = "\n".join(os.path.relpath(c, t.index.root) for c in t.train_chips)
    # what each chip holds: its source raster (by name) and window; a dataset cut from
    # other rasters, or elsewhere in them, is another dataset whatever its file names
    content = "\n".join(f"{os.path.relpath(c.path, t.index.root)}|"
                        f"{os.path.basename(c.source)}|{list(c.window)}"
                        for c in t.index.split("train"))
    return {"chips": len(t.train_chips),
            "digest": hashlib.sha256(names.encode()).hexdigest(),
            "content": hashlib.sha256(content.encode()).hexdigest()}


def state_dict(t: Trainer) -> dict[str, Any]:
    """Everything needed to continue exactly (tensors, lists, dicts: weights_only-safe)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        **t.model.state_dict(),
        "config": asdict(t.cfg),
        "variant": t.cfg.variant,
        "bands": t.bands,
        "dtype": t.index.dtype,
        "scaling": t.scaling.to_dict(),
        "rng": rng_state(),
        "sampler": {"seed": t.cfg.seed, "next_iteration": t.iteration,
                    "world": t.dist.world, "batch_size": t.cfg.batch_size},
        "train_split": train_split(t),
        "elapsed_s": t.elapsed(),
        "selection": t.selection.state_dict(),
        "best_generator": t.validator.best_state,
        "best_scores": t.validator.best_scores,
        "baseline": t.validator.baseline,
        "init_from": t.init_from,
    }


def load_state(t: Trainer, state: dict[str, Any]) -> None:
    """Restore the model, RNG states and selection from a checkpoint."""
    try:
        t.model.load_state_dict(state)
        set_rng_state(state["rng"])
        t._elapsed_before = float(state.get("elapsed_s", 0.0))
        if state.get("selection") is not None:
            t.selection.load_state_dict(state["selection"])
        t.validator.best_state = state.get("best_generator")
        t.validator.best_scores = state.get("best_scores")
        t.validator.baseline = state.get("baseline")
        t.init_from = state.get("init_from")
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SatsrError(f"{t.rundir.checkpoint} does not fit this run's networks "
                         f"({first[:200]})") from None
