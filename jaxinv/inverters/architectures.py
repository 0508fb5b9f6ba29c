"""Inverter architectures of Dosovitskiy & Brox (CVPR 2016, supplementary tables) as layer tables,
scaled to any feature and image size by one rule.

A table is a list of `Layer`s: data (name, op, hyper-parameters, input layers, activation) that
`run` interprets. Five families:

- "hog", "lbp" (two streams): stream A downsamples the feature map with stride-2 convolutions
  (kernels 5, 5, 3) and up-convolves back to its size; stream B keeps the resolution (conv 5/1,
  conv 3/1, 128 channels); the join concatenates them, conv 3/1 -> 256, conv 3/1 -> 128.
- "sift": stride-2 convolutions (kernels 5, 3, 3, 3), then conv 3/1 twice at the bottleneck.
- "conv" (CNN convolutional layers): three conv 3/1 -> 256.
- "fc" (CNN fully connected layers, or any 1-D code): fc 4096, fc 4096, fc 4096 -> reshape 4x4x256.

All families then up-convolve (4/2, or 5/2 for "conv"/"fc") to the output image, 3 channels.

The rule (O = output image size, a map of side O / 2^j is "at level j"):

- number of output up-convolutions = log2(O / side of the map they start from); it must be a whole
  number (ValueError otherwise). With none ("conv" family at the image size) the last layer is a
  conv 3/1 -> 3.
- downsampling (stream A, "sift"): while the map halves evenly and stays >= 2 cells, capped at the
  paper's depth (hog 3, lbp 2, sift 4).
- channel widths: up-convolutions and stream A output 16 * 2^j channels at level j (the "sift"
  encoder 32 * 2^j, its second bottleneck conv 16 * 2^j); the other layers keep the paper's fixed
  widths; all are multiplied by `width` (rounded, at least 1). The image layer has 3.

At the paper's sizes this reproduces every listed shape (tests/test_inverters.py): HOG 32x32x31 ->
256, LBP 16x16x58 -> 256, SIFT 64x64x133 -> 256, conv 6x6x256 -> 192 (= 6 * 2^5: the paper's five
5/2 up-convolutions; its 227-pixel AlexNet input is not a power-of-two multiple of 6) and
fc 1000 -> 128 (= 4 * 2^5: the listed reshape 4x4x256 and five up-convolutions). Every layer but the
last is followed by a leaky ReLU of slope 0.2.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.inverters import layers as L

FAMILIES = ("hog", "lbp", "sift", "conv", "fc")
INPUT = "features"
STREAM_A_KERNELS = (5, 5, 3)
SIFT_KERNELS = (5, 3, 3, 3)
DEPTH_CAP = {"hog": 3, "lbp": 2, "sift": 4}
MIN_CELLS = 2


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer: `op` names a function of `layers.OPS`, `hyper` its static hyper-parameters,
    `inputs` the layers it reads (empty: the previous layer of the table, or the features for the
    first), `leaky` whether a leaky ReLU follows."""
    name: str
    op: str
    hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    leaky: bool = True

    def as_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "hyper": dict(self.hyper), "inputs": list(self.inputs),
                "leaky": self.leaky}


def _channels(width: float, base: float) -> int:
    return max(1, int(round(base * width)))


def _level(side: int, image_size: int) -> int:
    """j with side = image_size / 2^j."""
    ratio = image_size / side
    j = round(math.log2(ratio)) if ratio >= 1 else -1
    if j < 0 or side * 2 ** j != image_size:
        raise ValueError(f"a {side}x{side} map does not reach a {image_size}x{image_size} image by 2x "
                         f"up-convolutions: the image size must be the map size times a power of two")
    return j


def _halvings(side: int, cap: int) -> int:
    """How many times a side-length map halves evenly while staying >= MIN_CELLS, at most `cap`."""
    d = 0
    while d < cap and side % 2 ** (d + 1) == 0 and side // 2 ** (d + 1) >= MIN_CELLS:
        d += 1
    return d


def _up_ladder(side: int, image_size: int, width: float, kernel: int, first_input: str | None,
               prefix: str = "up") -> list[Layer]:
    """Up-convolutions from a side x side map to the image: 16 * 2^j channels at level j, 3 last."""
    levels = _level(side, image_size)
    table = []
    for i in range(levels):
        j = levels - i - 1  # level of this layer's output
        last = j == 0
        out = 3 if last else _channels(width, 16 * 2 ** j)
        inputs = (first_input,) if i == 0 and first_input else ()
        table.append(Layer(f"{prefix}{i + 1}", "upconv", dict(out_channels=out, kernel=kernel), inputs, leaky=not last))
    if not table:
        table.append(Layer("image", "conv", dict(out_channels=3, kernel=3, stride=1),
                           (first_input,) if first_input else (), leaky=False))
    return table


