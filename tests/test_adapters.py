"""Any JAX model as a Representation: linen, NNX, Equinox and plain-function adapters (small models, 32 px)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from jaxinv import adapters, nets
from jaxinv.engine import compilation, preimage
from jaxinv.io import images
from jaxinv.methods import inversion
from jaxinv.nets import taps
from jaxinv.adapters import geometry
from tests import doc_blocks

SIZE = 32
STAGES = preimage.default_stages(30, 0)
# The stack conv3 s1 -> conv3 s2 -> conv3 s1 -> maxpool 2 s2 -> dense, by hand:
# RF 3, 3 + 2*1 = 5, 5 + 2*2 = 9, 9 + 1*2 = 11; stride 1, 2, 2, 4.
EXPECTED_GEOMETRY = {"conv1": (3, 1), "conv2": (5, 2), "conv3": (9, 2), "pool": (11, 4)}
# Tap names of the stack's layers in each framework.
TAPS = {"linen": dict(conv1="conv1", conv2="conv2", conv3="conv3", pool="pool", fc="fc"),
        "nnx": dict(conv1="conv1", conv2="conv2", conv3="conv3", pool="pool", fc="fc"),
        "equinox": dict(conv1="layers/0", conv2="layers/2", conv3="layers/4", pool="layers/6", fc="layers/8"),
        "function": dict(conv1="conv1", conv2="conv2", conv3="conv3", pool="pool", fc="fc")}
EXPECTED_SHAPES = dict(conv1=(32, 32, 4), conv2=(16, 16, 6), conv3=(16, 16, 8), pool=(8, 8, 8), fc=(5,))


class LinenStack(nn.Module):
    channels: int = 3

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(6, (3, 3), strides=2, name="conv2")(x))
        x = nn.relu(nn.Conv(8, (3, 3), name="conv3")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        self.sow("intermediates", "pool", x)
        return nn.Dense(5, name="fc")(x.reshape(x.shape[0], -1))


class NNXStack(nnx.Module):
    def __init__(self, rngs, channels=3):
        self.conv1 = nnx.Conv(channels, 4, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(4, 6, (3, 3), strides=2, rngs=rngs)
        self.conv3 = nnx.Conv(6, 8, (3, 3), rngs=rngs)
        self.fc = nnx.Linear(8 * 8 * 8, 5, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = nnx.relu(self.conv3(x))
        x = nnx.max_pool(x, (2, 2), (2, 2))
        self.sow(nnx.Intermediate, "pool", x)
        return self.fc(x.reshape(x.shape[0], -1))


def equinox_stack(seed=0):
    eqx = pytest.importorskip("equinox")
    k = jax.random.split(jax.random.key(seed), 4)
    return eqx.nn.Sequential([
        eqx.nn.Conv2d(3, 4, 3, padding=1, key=k[0]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Conv2d(4, 6, 3, stride=2, padding=1, key=k[1]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Conv2d(6, 8, 3, padding=1, key=k[2]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.MaxPool2d(2, 2), eqx.nn.Lambda(jnp.ravel), eqx.nn.Linear(8 * 8 * 8, 5, key=k[3])])


def _conv(x, w, stride):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def function_stack(params, x):
    """A plain apply(params, x) -> {tap: array}."""
    out = {"conv1": _conv(x, params["w1"], 1)}
    out["conv2"] = _conv(jax.nn.relu(out["conv1"]), params["w2"], 2)
    out["conv3"] = _conv(jax.nn.relu(out["conv2"]), params["w3"], 1)
    out["pool"] = nn.max_pool(jax.nn.relu(out["conv3"]), (2, 2), (2, 2))
    out["fc"] = out["pool"].reshape(1, -1) @ params["fc"]
    return out


def function_params(seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    return {"w1": jax.random.normal(k[0], (3, 3, 3, 4)) * 0.3, "w2": jax.random.normal(k[1], (3, 3, 4, 6)) * 0.3,
            "w3": jax.random.normal(k[2], (3, 3, 6, 8)) * 0.3, "fc": jax.random.normal(k[3], (512, 5)) * 0.05}


def make(kind, seed=0, **kwargs):
    """(TappedModel, direct(image_in_model_space) -> {stack layer: output}) of the stack in framework `kind`."""
    if kind == "linen":
        module = LinenStack()
        variables = module.init(jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, 3)))
        model = adapters.from_linen(module, variables, input_size=SIZE, **kwargs)

        def direct(x):
            out, state = module.apply(variables, x[None], capture_intermediates=True, mutable=["intermediates"])
            inter = state["intermediates"]
            return dict(conv1=inter["conv1"]["__call__"][0][0], conv2=inter["conv2"]["__call__"][0][0],
                        conv3=inter["conv3"]["__call__"][0][0], pool=inter["pool"][0][0], fc=out[0])
    elif kind == "nnx":
        module = NNXStack(nnx.Rngs(seed))
        model = adapters.from_nnx(module, input_size=SIZE, **kwargs)

        def direct(x):
            a = module.conv1(x[None])
            b = module.conv2(jax.nn.relu(a))
            c = module.conv3(jax.nn.relu(b))
            p = nnx.max_pool(jax.nn.relu(c), (2, 2), (2, 2))
            return dict(conv1=a[0], conv2=b[0], conv3=c[0], pool=p[0], fc=module.fc(p.reshape(1, -1))[0])
    elif kind == "equinox":
        stack = equinox_stack(seed)
        model = adapters.from_equinox(stack, input_size=SIZE, **kwargs)

        def direct(x):
            h, out = jnp.moveaxis(x, -1, 0), {}
            for i, layer in enumerate(stack.layers):
                h = layer(h)
                out[i] = h
            hwc = lambda a: jnp.moveaxis(a, 0, -1)
            return dict(conv1=hwc(out[0]), conv2=hwc(out[2]), conv3=hwc(out[4]), pool=hwc(out[6]), fc=out[8])
    else:
        params = function_params(seed)
        model = adapters.from_function(function_stack, params, input_size=SIZE, **kwargs)

        def direct(x):
            return {k: v[0] for k, v in function_stack(params, x[None]).items()}
    return model, direct


KINDS = ["linen", "nnx", "equinox", "function"]


@pytest.fixture(scope="module")
def image():
    return images.load_sample_image(size=SIZE)


@pytest.mark.parametrize("kind", KINDS)
def test_layers_list_the_taps_with_their_shapes(kind):
    model, _ = make(kind)
    shapes = model.layers()
    for layer, tap in TAPS[kind].items():
        assert shapes[tap] == EXPECTED_SHAPES[layer], (tap, shapes)
    if kind != "function":
        assert shapes["output"] == (5,)
    assert model.representation(TAPS[kind]["conv1"], stride=1).layers == tuple(shapes)


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_tap_lists_the_valid_ones(kind):
    model, _ = make(kind)
    with pytest.raises(ValueError, match="unknown tap 'conv9'") as error:
        model.representation("conv9")
    for tap in TAPS[kind].values():
        assert tap in str(error.value)


@pytest.mark.parametrize("kind", KINDS)
def test_the_code_is_the_model_on_the_image_through_the_convention(kind, image):
    model, direct = make(kind)
    x_net = (image / 255.0 - np.array(adapters.IMAGENET["mean"])) / np.array(adapters.IMAGENET["std"])
    expected = direct(jnp.asarray(x_net, jnp.float32))
    for layer, tap in TAPS[kind].items():
        rep = model.representation(tap, stride=1)
        assert rep.channels == 3 and rep.input_size == (SIZE, SIZE)
        np.testing.assert_allclose(rep.mean, np.array(adapters.IMAGENET["mean"]) * 255, rtol=1e-6)
        np.testing.assert_allclose(rep(rep.to_null_mean(image)), expected[layer], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_measured_receptive_field_and_stride_equal_the_analytic_ones(kind):
    model, _ = make(kind)
    for layer, (field, stride) in EXPECTED_GEOMETRY.items():
        measured = model.geometry(TAPS[kind][layer])
        assert measured.spatial and not measured.clipped
        assert measured.receptive_field == (field, field), (layer, measured)
        assert measured.stride == (stride, stride), (layer, measured)
        assert model.representation(TAPS[kind][layer]).stride == stride
    fc = model.geometry(TAPS[kind]["fc"])
    assert not fc.spatial and fc.stride is None and fc.receptive_field == (SIZE, SIZE)
    # A dense tap takes the stride of the coarsest map (the pool's), like the tables' fully connected layers.
    assert model.representation(TAPS[kind]["fc"]).stride == 4


def fully_convolutional(params, x):
    a = _conv(x, params["w1"], 1)
    return {"conv1": a, "conv2": _conv(jax.nn.relu(a), params["w2"], 2)}


def test_geometry_on_other_and_non_square_sizes():
    model = adapters.from_function(fully_convolutional, function_params(), input_size=SIZE)
    assert model.layers((24, 40)) == {"conv1": (24, 40, 4), "conv2": (12, 20, 6)}
    measured = model.geometry("conv2", input_size=(24, 40))
    assert measured.receptive_field == (5, 5) and measured.stride == (2, 2) and measured.input_size == (24, 40)
    rep = model.representation("conv2", input_size=(24, 40))
    assert rep.input_size == (24, 40) and rep.min_size == 24 and rep.stride == 2
    # A field reaching the border is flagged as clipped (a lower bound).
    tiny = geometry.measure(model.representation("conv2", input_size=4, stride=1))
    assert tiny.clipped


def test_measured_geometry_matches_the_layer_tables_of_a_shipped_network():
    model = nets.load("cifar-ref")
    for layer in ("relu1", "pool2", "conv3", "pool3"):
        measured = geometry.measure(taps.representation(model, layer, input_size=64))
        assert not measured.clipped
        field, stride = model.receptive_fields[layer]
        assert measured.receptive_field == (field, field) and measured.stride == (stride, stride), layer


def test_problem_for_applies_the_per_layer_rules():
    model, _ = make("linen")
    assert model.problem("conv1") == preimage.Problem(C=300.0, jitter=1)  # 3 / 32 <= 0.45; stride 1
    assert model.problem("pool") == preimage.Problem(C=300.0, jitter=1)  # 11 / 32; round(4 / 4) = 1
    assert model.problem("fc").C == 1.0  # past the convolutional trunk
    wide = geometry.Geometry((32, 32), True, (17, 17), (8, 8), (0, 0, 17, 17), (0, 0), False)
    assert geometry.measured_C(wide) == 100.0 and geometry.jitter_for(8) == 2
    rep = model.representation("conv3")
    assert adapters.problem_for(rep, C=7.0, jitter=False, geometry=wide) == preimage.Problem(C=7.0, jitter=1)


@pytest.mark.parametrize("kind", KINDS)
def test_inverting_a_tap_reduces_the_loss(kind, image):
    model, _ = make(kind)
    rep = model.representation(TAPS[kind]["conv2"])
    result = inversion.invert_images(rep, [image], problem=adapters.problem_for(rep, C=100.0), stages=STAGES)
    loss = result.history["loss"][:, 0]
    assert loss[-1] < 0.5 * loss[0], loss[[0, -1]]
    assert result.images.shape == (1, 1, SIZE, SIZE, 3)


@pytest.mark.parametrize("kind", ["linen", "nnx", "equinox"])
def test_a_second_module_of_one_structure_compiles_nothing(kind, image):
    runs = []
    for seed in (0, 1):
        model, direct = make(kind, seed=seed)
        rep = model.representation(TAPS[kind]["conv3"])
        with compilation.counting() as record:
            problem = adapters.problem_for(rep)
            result = inversion.invert_images(rep, [image], problem=problem, stages=STAGES)
        runs.append((record, result, direct))
    (cold, first, _), (warm, second, direct) = runs
    assert cold.count > 0 and warm.count == 0
    # The second run used the second weights.
    x_net = (image / 255.0 - np.array(adapters.IMAGENET["mean"])) / np.array(adapters.IMAGENET["std"])
    np.testing.assert_allclose(second.target_codes[0], direct(jnp.asarray(x_net, jnp.float32))["conv3"],
                               rtol=1e-4, atol=1e-4)
    assert not np.allclose(first.target_codes, second.target_codes)


def test_grey_and_caffe_conventions(image):
    grey = images.load_sample_image(size=SIZE, grey=True)
    module = NNXStack(nnx.Rngs(0), channels=1)
    model = adapters.from_nnx(module, input_size=SIZE, convention=adapters.input_convention(1))
    rep = model.representation("conv2")
    assert rep.channels == 1 and rep.stride == 2
    np.testing.assert_allclose(rep.mean, (0.449 * 255,), rtol=1e-6)
    x_net = (np.asarray(grey, np.float32)[..., None] / 255.0 - 0.449) / 0.226
    expected = module.conv2(jax.nn.relu(module.conv1(jnp.asarray(x_net)[None])))[0]
    np.testing.assert_allclose(rep(rep.to_null_mean(grey)), expected, rtol=1e-4, atol=1e-4)
    assert rep.to_display(rep.to_null_mean(grey)).shape == (SIZE, SIZE)

    caffe = adapters.input_convention(channel_order="BGR", pixel_range=255.0, mean=(103.939, 116.779, 123.68), std=1)
    model, direct = make("linen", convention=caffe)
    rep = model.representation("conv1", stride=1)
    np.testing.assert_allclose(rep.mean, (123.68, 116.779, 103.939), rtol=1e-6)
    expected = direct(jnp.asarray(image[..., ::-1] - np.array(caffe["mean"]), jnp.float32))["conv1"]
    np.testing.assert_allclose(rep(rep.to_null_mean(image)), expected, rtol=1e-4, atol=1e-3)


def test_conventions_are_checked():
    with pytest.raises(ValueError, match="give mean and std"):
        adapters.input_convention(4)
    with pytest.raises(ValueError, match="BGR"):
        adapters.input_convention(1, channel_order="BGR")
    with pytest.raises(ValueError, match="pixel_range=1"):
        adapters.input_convention(pixel_range=255.0)
    with pytest.raises(ValueError, match="misses"):
        adapters.from_function(function_stack, function_params(), input_size=SIZE, convention={"mean": (0.5,)})
    with pytest.raises(ValueError, match="hashable"):
        adapters.TappedModel(UnhashableTaps(), None, input_size=SIZE)
    with pytest.raises(ValueError, match=r"mean \(123.68, 116.78, 103.94\) lies outside the pixel range \[0, 1\]"):
        adapters.input_convention(mean=(123.68, 116.78, 103.94), std=(1, 1, 1))


@pytest.mark.parametrize("kind", ["linen", "nnx", "equinox", "function"])
def test_a_model_that_does_not_take_the_conventions_channels_is_refused(kind):
    grey = adapters.input_convention(1)
    with pytest.raises(ValueError, match=r"does not run on 32x32 images with 1 channel\(s\)"):
        make(kind, convention=grey)


class UnhashableTaps:
    __hash__ = None

    def __call__(self, params, x):
        return {"x": x}


def test_readme_example_runs(tmp_path, monkeypatch):
    code = doc_blocks.python_block("# Your own model", "docs/your_own_model.md")
    assert len(code.strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "docs/your_own_model.md", "exec"), namespace)
    import jaxinv
    assert jaxinv.adapters is adapters
    assert namespace["model"].representation("Conv_1").stride == 2
    result = namespace["result"]
    assert result.history["loss"][-1, 0] < result.history["loss"][0, 0]
    assert (tmp_path / "outputs" / "my_model" / "grid.png").is_file()
    assert namespace["model"].layers() == {"Conv_0": (32, 32, 8), "Conv_1": (16, 16, 16), "output": (16, 16, 16)}