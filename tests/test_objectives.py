"""IJCV Eqs. 2-8 on hand-computed cases, and their gradients against finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import objectives as obj


def finite_difference_check(f, x, num_coords=6, eps=1e-4, seed=0):
    """Compares jax.grad(f) with central differences (float64) at random coordinates."""
    with jax.enable_x64(True):
        x = jnp.asarray(x, jnp.float64)
        grad = np.asarray(jax.grad(f)(x))
        rng = np.random.default_rng(seed)
        for idx in zip(*(rng.integers(0, n, num_coords) for n in x.shape)):
            e = np.zeros(x.shape)
            e[idx] = eps
            numeric = (f(x + e) - f(x - e)) / (2 * eps)
            np.testing.assert_allclose(grad[idx], numeric, rtol=1e-5, atol=1e-9)


def test_inversion_loss_by_hand():
    assert obj.inversion_loss(jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0])) == pytest.approx(4.0)


def test_masked_inversion_loss_ignores_masked_components():
    phi, phi0, mask = jnp.array([2.0, 3.0, 100.0]), jnp.array([1.0, 1.0, 1.0]), jnp.array([0.0, 1.0, 0.0])
    assert obj.masked_inversion_loss(phi, phi0, mask) == pytest.approx(4.0)
    assert obj.masked_inversion_loss(phi, phi0, jnp.ones(3)) == pytest.approx((1 + 4 + 99 ** 2) / 3)


def test_inner_product_loss_by_hand():
    assert obj.inner_product_loss(jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0]), 2.0) == pytest.approx(-5.5)


def test_bounded_range_is_isotropic_in_colour():
    x = jnp.zeros((1, 2, 3)).at[0, 0].set(jnp.array([1.0, 2.0, 2.0]))  # pixel norms 3 and 0
    assert obj.bounded_range(x, alpha=2, bound=1.0) == pytest.approx(9 / 2)
    assert obj.bounded_range(x, alpha=6, bound=1.0) == pytest.approx(3 ** 6 / 2)
    assert obj.bounded_range(x, alpha=6, bound=3.0) == pytest.approx(1 / 2)
    rotated = jnp.zeros((1, 2, 3)).at[0, 0].set(jnp.array([3.0, 0.0, 0.0]))
    assert obj.bounded_range(rotated, 6, 1.0) == pytest.approx(obj.bounded_range(x, 6, 1.0))


def test_projection_scales_only_pixels_outside_the_ball():
    x = jnp.array([[[3.0, 4.0, 0.0], [0.6, 0.8, 0.0]]])
    p = obj.project_bounded_range(x, 2.5)
    np.testing.assert_allclose(p, [[[1.5, 2.0, 0.0], [0.6, 0.8, 0.0]]], rtol=1e-6)
    np.testing.assert_allclose(obj.project_bounded_range(p, 2.5), p, rtol=1e-6)


def test_total_variation_forward_differences_with_replicated_border():
    x = jnp.array([[0.0, 1.0], [2.0, 3.0]])[..., None]
    # dx = [[1, 0], [1, 0]], dy = [[2, 2], [0, 0]]: squared sums 5, 4, 1, 0 over H W = 4.
    assert obj.total_variation(x, beta=2, v=1.0) == pytest.approx(10 / 4)
    assert obj.total_variation(x, beta=2, v=2.0) == pytest.approx(10 / 16)
    expected = (np.sqrt(5) + np.sqrt(4) + np.sqrt(1) + np.sqrt(obj.TV_FLOOR)) / 4
    assert obj.total_variation(x, beta=1, v=1.0) == pytest.approx(expected, rel=1e-6)


def test_total_variation_gradient_finite_on_flat_images_for_beta_below_2():
    g = jax.grad(lambda x: obj.total_variation(x, beta=1, v=1.0))(jnp.zeros((4, 4, 1)))
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("name,f", [
    ("bounded_range a=6", lambda x: obj.bounded_range(x, 6, 2.0)),
    ("bounded_range a=3", lambda x: obj.bounded_range(x, 3, 2.0)),
    ("tv b=2", lambda x: obj.total_variation(x, 2, 1.5)),
    ("tv b=1", lambda x: obj.total_variation(x, 1, 1.5)),
    ("inversion", lambda x: obj.inversion_loss(jnp.tanh(x), jnp.linspace(-1, 1, x.size).reshape(x.shape))),
    ("texture", lambda x: obj.texture_loss({"a": x}, {"a": jnp.eye(3)}, {"a": 0.5})),
])
def test_gradients_match_finite_differences(name, f):
    x = np.random.default_rng(1).normal(size=(5, 6, 3))
    finite_difference_check(f, x)


def test_jitter_crops_with_offsets_covering_the_range():
    x = jnp.arange(10 * 10, dtype=jnp.float32).reshape(10, 10, 1)
    offsets = set()
    for i in range(60):
        crop = obj.jitter(x, jax.random.key(i), 3, (8, 8))
        assert crop.shape == (8, 8, 1)
        offsets.add(divmod(int(crop[0, 0, 0]), 10))
    assert offsets == {(a, b) for a in range(3) for b in range(3)}
    np.testing.assert_array_equal(obj.jitter(x, jax.random.key(0), 1, (8, 8)), x[:8, :8])


def test_gram_matrix_and_texture_loss_by_hand():
    f = jnp.array([[[1.0, 0.0], [0.0, 2.0]]])  # two positions, two channels
    np.testing.assert_allclose(obj.gram_matrix(f), [[1.0, 0.0], [0.0, 4.0]])
    loss = obj.texture_loss({"l": f}, {"l": jnp.zeros((2, 2))}, {"l": 2.0})
    assert loss == pytest.approx(2.0 * (1 + 16))


def test_cvpr2015_preset_energy_equals_the_papers_formula():
    from jaxinv.methods.inversion import Cvpr2015
    from jaxinv.engine import preimage
    from jaxinv.engine.representation import Representation

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(scale=40, size=(12, 10, 1)), jnp.float32)
    phi0 = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
    rep = Representation("sum", lambda _, im: jnp.stack([im.sum(), im.mean(), im.max(), im.min()]),
                         channels=1, mean=(0.0,))
    preset = Cvpr2015(sigma=3000.0, lambda_tv=2.0, lambda_l=1e-9)
    problem = preset.problem(x.shape[:2])
    terms = preimage.energy_terms(x, None, rep, problem, preimage.Target(phi0), 1)
    d1 = jnp.pad(x[:, 1:] - x[:, :-1], ((0, 0), (0, 1), (0, 0)))
    d2 = jnp.pad(x[1:] - x[:-1], ((0, 1), (0, 0), (0, 0)))
    expected = (jnp.sum((rep(x) - phi0) ** 2) / jnp.sum(phi0 ** 2)
                + (2.0 / 2 * jnp.sum(d1 ** 2 + d2 ** 2) + 1e-9 / 2 * jnp.sum(x ** 6)) / 3000.0 ** 2)
    assert float(terms["energy"]) == pytest.approx(float(expected), rel=1e-4)


def test_a_new_loss_is_one_function_and_its_registration():
    """An L1 inversion loss registered from outside reaches the engine without touching it."""
    import jax

    from jaxinv.engine import preimage
    from jaxinv.objectives import losses
    from jaxinv.engine.representation import Representation

    def check(target):
        if target.phi0 is None:
            raise ValueError("loss 'l1_test' needs phi0")
        return losses.Target(jnp.asarray(target.phi0, jnp.float32))

    losses.register(losses.Loss("l1_test", lambda phi, t: jnp.sum(jnp.abs(phi - t.phi0)), check))
    with pytest.raises(ValueError, match="already registered"):
        losses.register(losses.Loss("l1_test", lambda phi, t: 0.0, check))
    rep = Representation("mean", lambda _, im: jnp.mean(im, axis=(0, 1)), channels=1, mean=(0.0,))
    problem = preimage.Problem(loss="l1_test", C=1.0)
    target = preimage.make_target(rep, problem, phi0=jnp.asarray([3.0]))
    x = jnp.full((4, 4, 1), 1.0)
    assert float(preimage.energy_terms(x, jax.random.key(0), rep, problem, target, 1)["loss"]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown loss 'nope'; valid losses: inversion, masked_inversion"):
        preimage.Problem(loss="nope")
