"""Transformation robustness: random transformations of the image before the representation sees it.

Each transformation is a keyed pure function `t(key, x, active) -> x` on one null-mean image
(H, W, D), a frozen dataclass hashable by value (static in the compiled step). `active` is a traced
boolean: False in the stages without jitter (the authors' refinement stage), where every
transformation is the identity. `compose(...)` applies a list in order, each with its own key.

- `Jitter(T)`: IJCV Eq. 7 (today's): a random crop of (H - T + 1, W - T + 1) pixels from the
  optimised image, which is T - 1 pixels larger; inactive: the top-left crop. The engine puts it
  first (`Problem.jitter`); the others keep the image's size.
- `RandomPadding(P)`: pads P pixels of the mean grey (0 in null-mean units) on every side and crops
  the original size back at a random offset in {0..2P}^2: a translation by up to P pixels that
  brings in grey (Lucid's `pad` followed by `jitter`); inactive: offset P, the identity.
- `RandomScale(scales)`: zooms about the image centre by a factor drawn uniformly from `scales`
  (> 1 enlarges), bilinear, the size kept, the mean grey outside the image.
- `RandomRotation(angles)`: rotates about the image centre by an angle in degrees drawn uniformly
  from `angles` (positive: counter-clockwise as displayed, rows downwards), bilinear, the mean grey
  outside.

Scale 1 and angle 0 sample every pixel at its own integer position: they are exactly the identity.

Defaults (`lucid_transforms`) follow Lucid's `standard_transforms` (Olah, Mordvintsev & Schubert
2017, "Feature Visualization", Distill): pad 12 and jitter 8 at 224 pixels (scaled here with the
image side: pad 2, jitter by the layer rule, at 32 pixels), scales 1 + (i - 5)/50 for i = 0..10
(0.90..1.10) and angles -10..10 degrees (Lucid adds five extra zeros; we draw uniformly from the 21).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.objectives import regularisers


@dataclasses.dataclass(frozen=True)
class Jitter:
    """IJCV Eq. 7: random crop of (H - T + 1, W - T + 1) from (H, W); inactive: the top-left crop."""
    max_shift: int

    def __call__(self, key, x, active):
        size = (x.shape[0] - self.max_shift + 1, x.shape[1] - self.max_shift + 1)
        if self.max_shift <= 1:
            return x
        shift = jnp.where(active, self.max_shift, 1)
        return regularisers.jitter(x, key, shift, size)


@dataclasses.dataclass(frozen=True)
class RandomPadding:
    """Translation by up to `pad` pixels each way, the mean grey brought in (size kept)."""
    pad: int

    def __post_init__(self):
        if not isinstance(self.pad, (int, np.integer)) or self.pad < 0:
            raise ValueError(f"pad must be an integer >= 0, got {self.pad!r}")

    def __call__(self, key, x, active):
        if self.pad == 0:
            return x
        p = self.pad
        padded = jnp.pad(x, ((p, p), (p, p), (0, 0)))
        offset = jnp.where(active, jax.random.randint(key, (2,), 0, 2 * p + 1), p)
        return jax.lax.dynamic_slice(padded, (offset[0], offset[1], 0), x.shape)


def _check_values(name: str, values, low: float, high: float) -> tuple:
    values = tuple(float(v) for v in values)
    if not values or not all(np.isfinite(v) and low <= v <= high for v in values):
        raise ValueError(f"{name} must be a non-empty list of numbers in [{low:g}, {high:g}]; got {values}")
    return values


def warp(x, matrix):
    """Samples x (H, W, D) bilinearly at centre + matrix @ (q - centre) for every output pixel q (row,
    column), the mean grey (0) outside; centre = ((H - 1)/2, (W - 1)/2)."""
    height, width = x.shape[0], x.shape[1]
    centre = jnp.array([(height - 1) / 2, (width - 1) / 2], jnp.float32)
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
                              indexing="ij")
    offsets = jnp.stack([rows - centre[0], cols - centre[1]])
    source = jnp.einsum("ij,jhw->ihw", matrix, offsets) + centre[:, None, None]
    sample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, [source[0], source[1]], order=1,
                                                               mode="constant", cval=0.0)
    return jax.vmap(sample, in_axes=2, out_axes=2)(x)


@dataclasses.dataclass(frozen=True)
class RandomScale:
    """Zoom about the centre by a factor drawn from `scales` (inactive: 1)."""
    scales: tuple

    def __post_init__(self):
        object.__setattr__(self, "scales", _check_values("scales", self.scales, 1e-3, 1e3))

    def __call__(self, key, x, active):
        factor = jnp.where(active, jax.random.choice(key, jnp.asarray(self.scales, jnp.float32)), 1.0)
        return warp(x, jnp.eye(2, dtype=jnp.float32) / factor)


@dataclasses.dataclass(frozen=True)
class RandomRotation:
    """Rotation about the centre by an angle (degrees) drawn from `angles` (inactive: 0)."""
    angles: tuple

    def __post_init__(self):
        object.__setattr__(self, "angles", _check_values("angles", self.angles, -360.0, 360.0))

    def __call__(self, key, x, active):
        angle = jnp.where(active, jax.random.choice(key, jnp.asarray(self.angles, jnp.float32)), 0.0)
        theta = jnp.deg2rad(angle)
        c, s = jnp.cos(theta), jnp.sin(theta)
        # Output offset d = (row, col) from the centre reads the input at (c d_r + s d_c, -s d_r + c d_c):
        # with rows pointing down, a counter-clockwise rotation of the picture as displayed (90: np.rot90).
        return warp(x, jnp.array([[c, s], [-s, c]]))


def compose(transforms, key, x, active):
    """Applies `transforms` in order, the i-th with the i-th key split from `key`."""
    transforms = tuple(transforms)
    if not transforms:
        return x
    for t, k in zip(transforms, jax.random.split(key, len(transforms))):
        x = t(k, x, active)
    return x


LUCID_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
LUCID_ANGLES = tuple(float(a) for a in range(-10, 11))
LUCID_PAD_FRACTION = 12 / 224
"""Lucid's pad of 12 pixels at 224 (Olah et al. 2017), as a fraction of the image side."""


def lucid_transforms(side: int) -> tuple:
    """Padding (Lucid's 12 at 224, scaled to `side` and rounded, at least 1), scale 0.90..1.10, rotation
    -10..10 degrees. (Eq. 7 jitter comes first, from the problem.)"""
    return (RandomPadding(max(1, int(round(LUCID_PAD_FRACTION * side)))), RandomScale(LUCID_SCALES),
            RandomRotation(LUCID_ANGLES))
