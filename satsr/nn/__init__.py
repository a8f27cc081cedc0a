"""Every network architecture: generator, discriminator trunk + head, decoder, Φ, VGG."""

from satsr.nn.decoder import AutoEncoder, Decoder
from satsr.nn.discriminator import Discriminator, Trunk
from satsr.nn.generator import Generator

__all__ = ["AutoEncoder", "Decoder", "Discriminator", "Generator", "Trunk"]
