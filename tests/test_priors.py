"""Priors beyond the papers': parameterisations, transformations, diversity, the learned-decoder prior."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.engine import compilation, image_prior, preimage
from jaxinv.engine import parameterisation as P
from jaxinv.engine import transforms as T
from jaxinv.engine.representation import Representation
from jaxinv.inverters import architectures
from jaxinv.inverters.model import DecoderNetwork
from jaxinv.objectives import regularisers

SHAPE = (12, 10, 3)


def _pooled(params, x):
    """A small differentiable representation: 2x2 average pooling of tanh(x / 64) with a weight per
    channel, a (h/2, w/2, 3) map."""
    y = jnp.tanh((x - 128.0) / 64.0) * params
    return y.reshape(y.shape[0] // 2, 2, y.shape[1] // 2, 2, 3).mean(axis=(1, 3))


REP = Representation("toy", _pooled, params=jnp.array([1.0, 0.5, 2.0]), channels=3, mean=(128.0,) * 3)


def _random_image(seed=0, shape=SHAPE, scale=40.0):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32) * scale


# ------------------------------------------------------------------ parameterisations

def test_fourier_map_reproduces_a_known_image():
    fourier = P.Fourier(1.0)
    image = _random_image()
    np.testing.assert_allclose(fourier.apply(None, fourier.inverse(None, image), SHAPE), image, atol=1e-3)
    # One real coefficient at (ky, kx) = (0, 2): the image is 2 a s / sqrt(HW) cos(2 pi 2 col / W).
    height, width = SHAPE[:2]
    params = np.zeros((2, height, width // 2 + 1, 3), np.float32)
    params[0, 0, 2, :] = 5.0
    scale = P.fourier_scale(height, width, 1.0)[0, 2]
    expected = 2 * 5.0 * scale / np.sqrt(height * width) * np.cos(2 * np.pi * 2 * np.arange(width) / width)
    out = np.asarray(fourier.apply(None, jnp.asarray(params), SHAPE))
    np.testing.assert_allclose(out, np.broadcast_to(expected[None, :, None], SHAPE), atol=1e-4)


def test_fourier_scale_is_one_over_f_normalised():
    scale = P.fourier_scale(32, 32, 1.0)
    assert np.isclose(np.sqrt(2 * np.mean(scale.astype(np.float64) ** 2)), 1.0, atol=1e-5)
    # 1/f: the coefficient at (0, 4) is half the one at (0, 2); DC takes the lowest frequency's value.
    assert np.isclose(scale[0, 2] / scale[0, 4], 2.0) and np.isclose(scale[0, 0], scale[0, 1])
    flat = P.fourier_scale(32, 32, 0.0)
    assert np.allclose(flat, flat[0, 0])  # decay 0: white
    with pytest.raises(ValueError, match="decay"):
        P.Fourier(-1.0)


def test_colour_decorrelation_is_invertible_and_the_constant_is_normalised():
    colour = P.DecorrelatedColour()
    y = _random_image(1)
    np.testing.assert_allclose(colour.inverse(None, colour.apply(None, y, SHAPE)), y, atol=1e-3)
    m = np.asarray(P.COLOUR_SQRT)
    assert np.isclose(np.linalg.norm(m, axis=0).max(), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="invertible"):
        P.DecorrelatedColour(((1, 0, 0), (0, 1, 0), (0, 0, 0)))


def test_colour_estimate_recovers_a_known_covariance():
    rng = np.random.default_rng(0)
    root = np.array([[30.0, 5.0, 0.0], [28.0, 0.0, 4.0], [29.0, -5.0, 0.0]])
    pixels = rng.normal(size=(200000, 3)) @ root.T + 128
    m = P.estimate_colour_sqrt(pixels.reshape(-1, 100, 100, 3)[:20])
    covariance = root @ root.T
    np.testing.assert_allclose(m @ m.T, covariance / np.linalg.eigvalsh(covariance).max(), atol=0.01)


def test_chain_composes_and_flattens():
    lucid = P.chain(P.Fourier(1.0), P.DecorrelatedColour())
    assert P.chain(lucid, P.Squash(160.0)).pieces == (P.Fourier(1.0), P.DecorrelatedColour(), P.Squash(160.0))
    assert lucid == P.chain(P.Fourier(1.0), P.DecorrelatedColour()) and hash(lucid) == hash(P.chain(*lucid.pieces))
    params = lucid.inverse(lucid.weights, _random_image(2))
    np.testing.assert_allclose(lucid.apply(lucid.weights, params, SHAPE), _random_image(2), atol=1e-3)
    with pytest.raises(TypeError):
        P.chain("fourier")


def _decoder(seed=0):
    table = architectures.build("conv", (2, 2, 4), 8, 0.125)
    weights = architectures.init_params(table, jax.random.PRNGKey(seed), (2, 2, 4))
    return P.Decoder(DecoderNetwork("conv", (2, 2, 4), 8, 0.125), (2, 2, 4), 8, (120.0, 120.0, 110.0), 28.0,
                     weights=weights)


@pytest.mark.parametrize("name", ["fourier+colour", "squash", "decoder"])
def test_gradients_match_finite_differences(name):
    if name == "decoder":
        piece, shape = P.chain(_decoder()), (8, 8, 3)
    else:
        piece = P.chain(P.Fourier(1.0), P.DecorrelatedColour()) if name == "fourier+colour" else P.chain(P.Squash(50.0))
        shape = SHAPE
    with jax.enable_x64(True):  # central differences in float64 (small steps, no kink crossed)
        as64 = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)
        chain_weights = as64(piece.weights)
        params = as64(piece.init(piece.weights, jax.random.key(3), (1,) + shape, 80.0)[0])
        weights = as64(_random_image(4, shape, 1.0))
        image = lambda p: piece.apply(chain_weights, p, shape)
        f = jax.jit(lambda p: jnp.sum(weights * image(p)) + jnp.sum(image(p) ** 2) / 1e3)
        grad = jax.jit(jax.grad(f))(params)
        for seed in range(3):
            direction = jax.random.normal(jax.random.key(10 + seed), params.shape, jnp.float64)
            eps = 1e-5 * float(jnp.sqrt(jnp.mean(params ** 2)))
            numeric = (f(params + eps * direction) - f(params - eps * direction)) / (2 * eps)
            assert float(jnp.sum(grad * direction)) == pytest.approx(float(numeric), rel=1e-4, abs=1e-6)


def test_bounded_range_handling():
    bound_plus = 60.0
    lucid = P.chain(P.Fourier(1.0), P.DecorrelatedColour())
    project = P.projection(lucid, bound_plus)
    params = lucid.init(lucid.weights, jax.random.key(5), (1,) + SHAPE, 400.0)[0]  # far outside the ball
    before = lucid.apply(lucid.weights, params, SHAPE)
    assert float(jnp.max(jnp.linalg.norm(before, axis=-1))) > 2 * bound_plus
    after = lucid.apply(lucid.weights, project(lucid.weights, params, SHAPE), SHAPE)
    norms = jnp.linalg.norm(after, axis=-1)
    assert float(jnp.max(norms)) <= bound_plus * (1 + 1e-4)
    inside = jnp.linalg.norm(before, axis=-1) < bound_plus
    np.testing.assert_allclose(np.asarray(after)[np.asarray(inside)], np.asarray(before)[np.asarray(inside)], atol=1e-3)
    # Pixels: Eq. 6 on the image; a squash bounds every colour itself; a decoder is not projected.
    x = _random_image(6, scale=200.0)
    np.testing.assert_allclose(P.projection(P.chain(P.Pixels()), bound_plus)(None, x, SHAPE),
                               regularisers.project_bounded_range(x, bound_plus))
    squashed = P.Squash(bound_plus).apply(None, x, SHAPE)
    assert float(jnp.max(jnp.linalg.norm(squashed, axis=-1))) <= bound_plus * (1 + 1e-6)
    np.testing.assert_allclose(P.Squash(bound_plus).inverse(None, P.Squash(bound_plus).apply(None, x / 20, SHAPE)),
                               x / 20, rtol=1e-3, atol=1e-3)
    assert P.projection(P.chain(P.Fourier(), P.Squash(bound_plus)), bound_plus) is None
    assert P.projection(P.chain(_decoder()), bound_plus) is None
    assert P.projection(lucid, float("inf")) is None


# ------------------------------------------------------------------ transformations

def test_identity_transformations_are_exact():
    x = _random_image(7, (9, 9, 3))
    key = jax.random.key(0)
    for t in (T.RandomScale((1.0,)), T.RandomRotation((0.0,)), T.RandomPadding(0)):
        np.testing.assert_array_equal(t(key, x, True), x)
    for t in (T.RandomScale((0.5, 2.0)), T.RandomRotation((30.0,)), T.RandomPadding(3), T.Jitter(1)):
        np.testing.assert_array_equal(t(key, x, False), x)  # inactive: identity


def test_rotation_by_90_degrees_permutes_pixels():
    x = _random_image(8, (7, 7, 2))
    rotated = T.RandomRotation((90.0,))(jax.random.key(0), x, True)
    np.testing.assert_allclose(rotated, np.rot90(np.asarray(x), 1, axes=(0, 1)), atol=1e-4)  # counter-clockwise
    back = T.RandomRotation((-90.0,))(jax.random.key(0), rotated, True)
    np.testing.assert_allclose(back, x, atol=1e-4)


def test_scale_zooms_about_the_centre():
    x = np.zeros((9, 9, 1), np.float32)
    x[4, 6] = 1.0  # two pixels right of the centre
    zoomed = np.asarray(T.RandomScale((2.0,))(jax.random.key(0), jnp.asarray(x), True))
    assert zoomed[4, 8, 0] == pytest.approx(1.0) and zoomed.sum() == pytest.approx(3.0)  # 4 out; 2 x 1.5 by bilinear
    shrunk = np.asarray(T.RandomScale((0.5,))(jax.random.key(0), jnp.asarray(x), True))
    assert shrunk[4, 5, 0] == pytest.approx(1.0) and shrunk.sum() == pytest.approx(1.0)  # one pixel right


def test_padding_translates_with_grey_and_jitter_is_eq7():
    x = _random_image(9, (6, 6, 1))
    seen = set()
    for seed in range(40):
        y = np.asarray(T.RandomPadding(1)(jax.random.key(seed), x, True))
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if np.allclose(y, np.roll(np.pad(np.asarray(x), ((1, 1), (1, 1), (0, 0))), (dy, dx), (0, 1))[1:-1, 1:-1])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 9  # every shift of up to one pixel, grey (0) brought in
    big = _random_image(10, (8, 8, 3))
    key = jax.random.key(1)
    np.testing.assert_array_equal(T.Jitter(3)(key, big, True), regularisers.jitter(big, key, 3, (6, 6)))
    np.testing.assert_array_equal(T.Jitter(3)(key, big, False), big[:6, :6])
    assert len(T.lucid_transforms(32)) == 3 and T.lucid_transforms(224)[0] == T.RandomPadding(12)


# ------------------------------------------------------------------ diversity

def test_diversity_term_on_hand_built_maps():
    a = np.zeros((2, 2, 3), np.float32)
    a[..., 0] = 1.0  # Gram e0 e0^T
    b = np.zeros((2, 2, 3), np.float32)
    b[..., 1] = 2.0  # Gram along e1: orthogonal to a's
    c = a + b  # Gram 4 [[1, 2], [2, 4]]: cosine 1/5 with a's (e0 e0^T), 4/5 with b's (e1 e1^T)
    features = jnp.asarray(np.stack([a, a, a, b]))
    np.testing.assert_allclose(regularisers.gram_cosine_similarity(features, 2), [1, 1, 0, 0], atol=1e-6)
    s = regularisers.gram_cosine_similarity(jnp.asarray(np.stack([a, b, c])), 3)
    np.testing.assert_allclose(s, [(0 + 0.2) / 2, (0 + 0.8) / 2, (0.2 + 0.8) / 2], atol=1e-6)


# ------------------------------------------------------------------ the engine's prior path

def _problem_and_target(jitter=1):
    problem = preimage.Problem(C=10.0, jitter=jitter)
    target = preimage.make_target(REP, problem, np.asarray(_random_image(11, (8, 8, 3))) + 128)
    return problem, target


STAGES = preimage.default_stages(6, 2)
FAST = dict(stages=STAGES, loop="python")  # one compiled step per configuration


def test_pixels_prior_is_the_papers_engine():
    problem, target = _problem_and_target(jitter=2)
    kwargs = dict(image_shape=(8, 8), key=jax.random.key(0), restarts=2, **FAST)
    old = preimage.solve(REP, problem, target, **kwargs)
    new = preimage.solve(REP, problem, target, prior=image_prior.Prior(), **kwargs)
    np.testing.assert_allclose(new.images, old.images, atol=1e-5)
    np.testing.assert_allclose(new.history["energy"], old.history["energy"], rtol=1e-5)


def test_fourier_prior_with_transforms_stays_bounded_and_reduces_the_loss():
    problem, target = _problem_and_target()
    problem = preimage.Problem(C=10.0, jitter=1, bound=30.0)
    prior = image_prior.Prior(P.chain(P.Fourier(1.0), P.DecorrelatedColour()), T.lucid_transforms(8), regularisers=False)
    result = preimage.solve(REP, problem, target, image_shape=(8, 8), key=jax.random.key(0), restarts=2,
                            prior=prior, **FAST)
    assert result.parameters.shape == (2, 2, 8, 5, 3)
    assert np.all(result.history["loss"][-1] < result.history["loss"][0])
    assert np.all(result.history["range"] == 0) and np.all(result.history["tv"] == 0)
    assert np.max(np.linalg.norm(result.images, axis=-1)) <= problem.B_plus * (1 + 1e-4)


def test_diversity_couples_only_the_restarts_of_one_target():
    problem, target = _problem_and_target()
    diversity = image_prior.Diversity(REP, 5.0, 2)
    kwargs = dict(image_shape=(8, 8), key=jax.random.key(0), restarts=4, **FAST)
    plain = preimage.solve(REP, problem, target, prior=image_prior.Prior(), **kwargs)
    pushed = preimage.solve(REP, problem, target, prior=image_prior.Prior(diversity=diversity), **kwargs)
    assert "diversity" in pushed.history and "diversity" not in plain.history
    assert np.all(pushed.history["diversity"][-1] < pushed.history["diversity"][0])
    seen = jnp.asarray(pushed.images)
    measured = regularisers.gram_cosine_similarity(jax.vmap(REP)(seen), 2)
    assert np.all(np.asarray(measured) <= np.asarray(pushed.history["diversity"][0]))
    with pytest.raises(ValueError, match="groups"):
        preimage.solve(REP, problem, target, prior=image_prior.Prior(diversity=image_prior.Diversity(REP, 1.0, 3)),
                       **kwargs)


def test_learned_prior_gradients_and_a_second_decoder_compiles_nothing():
    problem, target = _problem_and_target()
    decoder = _decoder()
    prior = image_prior.Prior(decoder)
    energy = jax.jit(lambda p: image_prior.batch_energy(p[None], jax.random.key(0)[None], jnp.bool_(True), target, REP.params,
                                                prior.weights(), representation=REP, problem=problem, prior=prior,
                                                shape=(8, 8, 3), batched_target=False)[0])
    code = decoder.init(decoder.weights, jax.random.key(1), (1, 8, 8, 3), 80.0)[0]
    grad = jax.jit(jax.grad(energy))(code)
    direction = jax.random.normal(jax.random.key(2), code.shape)
    eps = 0.05
    numeric = (energy(code + eps * direction) - energy(code - eps * direction)) / (2 * eps)
    assert float(jnp.sum(grad * direction)) == pytest.approx(float(numeric), rel=2e-2)
    kwargs = dict(image_shape=(8, 8), key=jax.random.key(0), restarts=2, **FAST)
    first = preimage.solve(REP, problem, target, prior=prior, **kwargs)
    assert np.all(first.history["energy"][-1] < first.history["energy"][0])
    other = image_prior.Prior(P.Decoder(**{**decoder.__dict__, "weights": _decoder(seed=1).weights}))
    with compilation.counting() as warm:
        second = preimage.solve(REP, problem, target, prior=other, **kwargs)
    assert warm.count == 0 and not np.allclose(first.images, second.images)
    with pytest.raises(ValueError, match="invertible"):
        preimage.solve(REP, problem, target, prior=prior, x_init=np.zeros((2, 8, 8, 3)), **kwargs)


# ------------------------------------------------------------------ the study's settings and tables

def test_study_priors_settings_and_table():
    from jaxinv.studies import priors
    problem = preimage.Problem(C=20.0, jitter=2)
    assert priors.prior_setting("paper", problem, 32, None) == (problem, None)
    _, fourier = priors.prior_setting("fourier", problem, 32, None, decay=1.5)
    assert fourier.parameterisation.pieces == (P.Fourier(1.5), P.DecorrelatedColour()) and not fourier.regularisers
    assert fourier.transforms == T.lucid_transforms(32) and fourier.transforms[0] == T.RandomPadding(2)
    assert priors.prior_setting("combined", problem, 32, None)[1].regularisers
    learned_problem, learned = priors.prior_setting("learned", problem, 32, _decoder())
    assert learned_problem.jitter == 1 and learned.transforms == (T.RandomPadding(1),) and not learned.regularisers
    assert learned.parameterisation.pieces[1] == P.Squash(problem.B_plus) and learned.parameterisation.bounded
    with pytest.raises(ValueError, match="unknown prior"):
        priors.prior_setting("pink", problem, 32, None)
    row = dict(error=0.1, error_ci95=0.01, restart_std=0.02, class_consistency=1.0, hist_intersection=0.9,
               restart_diversity=0.05, seconds=3.0)
    am = dict(mean_probability=0.9, min_probability=0.5, value_over_M=2.0, hist_intersection=0.7, seconds=4.0)
    result = priors.PriorsResult(priors.PriorsConfig(layers=("conv1", "fc8")), None, [], {
        "paper": {"conv1": row, "fc8": dict(row, error=0.3)}}, {"paper": am}, {}, {}, 1.0, None)
    table = priors.markdown_tables(result)
    assert "| paper | conv1 | 0.100 | 0.010 | 0.020 | 1.000 | 0.900 | 0.050 | 3.000 |" in table
    assert "| paper | **mean** | 0.200 |" in table and "| paper | 0.900 | 0.500 | 2.000 | 0.700 | 4.000 |" in table
