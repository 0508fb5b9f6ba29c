"""Layer tables, derived geometry and the hand-written layer gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxinv import nets
from jaxinv.nets import layers
from jaxinv.nets.tables import INPUT_SIZES

# IJCV "Visualizing deep convolutional neural networks using natural pre-images", Table 1.
PAPER_RECEPTIVE_FIELDS = {
    "caffe-alex": dict(conv1=(11, 4), pool1=(19, 8), conv2=(51, 8), pool2=(67, 16), conv3=(99, 16),
                       conv4=(131, 16), conv5=(163, 16), pool5=(195, 32), fc6=(355, 32)),
    "vgg-m": dict(conv1=(7, 2), pool1=(11, 4), conv2=(27, 8), pool2=(43, 16), conv3=(75, 16),
                  conv4=(107, 16), conv5=(139, 16), pool5=(171, 32), fc6=(331, 32)),
    "vgg-vd-16": dict(conv1_1=(3, 1), conv1_2=(5, 1), pool1=(6, 2), conv2_1=(10, 2), conv2_2=(14, 2),
                      pool2=(16, 4), conv3_1=(24, 4), conv3_2=(32, 4), conv3_3=(40, 4), pool3=(44, 8),
                      conv4_1=(60, 8), conv4_2=(76, 8), conv4_3=(92, 8), pool4=(100, 16),
                      conv5_1=(132, 16), conv5_2=(164, 16), conv5_3=(196, 16), pool5=(212, 32),
                      fc6=(404, 32)),
}
PAPER_RECEPTIVE_FIELDS["caffe-ref"] = PAPER_RECEPTIVE_FIELDS["caffe-alex"]


@pytest.mark.parametrize("arch", sorted(PAPER_RECEPTIVE_FIELDS))
def test_receptive_fields_match_paper_table(arch):
    derived = nets.receptive_fields(nets.build(arch), INPUT_SIZES[arch])
    assert {name: derived[name] for name in PAPER_RECEPTIVE_FIELDS[arch]} == PAPER_RECEPTIVE_FIELDS[arch]


def test_layer_order_and_names():
    ref, alex = nets.build("caffe-ref"), nets.build("caffe-alex")
    names = [layer.name for layer in ref]
    assert names[:4] == ["conv1", "relu1", "pool1", "norm1"]
    assert [layer.name for layer in alex][:4] == ["conv1", "relu1", "norm1", "pool1"]
    assert names[-6:] == ["fc6", "relu6", "fc7", "relu7", "fc8", "prob"]
    for arch in nets.architectures():
        assert nets.build(arch)[-1].name == "prob"


def test_unknown_architecture_lists_valid_ones():
    with pytest.raises(ValueError, match="caffe-ref"):
        nets.build("resnet")


@pytest.mark.parametrize("arch", ["caffe-ref", "vgg-m", "torchvision-alexnet"])
def test_output_shapes_match_apply(arch):
    table = nets.build(arch)
    size = INPUT_SIZES[arch]
    shapes = jax.eval_shape(lambda: nets.apply(table, nets.init_params(table, jax.random.PRNGKey(0), size),
                                               jnp.zeros((2, size, size, 3))))
    assert {name: s.shape[1:] for name, s in shapes.items()} == nets.output_shapes(table, size)
    assert shapes["pool5"].shape == (2, 6, 6, 256 if "alex" in arch or "ref" in arch else 512)
    assert shapes["prob"].shape == (2, 1000)


def test_apply_stops_at_upto_and_rejects_unknown_layer():
    table = nets.build("cifar-ref")
    params = nets.init_params(table, jax.random.PRNGKey(0), 32)
    out = jax.jit(lambda params, x: nets.apply(table, params, x, upto="pool2"))(params, jnp.zeros((1, 32, 32, 3)))
    assert set(out) == {"conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2"}
    with pytest.raises(ValueError, match="unknown layer"):
        nets.apply(table, params, jnp.zeros((1, 32, 32, 3)), upto="conv9")


@pytest.mark.parametrize("kernel,stride,pad,ceil_mode,size", [
    (3, 2, (0, 0, 0, 0), True, 13), (3, 2, (0, 0, 0, 0), True, 14), (2, 2, (0, 0, 0, 0), False, 9),
    (3, 2, (1, 1, 1, 1), True, 10), (3, 3, (0, 1, 0, 1), False, 11)])
def test_maxpool_gradient_matches_autodiff(kernel, stride, pad, ceil_mode, size):
    x = jax.random.normal(jax.random.PRNGKey(1), (2, size, size + 1, 3))
    g = jax.random.normal(jax.random.PRNGKey(2), layers.maxpool(x, kernel=kernel, stride=stride, pad=pad,
                                                                  ceil_mode=ceil_mode).shape)

    def reference(x):  # reduce_window's own gradient, on the same padded input
        y = layers.maxpool(x, kernel=kernel, stride=stride, pad=pad, ceil_mode=ceil_mode)
        h, w = y.shape[1:3]
        bottom = max(pad[1], (h - 1) * stride + kernel - x.shape[1] - pad[0])
        right = max(pad[3], (w - 1) * stride + kernel - x.shape[2] - pad[2])
        xp = jnp.pad(x, ((0, 0), (pad[0], bottom), (pad[2], right), (0, 0)), constant_values=-jnp.inf)
        return lax.reduce_window(xp, -jnp.inf, lax.max, (1, kernel, kernel, 1), (1, stride, stride, 1), "VALID")

    def value_and_pullback(f):  # jitted: op-by-op dispatch would compile every op separately
        return jax.jit(lambda x, g: (lambda y, pullback: (y, pullback(g)[0]))(*jax.vjp(f, x)))(x, g)

    y, ours = value_and_pullback(lambda x: layers.maxpool(x, kernel=kernel, stride=stride, pad=pad,
                                                          ceil_mode=ceil_mode))
    expected, theirs = value_and_pullback(reference)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_im2col_convolution_matches_xla(monkeypatch):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 11, 13, 6))
    params = {"w": jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 8)), "b": jnp.arange(8.0)}
    kwargs = dict(out_channels=8, kernel=3, stride=2, pad=(1, 0, 2, 1), groups=2)

    def conv(max_im2col_pixels):  # conv2d picks im2col for maps of at most this many output pixels
        monkeypatch.setattr(layers, "IM2COL_MAX_PIXELS", max_im2col_pixels)
        return jax.jit(lambda x: layers.conv(x, params, **kwargs))(x)
    np.testing.assert_allclose(conv(10 ** 9), conv(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size, kernel, stride, pad", [
    (35, 11, 4, (0, 0, 0, 0)),   # caffe-ref conv1's geometry (output sizes that do not divide evenly)
    (13, 3, 1, (1, 1, 1, 1)),
    (20, 5, 2, (2, 1, 0, 3)),    # asymmetric padding
    (9, 3, 2, (1, 1, 1, 1)),
    (11, 1, 2, (0, 0, 0, 0)),    # a strided 1x1 shortcut (ResNet), odd sizes
])
@pytest.mark.parametrize("convolution", ["xla", "space_to_depth", "conv2d"])
def test_convolution_backward_matches_autodiff(size, kernel, stride, pad, convolution):
    """The hand-written backward of the XLA convolution (its input gradient a transposed convolution with a
    materialised kernel), and the space-to-depth rewrite of strided convolutions built on it, give lax's own
    outputs and input and weight gradients; so does `conv2d`, whichever of them its rule picks."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)), jnp.float32)
    reference = lambda x, w: lax.conv_general_dilated(x, w, (stride, stride), ((pad[0], pad[1]), (pad[2], pad[3])),
                                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y, reference_vjp = jax.vjp(reference, x, w)
    function = {"xla": layers._conv_xla, "space_to_depth": layers.space_to_depth_conv, "conv2d": layers.conv2d}
    ours, vjp = jax.vjp(lambda x, w: function[convolution](x, w, stride, pad), x, w)
    assert y.shape[1] * y.shape[2] > layers.IM2COL_MAX_PIXELS  # not the im2col path
    np.testing.assert_allclose(ours, y, rtol=1e-5, atol=1e-4)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    for found, expected in zip(vjp(g), reference_vjp(g)):
        np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-3 * float(jnp.max(jnp.abs(expected))))


