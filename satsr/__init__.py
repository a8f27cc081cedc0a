"""satsr: super-resolution of satellite and aerial imagery (Generative Collaborative Networks)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("satsr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
