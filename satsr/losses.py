"""The GCN family: what Φ is for each variant and how its two losses are formed.

Notation: x = LR, y = HR (real), ŷ = G(x) (generated), all in [-1, 1].

Generator loss (every variant):  λ1 · mean((Φ(y) − Φ(ŷ))²)  +  λ2 · BCE(D(ŷ), 1)  [adv only]

========  ==========================================  ===========================================
variant   Φ                                           Φ-network loss (one step before each G step)
========  ==========================================  ===========================================
mse       identity (pixel MSE)                        none
ran       first block(s) of a random, frozen trunk    none (Φ never changes)
rec       first block(s) of an auto-encoder's encoder  MSE(AE(y), y)
cla       VGG19 relu5_4 (ImageNet, frozen): SRGAN      none
dis       first block(s) of a discriminator's trunk    BCE(D(y), 1) + BCE(D(ŷ), 0)
adv       as dis, plus λ2 · adversarial for G          as dis
dis+rec   first block(s) of a trunk shared by a        BCE(D(y), 1) + BCE(D(ŷ), 0)
          discriminator and an auto-encoder              + MSE(AE(y), y) + MSE(AE(ŷ), ŷ)
adv+rec   as dis+rec, plus λ2 · adversarial (default)  as dis+rec
adv+mse   identity, plus λ2 · adversarial              BCE(D(y), 1) + BCE(D(ŷ), 0)
adv+cla   VGG19 relu5_4, plus λ2 · adversarial         BCE(D(y), 1) + BCE(D(ŷ), 0)
========  ==========================================  ===========================================

Φ's depth ("first block" in the paper) is `phi_depth` trunk blocks. The discriminator gives
a patch of logits; BCE-with-logits averages over the patch (numerically safe sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from satsr.models import AutoEncoder, Discriminator, Trunk


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


def phi_loss_names(variant: Variant) -> list[str]:
    """Names of the Φ-network loss parts, in the order PhiNetworks.forward returns them."""
    names = []
    if variant.discriminator:
        names += ["d_real", "d_fake"]
        if variant.autoencoder:
            names += ["rec_real", "rec_fake"]
    elif variant.autoencoder:
        names.append("rec_real")
    return names


def generator_loss_names(variant: Variant) -> list[str]:
    """Names of the generator loss parts, in the order generator_loss returns them."""
    return ["g_content"] + (["g_adv"] if variant.adversarial else [])


def _trunk_features_and_logits(disc: Discriminator, x: torch.Tensor, depth: int
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass through the trunk giving Φ(x) (after `depth` blocks) and D(x)."""
    phi = x
    for i, block in enumerate(disc.trunk.blocks):
        x = block(x)
        if i + 1 == depth:
            phi = x
    return phi, disc.head(x)


def generator_loss(variant: Variant, real: torch.Tensor, fake: torch.Tensor,
                   phi_nets: PhiNetworks | None, vgg: nn.Module | None, depth: int = 1,
                   lambda1: float = 1.0, lambda2: float = 1e-3
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """λ1 · mean((Φ(y) − Φ(ŷ))²) [+ λ2 · BCE(D(ŷ), 1)] and its unweighted parts.

    Φ's networks must be frozen by the caller (requires_grad False) so only G gets gradients.
    """
    logits = None
    if variant.phi == "identity":
        content = mse(fake, real)
    elif variant.phi == "vgg":
        assert vgg is not None
        with torch.no_grad():
            target = vgg(real)
        content = mse(vgg(fake), target)
    else:
        assert phi_nets is not None
        with torch.no_grad():
            target = phi_nets.trunk.features(real, depth)
        if variant.adversarial and phi_nets.disc is not None:
            feats, logits = _trunk_features_and_logits(phi_nets.disc, fake, depth)
        else:
            feats = phi_nets.trunk.features(fake, depth)
        content = mse(feats, target)
    parts = {"g_content": content}
    total = lambda1 * content
    if variant.adversarial:
        assert phi_nets is not None and phi_nets.disc is not None
        if logits is None:
            logits = phi_nets.disc(fake)
        parts["g_adv"] = bce(logits, True)
        total = total + lambda2 * parts["g_adv"]
    return total, parts
