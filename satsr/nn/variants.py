"""The GCN variants, declared once: what Φ is and which networks each variant trains.

Free of torch, so that `satsr train --help` lists the variant names without importing it;
satsr.nn.phi builds the networks and re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass


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
