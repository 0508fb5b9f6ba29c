"""Which images of a dataset are used: the one rule for taking a subset of a set stored sorted by
class (CIFAR-10) and which networks are CIFAR-10 networks."""
from __future__ import annotations

import numpy as np

from jaxinv.nets import cifar10
from jaxinv.nets.model import Model


def evenly_spaced(total: int, num: int | None = None) -> np.ndarray:
    """`num` (default: all) ascending indices spread evenly over range(total): i * total // num for
    i < num, up to rounding. CIFAR-10's files are sorted by class, so a prefix would hold one class
    only. Callers that take "at most num" pass min(num, total)."""
    if num is None:
        num = total
    if not 1 <= num <= total:
        raise ValueError(f"cannot take {num} of {total} items: need 1 <= num <= {total}")
    return np.linspace(0, total, num, endpoint=False).astype(int)


def is_cifar10_network(model: Model) -> bool:
    """True for a network that is shown CIFAR-10 images: a 32x32 input, and CIFAR-10's class names
    or none recorded.

    - The input must be 32x32: CIFAR-10 images are used as they are, never resized, and a network
      of another input size could not take them (whatever its class names).
    - Class names, when the network records them, must be CIFAR-10's: a 32 px network of another
      dataset (CIFAR-100, SVHN, ...) is not a CIFAR-10 network.
    - A 32 px network without class names (converted from a checkpoint that did not record them)
      counts as CIFAR-10's: 32 px natural images are the closest match jaxinv has.
    """
    return model.input_size == 32 and (not model.class_names or list(model.class_names) == cifar10.CLASS_NAMES)
