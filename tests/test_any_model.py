"""Every method on your own model (`jaxinv.models`): inversion at two layers in each framework,
windows, channel groups, caricature, texture and style, activation maximisation, with measured
geometry standing in for the layer tables."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import jaxinv
from jaxinv import adapters, models
from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.methods import activation_max, texture, visualise
from jaxinv.nets import cifar10
from tests.test_adapters import EXPECTED_GEOMETRY, SIZE, TAPS, make

FEW = dict(iterations=30, refine_iterations=0)
STAGES = preimage.default_stages(30, 0)


@pytest.fixture(scope="module")
def linen_model():
    return make("linen")[0]


@pytest.fixture(scope="module")
def image():
    return images.load_sample_image(size=SIZE)


@pytest.mark.parametrize("kind", ["linen", "nnx", "equinox"])
def test_each_framework_inverts_at_two_layers(kind, image):
    model, _ = make(kind)
    for layer in ("conv1", "conv3"):
        result = jaxinv.invert(model, image, layer=TAPS[kind][layer], **FEW)
        loss = result.history["loss"][:, 0]
        assert loss[-1] < 0.5 * loss[0], (kind, layer, loss[[0, -1]])
        # The measured geometry drives the rules: jitter T = max(round(stride / 4), 1).
        assert result.problem.jitter == max(round(EXPECTED_GEOMETRY[layer][1] / 4), 1)
        assert result.images.shape == (1, SIZE, SIZE, 3)


def test_model_queries_answer_for_an_adapted_model(linen_model):
    assert models.layer_names(linen_model) == list(linen_model.layers())
    assert models.input_side(linen_model) == SIZE
    for layer, (rf, stride) in EXPECTED_GEOMETRY.items():
        assert models.receptive_field(linen_model, layer) == (rf, stride)
    assert models.class_layer(linen_model) == "output"
    assert models.spatial_layers(linen_model) == ["conv1", "conv2", "conv3", "pool"]
    with pytest.raises(ValueError, match="needs a layer with a spatial map; layer 'fc' of LinenStack outputs"):
        visualise.invert_window(linen_model, np.zeros((SIZE, SIZE, 3)), "fc")


def test_window_inversion_box_is_the_gradient_support(linen_model, image):
    inverted, box = visualise.invert_window(linen_model, image, "conv3", size=3, stages=STAGES)
    # By hand: the central 3x3 window of conv3's 16x16 map is cells 6..8; conv3 (3x3, SAME) reads conv2
    # cells 5..9; conv2 (3x3, stride 2, SAME on 32: padding 0 before, 1 after) reads conv1 cells
    # 2*5 = 10 .. 2*9 + 2 = 20; conv1 (3x3, SAME) reads pixels 9..21, so (9, 9, 22) with exclusive ends.
    assert box == (9, 9, 22, 22)
    assert inverted.images.shape == (1, 1, SIZE, SIZE, 3) and inverted.errors[0, 0] < 1.0


def test_channel_groups_and_equal_splits(linen_model, image):
    assert [g.tolist() for g in visualise.windows.channel_groups(linen_model, "conv3")] == [list(range(8))]
    groups = visualise.equal_channel_split(linen_model, "conv3", 2)
    inverted, _ = visualise.invert_channel_groups(linen_model, image, "conv3", groups, stages=STAGES)
    assert inverted.images.shape == (2, 1, SIZE, SIZE, 3)
    assert np.all(inverted.errors < 1.0)


def test_caricature_texture_and_style(linen_model, image):
    result = jaxinv.caricature(linen_model, image, layer="conv2", **FEW)
    assert result.scores["gain"][0] > 1.0
    assert texture.default_texture_layers(linen_model) == ["conv1", "conv2", "conv3", "pool"]
    synth = texture.synthesise_texture(linen_model, image, ["conv1", "conv2"], stages=STAGES)
    assert synth.images.shape == (1, SIZE, SIZE, 3)
    loss = synth.history["loss"][:, 0]
    assert loss[-1] < 0.5 * loss[0], loss[[0, -1]]
    style = texture.transfer_style(linen_model, image, image[::-1], "conv3", ["conv1"], stages=STAGES)
    assert style.content_errors is not None and style.content_errors[0] < 1.0
    with pytest.raises(ValueError, match="texture layer 'fc' has no spatial map in LinenStack"):
        texture.synthesise_texture(linen_model, image, ["fc"])


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=2, name="conv2")(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=2, name="conv3")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(10, name="fc")(x)


def train_small_cnn(steps=300, batch=64, seed=0):
    """A small linen CNN trained on CIFAR-10 for `steps` Adam steps (inputs through the wrapped
    model's convention: ImageNet mean and std on [0, 1])."""
    data = cifar10.load()
    module = SmallCNN()
    convention = adapters.input_convention()
    mean, std = np.asarray(convention["mean"], np.float32), np.asarray(convention["std"], np.float32)
    variables = module.init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3)))
    optimiser = optax.adam(3e-3)
    state = optimiser.init(variables)

    @jax.jit
    def step(variables, state, x, y):
        def loss(v):
            logits = module.apply(v, (x / 255.0 - mean) / std)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        grads = jax.grad(loss)(variables)
        updates, state = optimiser.update(grads, state)
        return optax.apply_updates(variables, updates), state

    rng = np.random.default_rng(seed)
    x_all, y_all = data["train_images"], data["train_labels"]
    for _ in range(steps):
        pick = rng.integers(0, len(x_all), batch)
        variables, state = step(variables, state, jnp.asarray(x_all[pick], jnp.float32), jnp.asarray(y_all[pick]))
    return module, variables


def test_a_class_of_a_small_trained_cnn_is_maximised_to_probability_090():
    module, variables = train_small_cnn()
    model = adapters.from_linen(module, variables, input_size=32)
    model.class_names = list(cifar10.CLASS_NAMES)
    # M over the first CIFAR-10 test images of each class (the default reference for a 32 px RGB model).
    result = jaxinv.maximise(model, unit=1, restarts=2)
    assert result.layer == "output[1]"
    # Measured: probability 0.997 for both restarts (the CNN classifies 50% of 2000 test images right).
    assert np.all(result.scores["probability"] >= 0.9), result.scores
    assert activation_max.unit_name(model, "output", 1, True) == "1 automobile"


def test_the_deep_study_runs_on_an_adapted_model(linen_model, image, tmp_path):
    from jaxinv.studies import deep_networks
    study = deep_networks.run_study(linen_model, image[None], layers=["conv1", "output"], C=[20.0], restarts=2,
                                    stages=STAGES, checkpoint_dir=str(tmp_path / "study"), log=lambda line: None)
    assert study.rule_C == {"conv1": 300.0, "output": 1.0}  # RF 3/32 -> 300; no spatial map -> 1
    for layer in ("conv1", "output"):
        unit = study.units[(layer, 20.0)]
        assert unit["errors"].shape == (1, 2) and np.all(np.isfinite(unit["errors"]))
    assert study.units[("conv1", 20.0)]["errors"].mean() < 1.0
