"""The run folder of `satsr train`: what is written where, and reading it back.

    RUN/config.yaml          the effective configuration (defaults < --config FILE < CLI)
    RUN/checkpoint.pt        the latest training state, written atomically every
                             --checkpoint-every iterations and at the end: every network,
                             optimizer, the iteration, RNG states, config, band scaling.
                             Plain tensors / lists / dicts: loads with weights_only=True.
    RUN/model.safetensors    generator + metadata for `satsr upscale` / `satsr eval`
                             (rewritten with every checkpoint)
    RUN/log.csv              every loss term of every iteration
    RUN/val.csv              PSNR and L2 (MSE in [-1, 1] units) on the val split
    RUN/val_bicubic.json     bicubic's scores on the same val crops
    RUN/visualization/       iter_NNNNNN.png: LR (nearest) | SR | HR rows of val chips
    RUN/losses.png           loss curves, drawn at the end

`RunDir(path)` touches nothing; `check` only reads; `prepare` and the write methods write
(rank 0 only: the loop calls them on the writing process).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from satsr.data.raster import atomic_path
from satsr.errors import SatsrError
from satsr.inference.modelfile import save_model
from satsr.nn.generator import Generator
from satsr.training.config import CONFIG_NAME, TrainConfig

# Deferred import: matplotlib (slow to import), only for the loss plot at the end of a run.

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.safetensors"
CHECKPOINT_FORMAT = "satsr-train-checkpoint"
CHECKPOINT_VERSION = 1
#: Columns of RUN/val.csv (LPIPS cells are empty where they cannot be computed).
VAL_COLUMNS = ["iteration", "psnr", "l2", "alex-l", "vgg-l", "pe-l"]
#: Files and folders a satsr run folder may hold (what --overwrite is allowed to delete).
RUN_MARKERS = (CONFIG_NAME, CHECKPOINT_NAME, "log.csv", MODEL_NAME)


def write_config(cfg: TrainConfig, path: Path) -> None:
    """The effective configuration as YAML (readable back with --config)."""
    with atomic_path(path) as tmp:
        tmp.write_text("# satsr train: effective configuration\n"
                       + yaml.safe_dump(asdict(cfg), sort_keys=False))


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors / lists (weights_only-loadable)."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() saved."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):
            torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, loaded without running code; one clear error otherwise."""
    p = Path(path)
    if not p.is_file():
        raise SatsrError(f"no checkpoint to resume: {p} does not exist")
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, unpickling refused, truncated file...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SatsrError(f"{p} is corrupt or not a satsr training checkpoint ({first[:200]})"
                         ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SatsrError(f"{p} is not a satsr training checkpoint")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise SatsrError(f"{p} was written by a newer satsr (checkpoint version "
                         f"{state['version']})")
    for key in ("iteration", "config", "generator", "opt_g", "scaling", "bands", "rng"):
        if key not in state:
            raise SatsrError(f"{p} is an incomplete satsr checkpoint (no {key!r})")
    return state


class RunDir:
    """One run folder: its checks, its files, and the list of files this session wrote."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.written: list[Path] = []

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def note(self, *paths: Path) -> None:
        """Record files this session wrote (TrainResult.written)."""
        for p in paths:
            if p not in self.written:
                self.written.append(p)

    def check(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        """Refuse to clobber a run; load the checkpoint for a resume. Read-only."""
        run = self.path
        if run.exists() and not run.is_dir():
            raise SatsrError(f"run folder {run} exists and is not a folder")
        if resume:
            if run.is_dir() and not self.checkpoint.exists() and \
                    any((run / m).exists() for m in RUN_MARKERS):
                raise SatsrError(f"run {run} stopped before its first checkpoint: there is "
                                 f"nothing to resume; start it again with overwrite",
                                 option=("overwrite",))
            return load_checkpoint(self.checkpoint)
        if run.is_dir() and any(run.iterdir()):
            if not overwrite and not self.checkpoint.exists():
                raise SatsrError(f"run folder {run} is not empty and holds no checkpoint to "
                                 f"resume (use overwrite to start it again)",
                                 option="overwrite")
            if not overwrite:
                raise SatsrError(f"run folder {run} is not empty (use resume to continue it "
                                 "or overwrite to start again)", option=("resume", "overwrite"))
            if not any((run / m).exists() for m in RUN_MARKERS):
                raise SatsrError(f"{run} is not empty and does not look like a satsr run: "
                                 "refusing to delete it with overwrite", option="overwrite")
        # a missing parent is made when the run starts; an unwritable place is refused now
        parent = run.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise SatsrError(f"cannot make run folder {run}: {parent} is not a folder",
                             option="out")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise SatsrError(f"cannot make run folder {run}: no write permission in {parent}",
                             option="out")
        return None

    def prepare(self, cfg: TrainConfig, loss_names: Sequence[str], *, fresh: bool,
                keep_until: int | None) -> None:
        """Create (or clean, with `fresh`) the folder, write config.yaml, and start log.csv
        and val.csv (keeping rows up to `keep_until` of a resumed run)."""
        run = self.path
        if fresh and run.is_dir():
            shutil.rmtree(run)
        (run / "visualization").mkdir(parents=True, exist_ok=True)
        write_config(cfg, run / CONFIG_NAME)
        self._trim_csv(run / "log.csv", ["iteration", "elapsed_s", *loss_names], keep_until)
        self._trim_csv(run / "val.csv", VAL_COLUMNS, keep_until)

    @staticmethod
    def _trim_csv(path: Path, header: list[str], keep_until: int | None) -> None:
        """Start a CSV with `header`, or keep only rows up to the resumed iteration."""
        rows: list[list[str]] = []
        if keep_until is not None and path.is_file():
            with path.open(newline="") as f:
                reader = csv.reader(f)
                old = next(reader, None)
                if old == header:
                    rows = [r for r in reader if r and int(r[0]) <= keep_until]
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    def log_losses(self, rows: Sequence[tuple[int, Sequence[float]]], elapsed: float) -> None:
        """Append (iteration, loss values) rows to log.csv."""
        stamp = f"{elapsed:.3f}"
        with (self.path / "log.csv").open("a", newline="") as f:
            csv.writer(f).writerows([[i, stamp, *(f"{v:.6g}" for v in r)] for i, r in rows])
        self.note(self.path / "log.csv")

    def log_val(self, rec: dict[str, float]) -> None:
        """Append one validation round to val.csv (empty cells for missing scores)."""
        cells = [str(int(rec["iteration"])), f"{rec['psnr']:.6f}", f"{rec['l2']:.8g}"]
        cells += [f"{rec[k]:.6f}" if k in rec else "" for k in VAL_COLUMNS[3:]]
        with (self.path / "val.csv").open("a", newline="") as f:
            csv.writer(f).writerow(cells)
        self.note(self.path / "val.csv")

    def write_baseline(self, scores: dict[str, float]) -> None:
        """val_bicubic.json: bicubic's val scores."""
        path = self.path / "val_bicubic.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(scores, indent=1) + "\n")
        self.note(path)

    def write_triples(self, iteration: int, lr: torch.Tensor, sr: torch.Tensor,
                      hr: torch.Tensor, scale: int) -> None:
        """visualization/iter_NNNNNN.png of the first val crops."""
        png = self.path / "visualization" / f"iter_{iteration:06d}.png"
        save_triples(png, lr, sr, hr, scale=scale)
        self.note(png)

    def save(self, state: dict[str, Any], generator: Generator, meta: dict[str, Any]) -> None:
        """checkpoint.pt (atomic) and model.safetensors."""
        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)
        model = save_model(self.path / MODEL_NAME, generator, meta)
        self.note(self.checkpoint, model)

    def plot(self) -> None:
        """losses.png (drawn when log.csv holds rows)."""
        plot_losses(self.path)
        self.note(self.path / "losses.png")


