"""The Gram (texture) term in the engine: texture synthesis and style transfer (IJCV Eq. 8)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import nets, objectives
from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.methods import texture
from jaxinv.engine.preimage import Problem, Stage
from jaxinv.engine.representation import Representation


def features(_, x):
    """A two-'layer' toy representation: 2x2 and 4x4 average pools of a grey image, and their ReLU."""
    pool2 = jax.lax.reduce_window(x, 0.0, jax.lax.add, (2, 2, 1), (2, 2, 1), "VALID") / 4
    pool4 = jax.lax.reduce_window(x, 0.0, jax.lax.add, (4, 4, 1), (4, 4, 1), "VALID") / 16
    return {"features": {"a": jnp.concatenate([pool2, -pool2], -1), "b": jax.nn.relu(pool4)}, "content": pool4}


TOY = Representation("toy-gram", features, channels=1, mean=(128.0,))
SHORT = (Stage(40, 1.0, True), Stage(10, 0.1, False))


@pytest.fixture(scope="module")
def grey():
    return images.load_sample_image(grey=True, size=32), images.load_image(
        images.imagenet_sample_paths(num_images=1)[0], grey=True, size=32)


def toy_target(problem, content_image, texture_image, lambdas=1.0):
    code = TOY(TOY.to_null_mean(texture_image))
    grams = {k: objectives.gram_matrix(v) for k, v in code["features"].items()}
    phi0 = {"grams": grams}
    if problem.loss == "style":
        phi0["content"] = TOY(TOY.to_null_mean(content_image))["content"]
    return preimage.make_target(TOY, problem, phi0=phi0, weights=texture.layer_weights(grams, lambdas))


def test_texture_and_style_energies_are_eq8_and_eq2_plus_eq8(grey):
    content, tex = grey
    x = TOY.to_null_mean(images.load_image(images.imagenet_sample_paths(num_images=2)[1], grey=True, size=32))
    target = toy_target(Problem(loss="texture"), content, tex, {"a": 0.5, "b": 2.0})
    feats = TOY(x)["features"]
    by_hand = objectives.texture_loss(feats, target.phi0["grams"], target.weights)
    terms = preimage.energy_terms(x, jax.random.key(0), TOY, Problem(loss="texture", C=3.0), target, 1)
    assert float(terms["loss"]) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(terms["energy"]) == pytest.approx(float(terms["range"] + terms["tv"] + 3.0 * by_hand), rel=1e-5)
    # w_l = lambda_l / ||G_l0||^2: a featureless image scores sum_l lambda_l.
    zero = preimage.energy_terms(jnp.full_like(x, -128.0), jax.random.key(0), TOY, Problem(loss="texture"), target, 1)
    assert float(zero["loss"]) == pytest.approx(2.5, rel=1e-5)
    style = toy_target(Problem(loss="style"), content, tex)
    terms = preimage.energy_terms(x, jax.random.key(0), TOY, Problem(loss="style"), style, 1)
    expected = objectives.texture_loss(feats, style.phi0["grams"], style.weights) + objectives.inversion_loss(
        TOY(x)["content"], style.phi0["content"])
    assert float(terms["loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_texture_synthesis_with_restarts_and_batched_textures(grey):
    content, tex = grey
    problem = Problem(loss="texture", C=100.0, jitter=2)
    target = toy_target(problem, content, tex)
    result = preimage.solve(TOY, problem, target, image_shape=(32, 32), key=jax.random.key(0), restarts=2, stages=SHORT)
    assert result.images.shape == (2, 33, 33, 1)
    assert np.all(result.history["loss"][-1] < 0.05 * result.history["loss"][0]), result.history["loss"][[0, -1]]
    # Two different textures in one vmapped run equal the two runs done separately (no jitter: the
    # jitter offsets are drawn per restart from keys that depend on the number of restarts).
    problem = Problem(loss="texture", C=100.0)
    other = toy_target(problem, content, content)
    batched = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), target, other)
    x0 = preimage.random_init(jax.random.key(1), (2, 32, 32, 1), problem.bound)
    both = preimage.solve(TOY, problem, batched, image_shape=(32, 32), key=jax.random.key(0), restarts=2,
                          stages=SHORT, x_init=x0, batched_target=True).images
    for k, single in enumerate((target, other)):
        one = preimage.solve(TOY, problem, single, image_shape=(32, 32), key=jax.random.key(0), stages=SHORT,
                             x_init=x0[k:k + 1]).images
        np.testing.assert_allclose(one[0], both[k], rtol=1e-4, atol=1e-3)


def test_texture_targets_are_checked(grey):
    content, tex = grey
    grams = {k: objectives.gram_matrix(v) for k, v in TOY(TOY.to_null_mean(tex))["features"].items()}
    with pytest.raises(ValueError, match="one weight per Gram layer"):
        preimage.make_target(TOY, Problem(loss="texture"), phi0={"grams": grams}, weights={"a": 1.0})
    with pytest.raises(ValueError, match="needs phi0 = .*'content'"):
        preimage.make_target(TOY, Problem(loss="style"), phi0={"grams": grams}, weights={"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match="all-zero Gram matrix"):
        texture.layer_weights({"a": np.zeros((2, 2))})


def test_network_texture_synthesis_matches_the_grams(tmp_path):
    model = nets.load("cifar-ref")
    image = images.load_sample_image(size=16)
    result = texture.synthesise_texture(model, image, ["relu1", "relu2"], size=16, restarts=1,
                                        stages=preimage.default_stages(40, 10))
    assert result.images.shape == (1, 16, 16, 3) and result.problem.loss == "texture"
    # Measured: 1.54 at the random start, 0.25 after 50 iterations (texture error 0.126).
    loss = result.history["loss"][:, 0]
    assert loss[-1] < 0.25 * loss[0], loss[[0, -1]]
    assert result.texture_errors[0] == pytest.approx(loss[-1] / 2, rel=0.05)  # sum of lambda = 2
    with pytest.raises(ValueError, match="texture layer 'fc6' has no spatial map"):
        texture.synthesise_texture(model, image, ["fc6"], size=16)
    assert texture.default_texture_layers(model) == ["relu1", "relu2", "relu3"]
