"""Representation losses of the pre-image objective (IJCV Eqs. 2-4).

`phi` is Phi(x), the representation of the current image; `phi0` the target code. Both are
arrays of the same shape (any layout); the losses are scalars.
"""
from __future__ import annotations

import jax.numpy as jnp


def inversion_loss(phi, phi0):
    """IJCV Eq. 2: ||Phi(x) - Phi0||^2 / ||Phi0||^2."""
    return jnp.sum(jnp.square(phi - phi0)) / jnp.sum(jnp.square(phi0))


def masked_inversion_loss(phi, phi0, mask):
    """IJCV Eq. 3: ||(Phi(x) - Phi0) * M||^2 / ||Phi0 * M||^2 (M binary, shaped like Phi0)."""
    return jnp.sum(jnp.square((phi - phi0) * mask)) / jnp.sum(jnp.square(phi0 * mask))


def inner_product_loss(phi, phi0, z):
    """IJCV Eq. 4: -<Phi(x), Phi0> / Z (activation maximisation, caricatures)."""
    return -jnp.sum(phi * phi0) / z
