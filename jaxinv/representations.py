"""Named representations for the engine: 'hog', 'hogb', 'dsift' (grey, as in the papers)."""
from __future__ import annotations

import functools

import numpy as np

from jaxinv.preimage import Representation

HAND_CRAFTED = ("hog", "hogb", "dsift")
GREY_MEAN = (128.0,)


def names() -> tuple[str, ...]:
    return HAND_CRAFTED


@functools.lru_cache(maxsize=None)
def get(name: str, *, cell_size: int = 8) -> Representation:
    """The representation called `name`, with cell (bin) size `cell_size` as in the papers (8).

    Cached: the same name gives the same (immutable) object, so its compiled steps are reused."""
    from jaxinv import features

    if name in ("hog", "hogb"):
        bilinear = name == "hogb"
        return Representation(name, lambda x: features.hog(x[..., 0], cell_size, bilinear=bilinear),
                              channels=1, mean=GREY_MEAN, stride=cell_size, min_size=2 * cell_size)
    if name == "dsift":
        return Representation(name, lambda x: features.dsift(x[..., 0], bin_size=cell_size, step=cell_size),
                              channels=1, mean=GREY_MEAN, stride=cell_size, min_size=4 * cell_size)
    raise ValueError(f"unknown representation {name!r}; valid representations: {', '.join(names())}")


def render(name: str, code, *, image_shape=None, cell_size: int = 8) -> np.ndarray:
    """A picture of a code of representation `name` in [0, 255]: HOG glyphs or DSIFT stars."""
    from jaxinv import features

    if name in ("hog", "hogb"):
        return features.render_hog(np.asarray(code))
    if name == "dsift":
        return features.render_dsift(np.asarray(code), bin_size=cell_size, step=cell_size, image_shape=image_shape)
    raise ValueError(f"unknown representation {name!r}; valid representations: {', '.join(names())}")