@pytest.mark.parametrize("shape, kernel, stride, space_to_depth", [
    ((1, 227, 227, 3), (11, 11, 3, 96), 4, True),     # caffe-ref conv1
    ((1, 224, 224, 3), (7, 7, 3, 64), 2, True),       # ResNet conv1
    ((1, 224, 224, 1), (7, 7, 1, 64), 2, True),       # a grey input layer
    ((1, 55, 55, 96), (5, 5, 96, 256), 2, False),     # VGG-M conv2: too many channels
    ((1, 56, 56, 3), (1, 1, 3, 64), 2, False),        # kernel not larger than the stride
])
def test_conv2d_folds_strided_input_layers_to_stride_one(shape, kernel, stride, space_to_depth):
    jaxpr = str(jax.make_jaxpr(lambda x, w: layers.conv2d(x, w, stride, (1, 1, 1, 1)))(
        jax.ShapeDtypeStruct(shape, jnp.float32), jax.ShapeDtypeStruct(kernel, jnp.float32)))
    assert (f"window_strides=({stride}, {stride})" not in jaxpr) == space_to_depth
    assert ("window_strides=(1, 1)" in jaxpr) == space_to_depth


@pytest.mark.parametrize("height, width, pad", [
    (14, 14, (1, 1, 1, 1)),   # VGG's geometry: an even map
    (7, 9, (1, 1, 1, 1)),     # odd sizes: the last tile row and column are cropped
    (8, 11, (0, 0, 0, 0)),    # no padding
    (10, 6, (2, 0, 1, 3)),    # asymmetric padding
])
def test_winograd_convolution_matches_lax(height, width, pad):
    """Winograd F(2x2, 3x3) gives lax's convolution, and (by autodiff) its input and kernel gradients."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, height, width, 6)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 6, 5)), jnp.float32)
    reference = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((pad[0], pad[1]), (pad[2], pad[3])),
                                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y, reference_vjp = jax.vjp(reference, x, w)
    ours, vjp = jax.vjp(lambda x, w: layers.winograd_conv3x3(x, w, pad), x, w)
    assert ours.shape == y.shape
    np.testing.assert_allclose(ours, y, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    for found, expected in zip(vjp(g), reference_vjp(g)):
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape, kernel, stride, winograd", [
    ((1, 28, 28, 256), (3, 3, 256, 256), 1, True),     # VGG conv4: 196 tiles
    ((1, 14, 14, 512), (3, 3, 512, 512), 1, False),    # 49 tiles: too few for the transforms to pay
    ((8, 14, 14, 512), (3, 3, 512, 512), 1, True),     # ... unless 8 restarts batch them
    ((1, 56, 56, 128), (3, 3, 128, 128), 1, False),    # too few channels
    ((1, 28, 28, 256), (3, 3, 256, 256), 2, False),    # strided
    ((1, 28, 28, 256), (5, 5, 256, 256), 1, False),    # not 3x3
])
def test_conv2d_takes_winograd_for_large_stride_one_3x3_layers(shape, kernel, stride, winograd, monkeypatch):
    """The rule without the custom call (tests/test_winograd_kernel.py tests the rule with it)."""
    monkeypatch.setattr(layers.winograd_kernel, "available", lambda: False)
    jaxpr = jax.make_jaxpr(lambda x, w: layers.conv2d(x, w, stride, (1, 1, 1, 1)))(
        jax.ShapeDtypeStruct(shape, jnp.float32), jax.ShapeDtypeStruct(kernel, jnp.float32))
    assert ("conv_general_dilated" not in str(jaxpr)) == winograd


def test_conv2d_slices_before_strided_one_by_one_convolutions():
    """ResNet's downsampling shortcut (1x1, stride 2) runs as a stride-1 convolution of every second pixel;
    with padding, a 1x1 kernel also reads the zeros, so that case keeps the strided convolution."""
    shapes = jax.ShapeDtypeStruct((1, 56, 56, 256), jnp.float32), jax.ShapeDtypeStruct((1, 1, 256, 512), jnp.float32)
    sliced = str(jax.make_jaxpr(lambda x, w: layers.conv2d(x, w, 2))(*shapes))
    assert "window_strides=(1, 1)" in sliced and "window_strides=(2, 2)" not in sliced
    padded = str(jax.make_jaxpr(lambda x, w: layers.conv2d(x, w, 2, (1, 1, 1, 1)))(*shapes))
    assert "window_strides=(2, 2)" in padded


def test_conv2d_leaves_winograd_to_cpu(monkeypatch):
    """Measured on CPU only: on other backends the vendor's convolution keeps the layer."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    jaxpr = jax.make_jaxpr(lambda x, w: layers.conv2d(x, w, 1, (1, 1, 1, 1)))(
        jax.ShapeDtypeStruct((1, 28, 28, 256), jnp.float32), jax.ShapeDtypeStruct((3, 3, 256, 256), jnp.float32))
    assert "conv_general_dilated" in str(jaxpr)
    strided = jax.make_jaxpr(lambda x, w: layers.conv2d(x, w, 4, (0, 0, 0, 0)))(
        jax.ShapeDtypeStruct((1, 227, 227, 3), jnp.float32), jax.ShapeDtypeStruct((11, 11, 3, 96), jnp.float32))
    assert "window_strides=(4, 4)" in str(strided)


def test_lrn_matches_direct_formula():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype(np.float32) * 30
    y = layers.lrn(jnp.asarray(x), size=5, alpha=1e-4, beta=0.75, k=1.0)
    squares = np.pad(x ** 2, ((0, 0), (0, 0), (0, 0), (2, 2)))
    expected = x / (1 + 1e-4 / 5 * sum(squares[..., i:i + 7] for i in range(5))) ** 0.75
    np.testing.assert_allclose(y, expected, rtol=1e-5)
