"""Network architectures of the GCN family (see the paper and SRGAN)."""

from satsr.models.decoder import AutoEncoder, Decoder
from satsr.models.discriminator import Discriminator, Trunk
from satsr.models.generator import Generator

__all__ = ["AutoEncoder", "Decoder", "Discriminator", "Generator", "Trunk"]
