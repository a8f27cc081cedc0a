"""Checks of numeric options shared by several verbs, each made once where the option is
declared (the library function or config that takes it), naming the argument so that the
CLI shows its flag."""

from __future__ import annotations

import math

from satsr.errors import SatsrError

#: Seeds are 0 .. 2**63 - 1: what numpy's and torch's generators (and a JSON reader) all take.
SEED_MAX = 2**63 - 1


def check_seed(seed: int, option: str = "seed") -> int:
    """`seed` if it is an integer from 0 to SEED_MAX, else one line naming `option`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise SatsrError(f"{option} must be a whole number from 0 to {SEED_MAX} (2^63 - 1), "
                         f"not {seed}", option=option)
    return seed


def check_scale(scale: int | None, option: str = "scale") -> int | None:
    """None (the default) or a scale factor satsr has: 2, 4 or 8."""
    if scale is not None and (isinstance(scale, bool) or scale not in (2, 4, 8)):
        raise SatsrError(f"{option} must be 2, 4 or 8, not {scale}", option=option)
    return scale


def check_nodata(nodata: float | None, dtype: str, option: str = "nodata") -> None:
    """A nodata value the data type `dtype` can hold: finite and in range for integers."""
    import numpy as np

    if nodata is None:
        return
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if not math.isfinite(nodata) or nodata != int(nodata) or \
                not info.min <= nodata <= info.max:
            raise SatsrError(f"{option} {nodata:g} is not a {dt.name} value (a whole number "
                             f"from {info.min} to {info.max})", option=option)
    elif dt.kind == "f" and math.isfinite(nodata) and abs(nodata) > np.finfo(dt).max:
        raise SatsrError(f"{option} {nodata:g} is beyond the range of {dt.name}",
                         option=option)
