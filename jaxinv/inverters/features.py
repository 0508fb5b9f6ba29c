"""The representations a learned inverter inverts, as batched functions of colour images.

`feature_function(name)` gives a `FeatureFunction` for

- "hog": `jaxinv.features.hog` (cell 8) of the grey image (ITU-R 601 luma);
- "lbp": `jaxinv.features.lbp` (cell 16) of the grey image;
- "sift": `jaxinv.features.sparse_sift` (cell 4, seed 0) of the grey image, computed with numpy
  and VLFeat on the host;
- "NET:LAYER", e.g. "cifar-ref:pool2": layer LAYER of the network `jaxinv.nets.load(NET)` (a
  shipped name or a network directory) applied to the colour image as the network sees it
  (`Model.preprocess`, written here with jnp so that it can be differentiated for fine-tuning).

Images are (N, H, W, 3) float arrays in [0, 255] (a grey (N, H, W) batch is repeated to three
channels). Outputs are (N, h, w, C) feature maps or (N, D) vectors.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import features
from jaxinv.images import LUMA

HAND_CRAFTED = ("hog", "lbp", "sift")
HOG_CELL, LBP_CELL, SIFT_CELL = 8, 16, 4


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureFunction:
    """Phi as the inverters use it.

    `fn(params, images)` maps a batch (N, H, W, 3) in [0, 255] to features (N, ...). When
    `traceable`, fn is a JAX function (jit-, vmap- and grad-compatible; `params` are the encoder's
    weights, None for HOG); otherwise it runs on the host image by image (numpy/VLFeat) and
    `params` is None. `family` names the inverter architecture (`architectures.FAMILIES`).
    """
    name: str
    family: str
    grey: bool
    traceable: bool
    fn: Callable[[Any, Any], Any]
    params: Any = None
    fixed_size: int | None = None  # the only image size the representation accepts (fc layers)

    def __call__(self, images, params=None) -> np.ndarray:
        """Features of a batch (N, H, W, 3) or (N, H, W) in [0, 255], as a numpy array."""
        images = as_colour_batch(images, what=f"images for representation {self.name!r}")
        if self.traceable:
            return np.asarray(_jitted(self)(self.params if params is None else params, jnp.asarray(images)))
        return np.asarray(self.fn(None, images), np.float32)

    def shape(self, image_size: int) -> tuple[int, ...]:
        """Feature shape (without the batch axis) of an image_size x image_size image."""
        if self.fixed_size is not None and image_size != self.fixed_size:
            raise ValueError(f"representation {self.name!r} takes {self.fixed_size}x{self.fixed_size} images; "
                             f"got size {image_size}")
        probe = np.full((1, image_size, image_size, 3), 128.0, np.float32)
        probe += np.random.default_rng(0).uniform(-50, 50, probe.shape).astype(np.float32)
        if self.traceable:
            return tuple(jax.eval_shape(lambda x: self.fn(self.params, x), probe).shape[1:])
        return tuple(self(probe).shape[1:])


@functools.lru_cache(maxsize=32)
def _jitted(feature: FeatureFunction):
    return jax.jit(feature.fn)


def as_colour_batch(images, what: str = "images") -> np.ndarray:
    """(N, H, W, 3) float32 from a batch of colour (N, H, W, 3) or grey (N, H, W) images."""
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{what} must be a batch (N, H, W, 3) or (N, H, W); got shape {images.shape}")
    return images


def grey(images):
    """Luma (N, H, W) of (N, H, W, 3) images (jnp, traceable)."""
    return images @ jnp.asarray(LUMA, images.dtype)


def _hog() -> FeatureFunction:
    return FeatureFunction("hog", "hog", grey=True, traceable=True,
                           fn=lambda _, x: jax.vmap(lambda im: features.hog(im, HOG_CELL))(grey(x)))


def _host_feature(name: str, per_image: Callable) -> FeatureFunction:
    """A numpy/VLFeat feature of each grey image, run on the host image by image."""
    def fn(_, x):
        luma = np.asarray(x, np.float32) @ np.asarray(LUMA, np.float32)
        return np.stack([np.asarray(per_image(im)) for im in luma])
    return FeatureFunction(name, name, grey=True, traceable=False, fn=fn)


def preprocess(model, images):
    """`Model.preprocess` in jnp: RGB [0, 255] batch -> the network's input space."""
    from jaxinv.nets import convention

    p = convention.input_params(model.convention, model.mean_image, images.shape)
    return convention.to_network(images, model.convention["channel_order"], model.convention["pixel_range"],
                                 jnp.asarray(p["mean"]), jnp.asarray(p["std"]))


def _network_layer(name: str) -> FeatureFunction:
    from jaxinv import graph, nets
    from jaxinv.nets import layers as net_layers

    net_name, _, layer = name.partition(":")
    if not net_name or not layer:
        raise ValueError(f"a network representation is 'NET:LAYER' (e.g. 'cifar-ref:pool2'); got {name!r}")
    model = nets.load(net_name)
    graph.check_layer_name(model.table, layer, what=f"network {net_name!r}")
    names = graph.layer_names(model.table)
    upto = model.table[: names.index(layer) + 1]
    # fc layers (and adaptive pools before them) fix the input size; convolutional layers do not.
    fixed = model.input_size if any(l.op in (net_layers.fc, net_layers.adaptive_avgpool) for l in upto) else None

    def fn(params, x):
        return model.apply(params, preprocess(model, x), upto=layer)[layer]
    shape = nets.output_shapes(model.table, model.input_size)[layer]
    return FeatureFunction(name, "fc" if len(shape) == 1 else "conv", grey=False, traceable=True, fn=fn,
                           params=jax.tree_util.tree_map(jnp.asarray, model.params), fixed_size=fixed)


@functools.lru_cache(maxsize=16)
def feature_function(name: str) -> FeatureFunction:
    """The representation called `name`: "hog", "lbp", "sift" or "NET:LAYER" (cached per name)."""
    if not isinstance(name, str):
        raise ValueError(f"representation name must be a string; got {name!r}")
    if name == "hog":
        return _hog()
    if name == "lbp":
        return _host_feature("lbp", lambda im: features.lbp(im, cell_size=LBP_CELL))
    if name == "sift":
        return _host_feature("sift", lambda im: features.sparse_sift(im, cell=SIFT_CELL, seed=0))
    if ":" in name:
        return _network_layer(name)
    raise ValueError(f"unknown representation {name!r}; valid: {', '.join(HAND_CRAFTED)} or NET:LAYER "
                     f"(e.g. 'cifar-ref:pool2')")