def _to_rgb(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, 3) uint8: first 3 bands as RGB, or band 1 as grey."""
    x = x.float().clamp(-1, 1)
    x = x[:3] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
    return ((x + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
def save_triples(path: Path, lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor,
                 scale: int, rows: int = 4) -> None:
    """A PNG of rows [LR (nearest) | SR | HR] for the first `rows` images."""
    n = min(rows, len(hr))
    lines = []
    for i in range(n):
        up = torch.repeat_interleave(torch.repeat_interleave(lr[i], scale, 1), scale, 2)
        lines.append(np.concatenate([_to_rgb(up), _to_rgb(sr[i]), _to_rgb(hr[i])], axis=1))
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(lines, axis=0)).save(tmp, format="PNG")


def plot_losses(run: Path) -> Path | None:
    """RUN/losses.png: every loss of log.csv (and val PSNR) against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = run / "log.csv"
    if not log.is_file():
        return None
    with log.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return None
    header, data = rows[0], np.array(rows[1:], dtype=np.float64)
    names = header[2:]
    val, val_names = None, []
    if (run / "val.csv").is_file():
        with (run / "val.csv").open(newline="") as f:
            vrows = list(csv.reader(f))
        if len(vrows) > 1:
            val = np.array([[float(c) if c else np.nan for c in r] for r in vrows[1:]])
            val_names = [n for j, n in enumerate(vrows[0]) if j and n != "l2"
                         and np.isfinite(val[:, j]).any()]
    panels = len(names) + len(val_names)
    cols = min(3, panels)
    nrows = math.ceil(panels / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, (j, name) in zip(axes.flat, enumerate(names), strict=False):
        ax.plot(data[:, 0], data[:, 2 + j], lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("iteration")
    if val is not None:
        header = vrows[0]
        for k, name in enumerate(val_names):
            ax = axes.flat[len(names) + k]
            ax.plot(val[:, 0], val[:, header.index(name)], marker="o")
            ax.set_title("val PSNR (dB)" if name == "psnr" else f"val {name}")
            ax.set_xlabel("iteration")
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.tight_layout()
    out = run / "losses.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
