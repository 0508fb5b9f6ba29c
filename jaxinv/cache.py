"""Where jaxinv's caches live: every cache (the decoded CIFAR-10 set, activation maxima, trained
inverters, the HOGgle dictionary) is under `cache_root()`."""
from __future__ import annotations

import os


def cache_root() -> str:
    """$XDG_CACHE_HOME/jaxinv, or ~/.cache/jaxinv when XDG_CACHE_HOME is unset, empty or relative
    (the XDG base directory specification ignores relative paths)."""
    cache_home = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache_home):
        cache_home = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "jaxinv")
