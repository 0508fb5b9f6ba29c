"""The representations a learned inverter inverts, applied to batches of colour images.

The representations themselves come from the one registry, `jaxinv.representations.get`: "hog"
(cell 8), "lbp" (cell 16), "sift" (cell 4, seed 0; numpy and VLFeat on the host) of the grey image
(ITU-R 601 luma), and "NET:LAYER", e.g. "cifar-ref:pool2", on the colour image. This module only
batches them the way the inverters use them: images are (N, H, W, 3) float arrays in [0, 255] (a
grey (N, H, W) batch is repeated to three channels); outputs are (N, h, w, C) feature maps or (N, D)
vectors. A network's params (its weights) are the encoder that fine-tuning trains.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import representations
from jaxinv.io.images import LUMA
from jaxinv.engine.representation import Representation

HAND_CRAFTED = ("hog", "lbp", "sift")


def representation(name: str, image_size: int | None = None) -> Representation:
    """The representation `name` for inverters of image_size x image_size images: "hog", "lbp",
    "sift" or "NET:LAYER" (a layer of the convolutional trunk runs at `image_size`; one after a fully
    connected layer only at the network's input size)."""
    if isinstance(name, str) and ":" not in name and name not in HAND_CRAFTED:
        raise ValueError(f"unknown representation {name!r}; valid: {', '.join(HAND_CRAFTED)} or NET:LAYER "
                         f"(e.g. 'cifar-ref:pool2')")
    return representations.get(name, input_size=image_size)


def family(rep: Representation, image_size: int) -> str:
    """The inverter architecture family (`architectures.FAMILIES`) for `rep`."""
    if rep.name in HAND_CRAFTED:
        return rep.name
    return "fc" if len(feature_shape(rep, image_size)) == 1 else "conv"


def as_colour_batch(images, what: str = "images") -> np.ndarray:
    """(N, H, W, 3) float32 from a batch of colour (N, H, W, 3) or grey (N, H, W) images."""
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{what} must be a batch (N, H, W, 3) or (N, H, W); got shape {images.shape}")
    return images


def _as_input(rep: Representation, images):
    """Colour batch -> the representation's input: the luma (N, H, W, 1) for grey representations."""
    if rep.channels == 1:
        return (images @ jnp.asarray(LUMA, images.dtype))[..., None]
    return images


def batched(rep: Representation):
    """fn(params, images) -> features of a colour batch, traceable (jit, vmap, grad) for traceable
    representations; `params` are the representation's weights (None for hand-crafted ones)."""
    return lambda params, images: jax.vmap(rep.apply, in_axes=(None, 0))(params, _as_input(rep, images))


@functools.lru_cache(maxsize=32)
def _jitted(rep: Representation):
    return jax.jit(batched(rep))


def compute(rep: Representation, images, params=None) -> np.ndarray:
    """Features of a batch (N, H, W, 3) or (N, H, W) in [0, 255] as a numpy array, jitted for traceable
    representations, image by image on the host otherwise; `params` default to the representation's."""
    images = as_colour_batch(images, what=f"images for representation {rep.name!r}")
    if rep.traceable:
        weights = rep.params if params is None else params
        return np.asarray(_jitted(rep)(weights, jnp.asarray(images)))
    grey = np.asarray(_as_input(rep, images))
    return np.stack([np.asarray(rep.apply(None, image), np.float32) for image in grey])


def feature_shape(rep: Representation, image_size: int) -> tuple[int, ...]:
    """Feature shape (without the batch axis) of an image_size x image_size image."""
    if rep.input_size is not None and rep.input_size != (image_size, image_size):
        raise ValueError(f"representation {rep.name!r} takes {rep.input_size[0]}x{rep.input_size[1]} images; "
                         f"got size {image_size}")
    probe = np.full((1, image_size, image_size, 3), 128.0, np.float32)
    probe += np.random.default_rng(0).uniform(-50, 50, probe.shape).astype(np.float32)
    if rep.traceable:
        return tuple(jax.eval_shape(batched(rep), rep.params, probe).shape[1:])
    return tuple(compute(rep, probe).shape[1:])