def _spatial(feature_shape, family: str) -> tuple[int, int]:
    if len(feature_shape) != 3 or feature_shape[0] != feature_shape[1] or min(feature_shape) < 1:
        raise ValueError(f"the {family!r} inverter takes square (H, H, C) feature maps; got shape {tuple(feature_shape)}")
    return feature_shape[0], feature_shape[2]


def _two_stream(family, feature_shape, image_size, width) -> list[Layer]:
    side, _ = _spatial(feature_shape, family)
    depth = _halvings(side, DEPTH_CAP[family])
    table = []
    for i in range(depth):  # stream A, down
        out_side = side // 2 ** (i + 1)
        table.append(Layer(f"a_conv{i + 1}", "conv",
                           dict(out_channels=_channels(width, 16 * 2 ** _level(out_side, image_size)),
                                kernel=STREAM_A_KERNELS[i], stride=2), (INPUT,) if i == 0 else ()))
    for i in range(depth):  # stream A, up
        out_side = side // 2 ** (depth - i - 1)
        table.append(Layer(f"a_up{i + 1}", "upconv",
                           dict(out_channels=_channels(width, 16 * 2 ** _level(out_side, image_size)), kernel=4)))
    stream_a = table[-1].name if depth else INPUT
    table += [Layer("b_conv1", "conv", dict(out_channels=_channels(width, 128), kernel=5, stride=1), (INPUT,)),
              Layer("b_conv2", "conv", dict(out_channels=_channels(width, 128), kernel=3, stride=1)),
              Layer("join", "concat", {}, (stream_a, "b_conv2"), leaky=False),
              Layer("join_conv1", "conv", dict(out_channels=_channels(width, 256), kernel=3, stride=1)),
              Layer("join_conv2", "conv", dict(out_channels=_channels(width, 128), kernel=3, stride=1))]
    return table + _up_ladder(side, image_size, width, 4, None)


