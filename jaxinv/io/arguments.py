"""Checks of the numbers a caller passes in, shared by the library's entry points and the binaries' flags: each
gives a ValueError naming the argument, before any work."""
from __future__ import annotations

import math
import numbers

MAX_SEED = 2 ** 63 - 1
"""Seeds are integers in [0, MAX_SEED]: what jax.random.key (int64) and numpy's generators (non-negative) both
take."""


def check_seed(seed) -> int:
    """`seed` as an int if it is an integer in [0, MAX_SEED]; else a ValueError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2^63 - 1]; got {seed!r}")
    return int(seed)


def check_count(name: str, value, minimum: int = 1, optional: bool = False) -> int | None:
    """`value` as an int if it is an integer >= `minimum` (restarts, images, a batch size, iterations), or None
    when `optional` (a default chosen later); else a ValueError naming `name`."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_positive(name: str, value) -> float:
    """`value` as a float if it is a positive finite number (a learning rate, a width); else a ValueError naming
    `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)
