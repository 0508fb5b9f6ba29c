"""The one representation type: Phi as a pure `apply(params, x) -> code` plus its input convention.

Every representation the engine, the methods and the learned inverters use is a `Representation`:
HOG, HOGb, DSIFT, LBP, sparse SIFT, a network layer, a multi-layer Gram code, a HOG template.
`params` is a pytree handed to the compiled step as an argument, never baked in as a constant, so
representations that differ only in their weights (two HOG templates, two checkpoints of one
network) share every compiled program: equality and hashing ignore `params`.

Units: images are (H, W, channels) float32 in the units of [0, 255] pixels. The engine optimises
*null-mean* images (the representation's `mean` subtracted); `apply` sees the image with the mean
added back, i.e. pixel values in [0, 255].
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Representation:
    """Phi(x) = apply(params, x) for one image x (H, W, channels) in [0, 255].

    `apply` must be a pure function, hashable and comparable by what it computes (a module-level
    function or a frozen dataclass): it is the static part of every compiled step. `params` is the
    pytree of weights (None for hand-crafted features). `channels` and `mean` (a colour in [0, 255],
    one value per channel) are the input convention; `stride` is the code's total stride in pixels
    (jitter rule); `input_size` (H, W) is fixed for networks with fully connected layers, None when
    any size from `min_size` works; `layers` names the stages of the underlying graph that can be
    tapped (a network's layers), empty when there are none.
    `traceable` is False for features computed on the host (LBP, sparse SIFT): they have no gradient
    and cannot be inverted by optimisation, only by learned inverters.
    """
    name: str = dataclasses.field(compare=False)
    apply: Callable[[Any, jax.Array], Any]
    params: Any = dataclasses.field(default=None, compare=False, hash=False, repr=False)
    channels: int = 1
    mean: tuple[float, ...] = (128.0,)
    stride: int = 1
    input_size: tuple[int, int] | None = None
    min_size: int = 1
    layers: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    traceable: bool = True

    def __call__(self, x, params=None):
        """Phi of a null-mean image x (H, W, channels); `params` default to the representation's own."""
        return self.apply(self.params if params is None else params, x + jnp.asarray(self.mean, x.dtype))

    def with_params(self, params) -> "Representation":
        """The same representation with other weights (it shares the compiled steps of this one)."""
        return dataclasses.replace(self, params=params)

    def to_null_mean(self, image):
        """Image in [0, 255] (H, W) or (H, W, C) -> null-mean (H, W, channels) float32."""
        if not np.all(np.isfinite(np.asarray(image))):
            raise ValueError(f"image for representation {self.name!r} contains non-finite values (NaN or inf)")
        image = jnp.asarray(image, jnp.float32)
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[-1] != self.channels:
            raise ValueError(f"representation {self.name!r} takes {self.channels}-channel images; "
                             f"got shape {tuple(image.shape)}")
        return image - jnp.asarray(self.mean, jnp.float32)

    def to_display(self, x):
        """Null-mean image(s) -> [0, 255] (..., H, W) grey or (..., H, W, 3), clipped."""
        image = np.clip(np.asarray(x, np.float32) + np.asarray(self.mean, np.float32), 0, 255)
        return image[..., 0] if self.channels == 1 else image
