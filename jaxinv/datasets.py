"""Which images of a dataset are used: the one rule for taking a subset of a set stored sorted by
class (CIFAR-10)."""
from __future__ import annotations

import numpy as np


def evenly_spaced(total: int, num: int | None = None) -> np.ndarray:
    """`num` (default: all) ascending indices spread evenly over range(total): i * total // num for
    i < num, up to rounding. CIFAR-10's files are sorted by class, so a prefix would hold one class
    only. Callers that take "at most num" pass min(num, total)."""
    if num is None:
        num = total
    if not 1 <= num <= total:
        raise ValueError(f"cannot take {num} of {total} items: need 1 <= num <= {total}")
    return np.linspace(0, total, num, endpoint=False).astype(int)
