"""The pre-image solver (IJCV Algorithm 1) as optax transformations.

    G_t   = rho G_{t-1} + g_t^2                 (component-wise)
    eta_t = s_t / (1/eta0 + sqrt(G_t))          (component-wise; s_t a schedule, 1 in the paper)
    mu_t  = rho mu_{t-1} - eta_t g_t
    x_{t+1} = Proj_{B+}(x_t + mu_t)

`preimage_adagrad` produces the update mu_t; `projected` wraps any transformation so that the
new parameters are projected (Eq. 6), making the whole algorithm one GradientTransformation:

    tx = projected(preimage_adagrad(eta0), lambda x: project_bounded_range(x, 2 * B))
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class PreimageAdagradState(NamedTuple):
    count: jax.Array
    sum_of_squares: optax.Updates  # G_t
    momentum: optax.Updates  # mu_t


def preimage_adagrad(eta0: float, rho: float = 0.9,
                     step_scale: float | optax.Schedule = 1.0) -> optax.GradientTransformation:
    """IJCV Algorithm 1 without the projection: AdaGrad-like rates with momentum, both decayed by rho.

    `step_scale` (a float or a schedule of the iteration count) multiplies eta_t; the paper's
    second stage "at a tenth of the rate" is a schedule dropping it to 0.1.
    """
    if eta0 <= 0:
        raise ValueError(f"eta0 must be positive, got {eta0}")
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    scale_fn = step_scale if callable(step_scale) else (lambda count: step_scale)

    def init(params):
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # two buffers: both may be donated
        return PreimageAdagradState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update(updates, state, params=None):
        del params
        scale = scale_fn(state.count)
        sum_of_squares = jax.tree_util.tree_map(lambda g2, g: rho * g2 + jnp.square(g), state.sum_of_squares, updates)
        momentum = jax.tree_util.tree_map(
            lambda mu, g, g2: rho * mu - scale / (1.0 / eta0 + jnp.sqrt(g2)) * g,
            state.momentum, updates, sum_of_squares)
        return momentum, PreimageAdagradState(optax.safe_increment(state.count), sum_of_squares, momentum)

    return optax.GradientTransformation(init, update)


def projected(inner: optax.GradientTransformation,
              project: Callable[[optax.Params], optax.Params]) -> optax.GradientTransformation:
    """Makes `inner`'s step land on the feasible set: the update becomes Proj(x + u) - x.

    The inner state (e.g. momentum) is not changed by the projection, as in Algorithm 1.
    """

    def init(params):
        return inner.init(params)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("projected(...) needs the current parameters: call update(grads, state, params)")
        inner_updates, state = inner.update(updates, state, params)
        new_params = project(optax.apply_updates(params, inner_updates))
        return jax.tree_util.tree_map(jnp.subtract, new_params, params), state

    return optax.GradientTransformation(init, update)


class MomentumWithResetsState(NamedTuple):
    count: jax.Array
    velocity: optax.Updates


def momentum_with_resets(learning_rates, momentum: float = 0.9) -> optax.GradientTransformation:
    """Heavy-ball momentum on a per-iteration rate table, zeroing the velocity whenever the rate
    changes (the CVPR 2015 solver: the old velocity would overshoot after a tenfold drop)."""
    rates = jnp.asarray(learning_rates, jnp.float32)
    if rates.ndim != 1 or rates.size == 0:
        raise ValueError("learning_rates must be a non-empty 1-D table, one rate per iteration")

    def init(params):
        return MomentumWithResetsState(jnp.zeros([], jnp.int32), jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        rate = rates[jnp.minimum(state.count, rates.size - 1)]
        previous_rate = rates[jnp.clip(state.count - 1, 0, rates.size - 1)]
        changed = (state.count > 0) & (rate != previous_rate)
        velocity = jax.tree_util.tree_map(lambda v, g: jnp.where(changed, 0.0, momentum * v) - rate * g,
                                          state.velocity, updates)
        return velocity, MomentumWithResetsState(optax.safe_increment(state.count), velocity)

    return optax.GradientTransformation(init, update)
