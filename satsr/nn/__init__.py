"""Every network architecture: generator, discriminator trunk + head, decoder, Φ, VGG, and
the backbone weights they load (satsr.nn.weights).

The networks are imported on first use (PEP 562), so torch-free modules of this package
(satsr.nn.variants, satsr.nn.weights) load without torch: `satsr --help` lists variant names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from satsr.lazy import lazy_names

#: Public name -> the module that defines it (imported on first access).
_LAZY = {
    "AutoEncoder": "satsr.nn.decoder",
    "Decoder": "satsr.nn.decoder",
    "Discriminator": "satsr.nn.discriminator",
    "Trunk": "satsr.nn.discriminator",
    "Generator": "satsr.nn.generator",
}

__all__ = ["AutoEncoder", "Decoder", "Discriminator", "Generator", "Trunk"]

if TYPE_CHECKING:
    from satsr.nn.decoder import AutoEncoder, Decoder
    from satsr.nn.discriminator import Discriminator, Trunk
    from satsr.nn.generator import Generator


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
