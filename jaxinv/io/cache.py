"""Where jaxinv's caches live and how cached results are keyed: every cache (the decoded CIFAR-10
set, activation maxima, trained inverters, the HOGgle dictionary) is under `cache_root()`; a cached
result (activation maxima, a deep study's units) records the `checkpoints.weights_fingerprint` of the network
and the `images_fingerprint` of the images it was computed from."""
from __future__ import annotations

import hashlib
import os

import numpy as np


def cache_root() -> str:
    """$XDG_CACHE_HOME/jaxinv, or ~/.cache/jaxinv when XDG_CACHE_HOME is unset, empty or relative
    (the XDG base directory specification ignores relative paths)."""
    cache_home = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache_home):
        cache_home = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "jaxinv")


def images_fingerprint(images) -> str:
    """SHA-256 (hex) of a stack of images taken as float32 (a uint8 and a float32 copy of one image
    set agree), shape included."""
    array = np.ascontiguousarray(np.asarray(images, np.float32))
    digest = hashlib.sha256(f"{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
