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

import torch
from torch import nn

from satsr.nn.discriminator import Discriminator
from satsr.nn.phi import PhiNetworks, Variant, bce, mse


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
