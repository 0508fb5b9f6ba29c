"""Image priors of the pre-image objective (IJCV Eqs. 5-8).

`x` is one image (H, W, D) with null mean: pixel values minus the representation's mean, in
the units of [0, 255] images (so B = 80 means 80 grey levels).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

TV_FLOOR = 1e-8
"""Added to the squared finite differences before the power beta/2, so that for beta < 2 the
gradient stays finite on flat regions (in squared grey levels: negligible against any real edge)."""


def bounded_range(x, alpha: float, bound: float):
    """IJCV Eq. 5: N_alpha(x) = 1/(H W B^alpha) sum_{v,u} ||x(v,u,:)||^alpha (isotropic in colour)."""
    height, width = x.shape[0], x.shape[1]
    pixel_sq_norm = jnp.sum(jnp.square(x), axis=-1)
    return jnp.sum(_power_of_squares(pixel_sq_norm, alpha)) / (height * width * bound ** alpha)


def project_bounded_range(x, bound_plus: float):
    """IJCV Eq. 6: scales every pixel whose colour norm exceeds B+ back onto the ball of radius B+."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x * jnp.minimum(1.0, bound_plus / jnp.maximum(norm, 1e-12))


def total_variation(x, beta: float, v: float):
    """Bounded variation R_TV^beta(x) = 1/(H W V^beta) sum ((dx)^2 + (dy)^2)^(beta/2), forward
    differences with a replicated border (the last row/column differences are zero)."""
    height, width = x.shape[0], x.shape[1]
    dx = jnp.pad(x[:, 1:] - x[:, :-1], ((0, 0), (0, 1), (0, 0)))
    dy = jnp.pad(x[1:] - x[:-1], ((0, 1), (0, 0), (0, 0)))
    sq = jnp.square(dx) + jnp.square(dy)
    if beta != 2:
        sq = sq + TV_FLOOR
    return jnp.sum(_power_of_squares(sq, beta)) / (height * width * v ** beta)


def _power_of_squares(sq, exponent: float):
    """sq^(exponent/2), written as integer powers when exact (faster and exact at sq = 0)."""
    if exponent == 2:
        return sq
    if exponent % 2 == 0:
        return sq ** int(exponent // 2)
    return jnp.power(sq, exponent / 2)


def jitter(x, key, max_shift: int, output_shape: tuple[int, int]):
    """IJCV Eq. 7: a random crop of size `output_shape` from `x`, offset uniform in {0..T-1}^2.

    The optimised image is T-1 pixels larger than the representation's input, so each iteration
    the representation sees it translated by a random tau.
    """
    out_h, out_w = output_shape
    if isinstance(max_shift, int) and max_shift <= 1:
        return x[:out_h, :out_w]
    offset = jax.random.randint(key, (2,), 0, max_shift)
    return jax.lax.dynamic_slice(x, (offset[0], offset[1], 0), (out_h, out_w, x.shape[2]))


def gram_matrix(features):
    """G(Phi) = sum_{u,v} Phi_uvc Phi_uvc' for a feature map (H, W, C) -> (C, C)."""
    flat = features.reshape(-1, features.shape[-1])
    return flat.T @ flat


def texture_loss(features, target_grams, weights):
    """IJCV Eq. 8: R_tex(x) = sum_l w_l ||G(Phi_l(x)) - G(Phi_l(x_tex))||_F^2 over layers l.

    `features`, `target_grams` and `weights` are dicts keyed by layer name.
    """
    return sum(weights[name] * jnp.sum(jnp.square(gram_matrix(features[name]) - target_grams[name]))
               for name in weights)


def gram_cosine_similarity(features, group: int):
    """Each image's mean cosine similarity to the others of its group, from their Gram matrices:
    `features` (K, h, w, c) maps of K images in consecutive groups of `group` (K a multiple of it,
    group >= 2); returns (K,), each in [-1, 1] (in [0, 1] for non-negative maps). The diversity term
    of a batch (Olah et al. 2017 "Feature Visualization": minus the mean pairwise cosine similarity
    of Gram matrices) is minus its mean; 1 - it is the restarts' diversity measured in the priors study."""
    grams = jax.vmap(gram_matrix)(features).reshape(features.shape[0] // group, group, -1)
    unit = grams / jnp.maximum(jnp.linalg.norm(grams, axis=-1, keepdims=True), 1e-12)
    similarity = jnp.einsum("gkd,gld->gkl", unit, unit)
    others = (jnp.sum(similarity, axis=-1) - jnp.einsum("gkk->gk", similarity)) / (group - 1)
    return others.reshape(-1)