def _sift(feature_shape, image_size, width) -> list[Layer]:
    side, _ = _spatial(feature_shape, "sift")
    depth = _halvings(side, DEPTH_CAP["sift"])
    table = []
    for i in range(depth):
        level = _level(side // 2 ** (i + 1), image_size)
        table.append(Layer(f"conv{i + 1}", "conv", dict(out_channels=_channels(width, 32 * 2 ** level),
                                                        kernel=SIFT_KERNELS[i], stride=2)))
    bottom = side // 2 ** depth
    level = _level(bottom, image_size)
    table += [Layer(f"conv{depth + 1}", "conv", dict(out_channels=_channels(width, 32 * 2 ** level), kernel=3, stride=1)),
              Layer(f"conv{depth + 2}", "conv", dict(out_channels=_channels(width, 16 * 2 ** level), kernel=3, stride=1))]
    return table + _up_ladder(bottom, image_size, width, 4, None)


def _cnn_conv(feature_shape, image_size, width) -> list[Layer]:
    side, _ = _spatial(feature_shape, "conv")
    _level(side, image_size)
    table = [Layer(f"conv{i + 1}", "conv", dict(out_channels=_channels(width, 256), kernel=3, stride=1))
             for i in range(3)]
    return table + _up_ladder(side, image_size, width, 5, None)


FC_RESHAPE = (4, 4, 256)


def _cnn_fc(feature_shape, image_size, width) -> list[Layer]:
    if len(feature_shape) != 1 or feature_shape[0] < 1:
        raise ValueError(f"the 'fc' inverter takes 1-D feature vectors (D,); got shape {tuple(feature_shape)}")
    side, _, depth = FC_RESHAPE
    depth = _channels(width, depth)
    table = [Layer("fc1", "fc", dict(units=_channels(width, 4096))),
             Layer("fc2", "fc", dict(units=_channels(width, 4096))),
             Layer("fc3", "fc", dict(units=side * side * depth)),
             Layer("reshape", "reshape", dict(shape=(side, side, depth)), leaky=False)]
    return table + _up_ladder(side, image_size, width, 5, None)


_BUILDERS = {"hog": lambda f, o, w: _two_stream("hog", f, o, w),
             "lbp": lambda f, o, w: _two_stream("lbp", f, o, w),
             "sift": _sift, "conv": _cnn_conv, "fc": _cnn_fc}


def build(family: str, feature_shape: Sequence[int], image_size: int, width: float = 1.0) -> list[Layer]:
    """The layer table inverting features of `feature_shape` ((H, H, C), or (D,) for "fc") into
    image_size x image_size x 3 images, channel widths scaled by `width`."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown inverter family {family!r}; valid families: {', '.join(FAMILIES)}")
    if not width > 0:
        raise ValueError(f"width multiplier must be positive; got {width}")
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image size must be a positive integer; got {image_size!r}")
    return _BUILDERS[family](tuple(int(s) for s in feature_shape), int(image_size), float(width))


def _input_names(table: Sequence[Layer], index: int) -> tuple[str, ...]:
    layer = table[index]
    if layer.inputs:
        return layer.inputs
    return (INPUT,) if index == 0 else (table[index - 1].name,)


def _layer_shape(layer: Layer, shapes: list[tuple]) -> tuple:
    h = layer.hyper
    if layer.op == "concat":
        spatial = {s[:-1] for s in shapes}
        if len(spatial) != 1:
            raise ValueError(f"layer {layer.name}: cannot concatenate maps of shapes {shapes}")
        return shapes[0][:-1] + (sum(s[-1] for s in shapes),)
    (shape,) = shapes
    if layer.op == "conv":
        if len(shape) != 3:
            raise ValueError(f"layer {layer.name}: conv needs an (H, W, C) input, got {shape}")
        p = (h["kernel"] - 1) // 2
        side = lambda n: (n + 2 * p - h["kernel"]) // h["stride"] + 1
        return side(shape[0]), side(shape[1]), h["out_channels"]
    if layer.op == "upconv":
        return 2 * shape[0], 2 * shape[1], h["out_channels"]
    if layer.op == "fc":
        return (h["units"],)
    if layer.op == "reshape":
        if math.prod(shape) != math.prod(h["shape"]):
            raise ValueError(f"layer {layer.name}: cannot reshape {shape} to {tuple(h['shape'])}")
        return tuple(h["shape"])
    raise ValueError(f"layer {layer.name}: unknown op {layer.op!r}")


def output_shapes(table: Sequence[Layer], feature_shape: Sequence[int]) -> dict:
    """{layer: output shape without the batch axis} for features of `feature_shape`."""
    shapes = {INPUT: tuple(feature_shape)}
    for i, layer in enumerate(table):
        shapes[layer.name] = _layer_shape(layer, [shapes[n] for n in _input_names(table, i)])
    del shapes[INPUT]
    return shapes


def param_shapes(table: Sequence[Layer], feature_shape: Sequence[int]) -> dict:
    """{layer: {"w": shape, "b": shape}} of the convolutions, up-convolutions and fc layers."""
    shapes = {INPUT: tuple(feature_shape)}
    out = {}
    for i, layer in enumerate(table):
        (first, *_) = [shapes[n] for n in _input_names(table, i)]
        shapes[layer.name] = _layer_shape(layer, [shapes[n] for n in _input_names(table, i)])
        if layer.op in ("conv", "upconv"):
            k = layer.hyper["kernel"]
            out[layer.name] = {"w": (k, k, first[-1], layer.hyper["out_channels"]), "b": (layer.hyper["out_channels"],)}
        elif layer.op == "fc":
            out[layer.name] = {"w": (math.prod(first), layer.hyper["units"]), "b": (layer.hyper["units"],)}
    return out


def init_params(table: Sequence[Layer], key, feature_shape: Sequence[int]) -> dict:
    """He-normal weights for leaky ReLUs (gain sqrt(2 / (1 + 0.2^2))), zero biases. The fan-in of an
    up-convolution counts the non-zero inputs only (a quarter of k^2 C_in after unpooling).

    Drawn with numpy from a generator seeded by the JAX `key` (deterministic; eager jax.random
    calls would compile once per parameter shape, ~1 s each on this CPU)."""
    shapes = param_shapes(table, feature_shape)
    ops = {layer.name: layer.op for layer in table}
    key_data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    rng = np.random.default_rng(np.asarray(key_data, np.uint32))
    params = {}
    gain = 2.0 / (1.0 + L.LEAKY_SLOPE ** 2)
    for name, shape in shapes.items():
        fan_in = math.prod(shape["w"][:-1]) / (4 if ops[name] == "upconv" else 1)
        w = rng.standard_normal(shape["w"], np.float32) * np.float32(math.sqrt(gain / fan_in))
        params[name] = {"w": jnp.asarray(w), "b": jnp.zeros(shape["b"], jnp.float32)}
    return params


def run(table: Sequence[Layer], params: Mapping, features) -> dict:
    """{layer: output} of the table on a batch of features (N, ...)."""
    outputs = {INPUT: features}
    for i, layer in enumerate(table):
        xs = [outputs[n] for n in _input_names(table, i)]
        op = L.OPS[layer.op]
        if layer.op in L.PARAMETRIC:
            y = op(*xs, params[layer.name], **layer.hyper)
        else:
            y = op(*xs, **layer.hyper)
        outputs[layer.name] = L.leaky_relu(y) if layer.leaky else y
    del outputs[INPUT]
    return outputs


def apply(table: Sequence[Layer], params: Mapping, features):
    """The table's last output: (N, O, O, 3) for a batch of features (N, ...)."""
    return run(table, params, features)[table[-1].name]


def num_params(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
