"""Shared fixtures: the real test rasters (tests/data) and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ["SATSR_SHARED_DATA"]) if os.environ.get("SATSR_SHARED_DATA") \
    else FIXTURES
#: The TID2013 LPIPS reference pairs: not ours to redistribute, so never shipped.
TID2013 = [p / "lpips_pairs" for p in (SHARED, ROOT.parent / "shared" / "data")]

torch.set_num_threads(min(2, os.cpu_count() or 1))
# progress lines (every 30 s where stderr is not a terminal) would interleave with the one-line
# errors tests read on a slow machine; tests/test_issue19_results.py checks them itself
os.environ.setdefault("SATSR_PROGRESS_EVERY", "0")


@pytest.fixture(scope="session")
def shared() -> Path:
    """The folder of real test rasters: tests/data, or $SATSR_SHARED_DATA when set.

    A missing folder (or file) fails the test: the data ships with the repository.
    """
    if not SHARED.is_dir():
        pytest.fail(f"test data folder not found: {SHARED} (tests/data ships with the "
                    f"repository; $SATSR_SHARED_DATA={os.environ.get('SATSR_SHARED_DATA')!r})")
    return SHARED


@pytest.fixture(scope="session")
def tid2013_pairs() -> Path:
    """The TID2013 pairs with published LPIPS values; the one data-dependent skip."""
    for path in TID2013:
        if path.is_dir():
            return path
    pytest.skip(f"TID2013 LPIPS pairs not found at {TID2013[-1]}: those images are not ours "
                f"to redistribute, so they do not ship in tests/data")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and busy shared cores lose a lot to them:
    the modules that train or run tiny networks use this (pytestmark / autouse)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vgg_file(tmp_path_factory) -> Path:
    """A VGG19-shaped state dict (random tensors, torchvision's key layout, one extra key as
    torchvision files have)."""
    from satsr.nn.vgg import VGG19Features

    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) * 0.05 for k, v in VGG19Features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # extra keys are ignored, as in torchvision
    torch.save(state, path)
    return path
