"""The one registry of named representations, for the pre-image engine and the learned inverters alike.

`get(name)` resolves

- "hog", "hogb", "dsift": VLFeat-exact HOG (UoCTTI), bilinear-orientation HOG and dense SIFT of the
  grey image, differentiable (cell / bin size 8 by default, as in the papers);
- "lbp", "sift": VLFeat's uniform LBP (cell 16) and sparse SIFT keypoints (cell 4), computed on the
  host (`traceable` False: no gradient, inverted by learned inverters only);
- "NET:LAYER", e.g. "cifar-ref:pool2": layer LAYER of the network `jaxinv.nets.load(NET)` (a shipped
  name or a network directory) on RGB images;
- "NET:L1,L2,...": the Gram code of several layers (texture synthesis, `jaxinv.methods.texture`).

Grey representations take (H, W, 1) images with mean 128; networks (H, W, 3) with their RGB mean.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from jaxinv.engine.representation import Representation

DIFFERENTIABLE = ("hog", "hogb", "dsift")
HOST = ("lbp", "sift")
GREY_MEAN = (128.0,)
DEFAULT_CELL = {"hog": 8, "hogb": 8, "dsift": 8, "lbp": 16, "sift": 4}
MIN_CELLS = {"hog": 2, "hogb": 2, "dsift": 4, "lbp": 1, "sift": 1}


def names() -> tuple[str, ...]:
    """The hand-crafted representations the engine inverts by optimisation (the host features
    `HOST` have no gradient); networks are "NET:LAYER" (see the module docstring)."""
    return DIFFERENTIABLE


@dataclasses.dataclass(frozen=True)
class GreyFeature:
    """apply(params, x) of a hand-crafted feature of a grey image (H, W, 1) in [0, 255]; HOG, HOGb
    and DSIFT (bin = step = cell) in jnp, LBP and sparse SIFT (seed 0) on the host in numpy."""
    name: str
    cell_size: int

    def __call__(self, params, x):
        from jaxinv import features

        del params  # hand-crafted: no weights
        grey = x[..., 0]
        if self.name == "dsift":
            return features.dsift(grey, bin_size=self.cell_size, step=self.cell_size)
        if self.name == "lbp":
            return np.asarray(features.lbp(np.asarray(grey, np.float32), cell_size=self.cell_size))
        if self.name == "sift":
            return features.sparse_sift(np.asarray(grey, np.float32), cell=self.cell_size, seed=0)
        return features.hog(grey, self.cell_size, bilinear=self.name == "hogb")


def get(name: str, *, cell_size: int | None = None, input_size: int | None = None) -> Representation:
    """The representation called `name` (see the module docstring). `cell_size` overrides a
    hand-crafted feature's cell; `input_size` (square, pixels) a network's input size, for layers
    that run on other sizes. Equal arguments give equal representations (shared compiled steps)."""
    if not isinstance(name, str):
        raise ValueError(f"a representation name is a string; got {name!r}")
    if name in DEFAULT_CELL:
        cell = DEFAULT_CELL[name] if cell_size is None else int(cell_size)
        return Representation(name, GreyFeature(name, cell), channels=1, mean=GREY_MEAN, stride=cell,
                              min_size=MIN_CELLS[name] * cell, traceable=name in DIFFERENTIABLE)
    if ":" in name:
        return _network(name, input_size)
    raise ValueError(f"unknown representation {name!r}; valid representations: {', '.join(DIFFERENTIABLE + HOST)} "
                     "or NET:LAYER (e.g. 'cifar-ref:pool2')")


@functools.lru_cache(maxsize=8)
def _load(net: str):
    """Networks by name or directory, loaded once per process (loading verifies the weights)."""
    from jaxinv import nets

    return nets.load(net)


def _network(name: str, input_size: int | None) -> Representation:
    from jaxinv.methods import texture
    from jaxinv.nets import taps

    net, _, layers = name.partition(":")
    if not net or not layers:
        raise ValueError(f"a network representation is 'NET:LAYER' (e.g. 'cifar-ref:pool2'); got {name!r}")
    model = _load(net)
    chosen = layers.split(",")
    if len(chosen) == 1:
        return dataclasses.replace(taps.representation(model, chosen[0], input_size), name=name)
    return dataclasses.replace(texture.gram_representation(model, chosen, input_size=input_size), name=name)


def render(name: str, code, *, image_shape=None, cell_size: int = 8) -> np.ndarray:
    """A picture of a code of representation `name` in [0, 255]: HOG glyphs or DSIFT stars."""
    from jaxinv import features

    if name in ("hog", "hogb"):
        return features.render_hog(np.asarray(code))
    if name == "dsift":
        return features.render_dsift(np.asarray(code), bin_size=cell_size, step=cell_size, image_shape=image_shape)
    raise ValueError(f"cannot render representation {name!r}; renderable: hog, hogb, dsift")
