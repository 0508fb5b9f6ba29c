"""Layer tables as graphs: branches, sums and concatenations run by `graph.run`, and the shapes and
receptive fields `layer_shapes` derives through them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxinv.engine import graph, layer_shapes
from jaxinv.engine.graph import INPUT, Layer
from jaxinv.nets import layers as L


def conv(name, out_channels, kernel, inputs=()):
    p = (kernel - 1) // 2
    return Layer(name, L.conv, dict(out_channels=out_channels, kernel=kernel, stride=1, pad=(p, p, p, p), groups=1),
                 inputs)


def lax_conv(x, p, pad):
    return lax.conv_general_dilated(x, p["w"], (1, 1), ((pad, pad), (pad, pad)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["b"]


# conv -> relu -> conv, plus the identity: y = x + conv2(relu(conv1(x))).
RESIDUAL = [conv("conv1", 4, 3), Layer("relu1", L.relu), conv("conv2", 4, 3),
            Layer("sum", graph.add, inputs=("conv2", INPUT))]
# 1x1 conv, 3x3 conv and 3x3/1 max pool of the input, concatenated on channels.
INCEPTION = [conv("b1", 3, 1, (INPUT,)), conv("b3", 5, 3, (INPUT,)),
             Layer("pool", L.maxpool, dict(kernel=3, stride=1, pad=(1, 1, 1, 1), ceil_mode=False), (INPUT,)),
             Layer("cat", graph.concat, inputs=("b1", "b3", "pool"))]


def random_params(table, input_shape):
    # Nonzero biases too, so that a bias dropped on some branch would show.
    params = layer_shapes.init_params(table, jax.random.PRNGKey(0), input_shape)
    rng = np.random.default_rng(1)
    return {name: dict(p, b=jnp.asarray(rng.standard_normal(p["b"].shape, np.float32))) for name, p in params.items()}


def test_residual_block_matches_the_hand_written_computation():
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype(np.float32)
    params = random_params(RESIDUAL, (8, 8, 4))
    out = jax.jit(lambda p, x: graph.run(RESIDUAL, p, x))(params, x)
    expected = x + lax_conv(jnp.maximum(lax_conv(x, params["conv1"], 1), 0), params["conv2"], 1)
    np.testing.assert_allclose(out["sum"], expected, rtol=1e-5, atol=1e-5)
    assert set(out) == {"conv1", "relu1", "conv2", "sum"}
    assert layer_shapes.output_shapes(RESIDUAL, (8, 8, 4)) == dict.fromkeys(out, (8, 8, 4))
    # The skip sees one pixel, the convolutions 5: their union is 5.
    assert layer_shapes.receptive_fields(RESIDUAL, (8, 8, 4)) == {"conv1": (3, 1), "relu1": (3, 1), "conv2": (5, 1),
                                                                  "sum": (5, 1)}


def test_inception_block_matches_the_hand_written_computation():
    # 4x4 maps: the convolutions take the im2col path of conv2d.
    x = np.random.default_rng(2).standard_normal((2, 4, 4, 4)).astype(np.float32)
    params = random_params(INCEPTION, (4, 4, 4))
    out = jax.jit(lambda p, x: graph.run(INCEPTION, p, x))(params, x)
    pool = lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = jnp.concatenate([lax_conv(x, params["b1"], 0), lax_conv(x, params["b3"], 1), pool], axis=-1)
    np.testing.assert_allclose(out["cat"], expected, rtol=1e-5, atol=1e-5)
    assert layer_shapes.output_shapes(INCEPTION, (4, 4, 4)) == {"b1": (4, 4, 3), "b3": (4, 4, 5), "pool": (4, 4, 4),
                                                               "cat": (4, 4, 12)}
    assert layer_shapes.receptive_fields(INCEPTION, (4, 4, 4)) == {"b1": (1, 1), "b3": (3, 1), "pool": (3, 1),
                                                                   "cat": (3, 1)}
    assert layer_shapes.param_shapes(INCEPTION, (4, 4, 4)) == {"b1": {"w": (1, 1, 4, 3), "b": (3,)},
                                                              "b3": {"w": (3, 3, 4, 5), "b": (5,)}}


def test_strides_and_fields_through_a_graph():
    # Stride 2 on both branches; the 5x5 branch's field is the union's.
    table = [Layer("pool", L.maxpool, dict(kernel=2, stride=2, pad=(0, 0, 0, 0), ceil_mode=False)),
             conv("a", 2, 1), conv("b", 2, 5, ("pool",)), Layer("sum", graph.add, inputs=("a", "b")),
             conv("c", 2, 3)]
    assert layer_shapes.receptive_fields(table, (16, 16, 3)) == {"pool": (2, 2), "a": (2, 2), "b": (10, 2),
                                                                 "sum": (10, 2), "c": (14, 2)}
    assert layer_shapes.output_shapes(table, (16, 16, 3))["sum"] == (8, 8, 2)


def test_upto_stops_the_graph_and_malformed_graphs_are_named():
    x = jnp.zeros((1, 8, 8, 4))
    params = random_params(RESIDUAL, (8, 8, 4))
    assert list(graph.run(RESIDUAL, params, x, upto="relu1")) == ["conv1", "relu1"]
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        graph.run(RESIDUAL, params, x, upto="conv9")
    with pytest.raises(ValueError, match="reads \\['later'\\]"):
        graph.run([Layer("relu", L.relu, inputs=("later",)), Layer("later", L.relu)], None, x)
    with pytest.raises(ValueError, match="used twice"):
        layer_shapes.output_shapes([Layer("a", L.relu), Layer("a", L.relu)], (8, 8, 4))
    with pytest.raises(ValueError, match="layer sum: cannot add maps"):
        layer_shapes.output_shapes([conv("a", 3, 3), Layer("sum", graph.add, inputs=("a", INPUT))], (8, 8, 4))
