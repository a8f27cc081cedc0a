"""Φ's networks for each GCN variant: the variant table and the module Φ comes from.

A variant says what Φ is (identity, a random trunk, a trained trunk, VGG) and which networks
are trained in Φ's step; `PhiNetworks` holds those networks (trunk, discriminator head,
decoder) and computes Φ's training loss. The generator's losses are in satsr.training.losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from satsr.nn.decoder import AutoEncoder
from satsr.nn.discriminator import Discriminator, Trunk


@dataclass(frozen=True)
class Variant:
    """What a GCN variant trains and how its generator loss is built."""

    name: str
    phi: str  # "identity" | "random" | "trunk" | "vgg"
    discriminator: bool  # a discriminator is trained in Φ's step
    autoencoder: bool  # an auto-encoder is trained in Φ's step
    adversarial: bool  # the generator loss has λ2 x BCE(D(ŷ), 1)

    @property
    def trains_phi(self) -> bool:
        """Whether there is a Φ-network step before each generator step."""
        return self.discriminator or self.autoencoder

    @property
    def has_trunk(self) -> bool:
        """Whether a Trunk (random Φ, encoder or discriminator) exists."""
        return self.phi in ("random", "trunk") or self.trains_phi

    @property
    def phi_is_trunk(self) -> bool:
        """Whether Φ is the first blocks of the (trained or random) trunk."""
        return self.phi in ("random", "trunk")


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("mse", "identity", False, False, False),
    Variant("ran", "random", False, False, False),
    Variant("rec", "trunk", False, True, False),
    Variant("cla", "vgg", False, False, False),
    Variant("dis", "trunk", True, False, False),
    Variant("adv", "trunk", True, False, True),
    Variant("dis+rec", "trunk", True, True, False),
    Variant("adv+rec", "trunk", True, True, True),
    Variant("adv+mse", "identity", True, False, True),
    Variant("adv+cla", "vgg", True, False, True),
)}


def get_variant(name: str) -> Variant:
    """The Variant called `name` (ValueError listing the valid names otherwise)."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r} (one of {', '.join(VARIANTS)})") from None


def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE-with-logits of a patch of logits against an all-real / all-fake target."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error, computed in float32 (also under bf16 autocast)."""
    return F.mse_loss(a.float(), b.float())


class PhiNetworks(nn.Module):
    """The networks Φ comes from for one variant: a trunk, a discriminator head, a decoder.

    The trunk is shared: `disc` and `ae` hold the same Trunk object. `forward(real, fake)` is
    Φ's training loss (one call, so DistributedDataParallel can wrap this module).
    """

    def __init__(self, variant: Variant, bands: int) -> None:
        super().__init__()
        self.variant = variant
        self.trunk = Trunk(bands)
        self.disc = Discriminator(bands, trunk=self.trunk) if variant.discriminator else None
        self.ae = AutoEncoder(bands, trunk=self.trunk) if variant.autoencoder else None
        if not variant.trains_phi:  # `ran`: a random Φ that never changes
            self.requires_grad_(False)

    def forward(self, real: torch.Tensor, fake: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Φ-network loss on real HR and (detached) generated images, and its parts."""
        parts: dict[str, torch.Tensor] = {}
        z_real = self.trunk(real)
        if self.disc is not None:
            z_fake = self.trunk(fake)
            parts["d_real"] = bce(self.disc.head(z_real), True)
            parts["d_fake"] = bce(self.disc.head(z_fake), False)
            if self.ae is not None:  # *+rec: reconstruct real AND generated images
                parts["rec_real"] = mse(self.ae.decoder(z_real), real)
                parts["rec_fake"] = mse(self.ae.decoder(z_fake), fake)
        elif self.ae is not None:  # rec: reconstruction of real images only
            parts["rec_real"] = mse(self.ae.decoder(z_real), real)
        total = torch.stack(list(parts.values())).sum()
        return total, parts
