"""Φ's networks for each GCN variant: the module Φ comes from (the variant table is
satsr.nn.variants, re-exported here).

A variant says what Φ is (identity, a random trunk, a trained trunk, VGG) and which networks
are trained in Φ's step; `PhiNetworks` holds those networks (trunk, discriminator head,
decoder) and computes Φ's training loss. The generator's losses are in satsr.training.losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from satsr.nn.decoder import AutoEncoder
from satsr.nn.discriminator import Discriminator, Trunk
from satsr.nn.variants import VARIANTS as VARIANTS
from satsr.nn.variants import Variant as Variant
from satsr.nn.variants import get_variant as get_variant


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
