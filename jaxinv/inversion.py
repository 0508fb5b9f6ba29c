"""Inverting representations of whole images: the library behind the inversion experiments."""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import metrics, preimage
from jaxinv.preimage import Problem, Representation, Stage


def shallow_problem(C: float = 100.0) -> Problem:
    """IJCV Sect. 5.1 settings for HOG, HOGb and DSIFT: C = 100, no jitter, other terms at defaults."""
    return Problem(C=C, jitter=1)


@dataclasses.dataclass
class Inversion:
    """Reconstructions of N images with K restarts each, and how well they match the targets."""
    representation: str
    images: np.ndarray  # (N, K, H, W[, 3]) in [0, 255] for display
    null_mean: np.ndarray  # (N, K, H, W, D) as optimised (representation's input minus its mean)
    errors: np.ndarray  # (N, K) IJCV Eq. 3 normalised error of Phi(x*) against Phi(x_i)
    codes: np.ndarray  # (N, K, ...) Phi(x*)
    target_codes: np.ndarray  # (N, ...) Phi(x_i)
    history: dict  # term -> (iterations, N * K)
    seconds: float


@functools.lru_cache(maxsize=16)
def _batched_codes(representation: Representation):
    return jax.jit(jax.vmap(representation))


def codes_of(representation: Representation, x) -> np.ndarray:
    """Phi of a batch of null-mean images (B, H, W, D), compiled once per representation."""
    return np.asarray(_batched_codes(representation)(jnp.asarray(x, jnp.float32)))


def invert_images(representation: Representation, images_in: Sequence[np.ndarray], *, problem: Problem | None = None,
                  restarts: int = 1, seed: int = 0, stages: Sequence[Stage] = preimage.default_stages(),
                  loop: str = "python", progress=None, progress_every: int = 50) -> Inversion:
    """Inverts Phi of each image (all the same size, [0, 255]) from `restarts` random starts each,
    all N * K problems in one vmapped computation."""
    problem = problem or Problem()
    if not len(images_in):
        raise ValueError("no images to invert")
    shapes = {np.shape(im)[:2] for im in images_in}
    if len(shapes) != 1:
        raise ValueError(f"images must share one size to be inverted together; got sizes {sorted(shapes)}")
    (height, width), = shapes
    if min(height, width) < representation.min_size:
        raise ValueError(f"images of {height}x{width} are too small for {representation.name!r} "
                         f"(need at least {representation.min_size} pixels a side)")
    x_ref = jnp.stack([representation.to_null_mean(im) for im in images_in])
    target_codes = codes_of(representation, x_ref)
    targets = [preimage.make_target(representation, problem, phi0=code) for code in target_codes]
    num = len(targets)
    batched = preimage.Target(jnp.repeat(jnp.asarray(target_codes), restarts, axis=0))
    result = preimage.solve(representation, problem, batched, image_shape=(height, width), key=jax.random.key(seed),
                            restarts=num * restarts, stages=stages, loop=loop, batched_target=True,
                            progress=progress, progress_every=progress_every)
    seen = preimage.crop_seen(representation, problem, result.images)
    codes = codes_of(representation, seen)
    errors = np.array([metrics.normalised_error(c, target_codes[i // restarts]) for i, c in enumerate(codes)])
    shape = lambda a: a.reshape((num, restarts) + a.shape[1:])
    return Inversion(representation.name, shape(representation.to_display(seen)), shape(seen), shape(errors),
                     shape(codes), target_codes, result.history, result.seconds)
