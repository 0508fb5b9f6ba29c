"""The solver (IJCV Algorithm 1) as optax transformations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxinv.engine import solver
from jaxinv.objectives import project_bounded_range


def test_two_steps_by_hand():
    tx = solver.preimage_adagrad(eta0=1.0, rho=0.9)
    x = jnp.array([0.0])
    state = tx.init(x)
    u, state = tx.update(jnp.array([2.0]), state)
    # G = 4, eta = 1 / (1 + 2), mu = -2/3
    np.testing.assert_allclose(u, [-2 / 3], rtol=1e-6)
    u, state = tx.update(jnp.array([1.0]), state)
    g2 = 0.9 * 4 + 1
    np.testing.assert_allclose(state.sum_of_squares, [g2], rtol=1e-6)
    np.testing.assert_allclose(u, [0.9 * (-2 / 3) - 1 / (1 + np.sqrt(g2))], rtol=1e-6)
    assert int(state.count) == 2


def test_step_scale_schedule_multiplies_the_rate():
    scaled = solver.preimage_adagrad(1.0, step_scale=lambda count: jnp.where(count >= 1, 0.1, 1.0))
    plain = solver.preimage_adagrad(1.0)
    x, g = jnp.ones(3), jnp.array([1.0, -2.0, 3.0])
    s1, s2 = scaled.init(x), plain.init(x)
    u1, s1 = scaled.update(g, s1)
    u2, s2 = plain.update(g, s2)
    np.testing.assert_allclose(u1, u2)
    u1, _ = scaled.update(g, s1)
    rate = 1 / (1 + np.sqrt(0.9 * np.square(g) + np.square(g)))
    np.testing.assert_allclose(u1, 0.9 * np.asarray(u2) - 0.1 * rate * g, rtol=1e-6)


def test_composes_with_other_optax_transformations_on_pytrees():
    tx = optax.chain(optax.clip(0.5), solver.preimage_adagrad(1.0))
    params = {"a": jnp.zeros(2), "b": jnp.zeros((1, 1))}
    state = tx.init(params)
    updates, state = tx.update({"a": jnp.array([10.0, -10.0]), "b": jnp.array([[0.1]])}, state)
    np.testing.assert_allclose(updates["a"], [-0.5 / 1.5, 0.5 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(updates["b"], [[-0.1 / 1.1]], rtol=1e-6)


def test_projection_keeps_iterates_feasible_and_momentum_untouched():
    bound = 1.0
    inner = solver.preimage_adagrad(100.0)
    tx = solver.projected(inner, lambda x: project_bounded_range(x, bound))
    x = jnp.zeros((2, 2, 3))
    state, inner_state = tx.init(x), inner.init(x)
    g = jnp.full((2, 2, 3), -5.0)
    for _ in range(5):
        updates, state = tx.update(g, state, x)
        _, inner_state = inner.update(g, inner_state)
        x = optax.apply_updates(x, updates)
        assert np.all(np.linalg.norm(np.asarray(x), axis=-1) <= bound * (1 + 1e-6))
    np.testing.assert_allclose(state.momentum, inner_state.momentum)


def test_projected_requires_params():
    tx = solver.projected(solver.preimage_adagrad(1.0), lambda x: x)
    with pytest.raises(ValueError, match="needs the current parameters"):
        tx.update(jnp.ones(1), tx.init(jnp.ones(1)))


@pytest.mark.parametrize("kwargs,message", [({"eta0": 0.0}, "eta0"), ({"eta0": 1.0, "rho": 1.0}, "rho")])
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        solver.preimage_adagrad(**kwargs)


def test_update_is_jittable():
    tx = solver.preimage_adagrad(1.0)
    step = jax.jit(tx.update)
    u, _ = step(jnp.ones(4), tx.init(jnp.ones(4)))
    assert u.shape == (4,)


def test_momentum_with_resets_zeroes_velocity_when_the_rate_changes():
    tx = solver.momentum_with_resets([1.0, 1.0, 0.1], momentum=0.5)
    state = tx.init(jnp.zeros(1))
    u1, state = tx.update(jnp.array([1.0]), state)
    u2, state = tx.update(jnp.array([1.0]), state)
    u3, state = tx.update(jnp.array([1.0]), state)
    u4, state = tx.update(jnp.array([1.0]), state)  # past the table: the last rate, no reset
    np.testing.assert_allclose([u1[0], u2[0], u3[0], u4[0]], [-1.0, -1.5, -0.1, -0.15], rtol=1e-6)
