"""Representation losses of the pre-image objective (IJCV Eqs. 2-4 and 8), and their registry.

`phi` is Phi(x), the representation of the current image; `phi0` the target code. For the
single-layer losses both are arrays of the same shape (any layout); for the Gram losses phi is
{"features": {layer: (h, w, c) map}, "content": code} and phi0 {"grams": {layer: G_l0}, "content": code0}.
The losses are scalars.

A loss is registered once as a `Loss`: its value, a pure function of (phi, target), and the check
that turns what a caller gives into a valid `Target` (named errors for missing or degenerate
targets). The engine only looks losses up: adding one is a function plus `register(Loss(...))`.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.objectives.regularisers import texture_loss


class Target(NamedTuple):
    """What the loss compares Phi(x) with: phi0, and a mask (Eq. 3) or a normaliser Z (Eq. 4); for
    the Gram losses phi0 = {"grams": {layer: G_l0}, "content": code (style)} and the layer weights w_l."""
    phi0: Any
    mask: jax.Array | None = None
    z: jax.Array | float | None = None
    weights: dict | None = None


def inversion_loss(phi, phi0):
    """IJCV Eq. 2: ||Phi(x) - Phi0||^2 / ||Phi0||^2."""
    return jnp.sum(jnp.square(phi - phi0)) / jnp.sum(jnp.square(phi0))


def masked_inversion_loss(phi, phi0, mask):
    """IJCV Eq. 3: ||(Phi(x) - Phi0) * M||^2 / ||Phi0 * M||^2 (M binary, shaped like Phi0)."""
    return jnp.sum(jnp.square((phi - phi0) * mask)) / jnp.sum(jnp.square(phi0 * mask))


def inner_product_loss(phi, phi0, z):
    """IJCV Eq. 4: -<Phi(x), Phi0> / Z (activation maximisation, caricatures)."""
    return -jnp.sum(phi * phi0) / z


class Loss(NamedTuple):
    """A registered loss: `value(phi, target)` and `check(target) -> Target` (raises ValueError)."""
    name: str
    value: Callable[[Any, Target], jax.Array]
    check: Callable[[Target], Target]


_REGISTRY: dict[str, Loss] = {}


def register(loss: Loss) -> Loss:
    if loss.name in _REGISTRY:
        raise ValueError(f"a loss named {loss.name!r} is already registered")
    _REGISTRY[loss.name] = loss
    return loss


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Loss:
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


# -- target checks ------------------------------------------------------------------------------------


def _finite(tree, what: str) -> None:
    if not all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(tree)):
        raise ValueError(f"{what} contains non-finite values")


def _code(phi0, what: str = "the target code phi0") -> jax.Array:
    phi0 = jnp.asarray(phi0, jnp.float32)
    _finite(phi0, what)
    return phi0


def _nonzero(code, what: str) -> None:
    if float(jnp.sum(jnp.square(code))) == 0.0:
        raise ValueError(f"{what} is zero (||Phi0|| = 0): the normalised loss is undefined")


def _check_inversion(target: Target) -> Target:
    phi0 = _code(target.phi0)
    _nonzero(phi0, "the target code")
    return Target(phi0)


def _check_masked(target: Target) -> Target:
    phi0 = _code(target.phi0)
    if target.mask is None:
        raise ValueError("loss 'masked_inversion' needs a mask shaped like phi0")
    mask = jnp.asarray(target.mask, jnp.float32)
    if mask.shape != phi0.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the code's shape {tuple(phi0.shape)}")
    if float(jnp.sum(jnp.square(phi0 * mask))) == 0.0:
        raise ValueError("the masked target code is zero (||Phi0 * M|| = 0): nothing to invert")
    return Target(phi0, mask)


def _check_inner_product(target: Target) -> Target:
    phi0 = _code(target.phi0)
    if target.z is None:
        raise ValueError("loss 'inner_product' needs the normaliser Z")
    if not float(target.z) > 0:
        raise ValueError(f"the normaliser Z must be positive, got {float(target.z)}")
    return Target(phi0, None, jnp.asarray(target.z, jnp.float32))


def _check_gram(target: Target, style: bool) -> Target:
    """phi0 = {"grams": {layer: (c, c)}, "content": code (style)} and one non-negative weight per layer."""
    name, phi0, weights = ("style" if style else "texture"), target.phi0, target.weights
    if not isinstance(phi0, dict) or "grams" not in phi0 or (style and "content" not in phi0):
        content = ", 'content': code" if style else ""
        raise ValueError(f"loss {name!r} needs phi0 = {{'grams': {{layer: Gram matrix}}{content}}} "
                         "(see jaxinv.methods.texture)")
    grams = {layer: jnp.asarray(g, jnp.float32) for layer, g in phi0["grams"].items()}
    if not grams:
        raise ValueError(f"loss {name!r} needs at least one Gram layer")
    if set(weights or {}) != set(grams):
        raise ValueError(f"loss {name!r} needs one weight per Gram layer ({', '.join(grams)}); "
                         f"got weights for {sorted(weights or {})}")
    checked = {"grams": grams}
    if style:
        checked["content"] = jnp.asarray(phi0["content"], jnp.float32)
        _nonzero(checked["content"], "the content code")
    _finite([checked, [jnp.asarray(w) for w in weights.values()]], "the Gram/content target or the layer weights")
    if any(not float(w) >= 0 for w in weights.values()):
        raise ValueError(f"layer weights must be non-negative; got {dict(weights)}")
    return Target(checked, None, None, {layer: jnp.float32(w) for layer, w in weights.items()})


# -- the registry ---------------------------------------------------------------------------------------

INVERSION = register(Loss("inversion", lambda phi, t: inversion_loss(phi, t.phi0), _check_inversion))
MASKED_INVERSION = register(Loss("masked_inversion", lambda phi, t: masked_inversion_loss(phi, t.phi0, t.mask),
                                 _check_masked))
INNER_PRODUCT = register(Loss("inner_product", lambda phi, t: inner_product_loss(phi, t.phi0, t.z),
                              _check_inner_product))
TEXTURE = register(Loss("texture", lambda phi, t: texture_loss(phi["features"], t.phi0["grams"], t.weights),
                        lambda t: _check_gram(t, style=False)))
STYLE = register(Loss("style", lambda phi, t: (texture_loss(phi["features"], t.phi0["grams"], t.weights)
                                               + inversion_loss(phi["content"], t.phi0["content"])),
                      lambda t: _check_gram(t, style=True)))
