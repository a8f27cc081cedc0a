"""`satsr evaluate` (being built)."""

from satsr.errors import SatsrError


def command() -> None:
    """Not available yet."""
    raise SatsrError("this verb is not built yet")
