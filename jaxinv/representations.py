"""Named representations for the engine: 'hog', 'hogb', 'dsift' (grey, as in the papers)."""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxinv.representation import Representation

HAND_CRAFTED = ("hog", "hogb", "dsift")
GREY_MEAN = (128.0,)


def names() -> tuple[str, ...]:
    return HAND_CRAFTED


def get(name: str, *, cell_size: int = 8) -> Representation:
    """The representation called `name`, with cell (bin) size `cell_size` as in the papers (8).

    Equal names and cell sizes give equal representations, so their compiled steps are reused."""
    if name in HAND_CRAFTED:
        return Representation(name, GreyFeature(name, cell_size), channels=1, mean=GREY_MEAN, stride=cell_size,
                              min_size=(4 if name == "dsift" else 2) * cell_size)
    raise ValueError(f"unknown representation {name!r}; valid representations: {', '.join(names())}")


@dataclasses.dataclass(frozen=True)
class GreyFeature:
    """apply(params, x) of HOG, HOGb or DSIFT (bin = step = cell_size) on a grey image (H, W, 1)."""
    name: str
    cell_size: int

    def __call__(self, params, x):
        from jaxinv import features

        del params  # hand-crafted: no weights
        if self.name == "dsift":
            return features.dsift(x[..., 0], bin_size=self.cell_size, step=self.cell_size)
        return features.hog(x[..., 0], self.cell_size, bilinear=self.name == "hogb")


def render(name: str, code, *, image_shape=None, cell_size: int = 8) -> np.ndarray:
    """A picture of a code of representation `name` in [0, 255]: HOG glyphs or DSIFT stars."""
    from jaxinv import features

    if name in ("hog", "hogb"):
        return features.render_hog(np.asarray(code))
    if name == "dsift":
        return features.render_dsift(np.asarray(code), bin_size=cell_size, step=cell_size, image_shape=image_shape)
    raise ValueError(f"unknown representation {name!r}; valid representations: {', '.join(names())}")
