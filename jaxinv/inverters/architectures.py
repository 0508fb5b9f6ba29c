"""Inverter architectures of Dosovitskiy & Brox (CVPR 2016, supplementary tables) as layer tables,
scaled to any feature and image size by one rule.

A table is a list of `graph.Layer`s that `graph.run` interprets, shapes and parameters derived by
`jaxinv.engine.layer_shapes`. Five families:

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
last (and the concatenation and reshape, which compute nothing of their own) is followed by a leaky
ReLU of slope 0.2, a layer of its own named after it ("a_conv1" -> "a_conv1_leaky").
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from jaxinv.engine import graph, layer_shapes
from jaxinv.engine.graph import Layer
from jaxinv.inverters import layers as L
from jaxinv.nets import layers as net_layers

FAMILIES = ("hog", "lbp", "sift", "conv", "fc")
STREAM_A_KERNELS = (5, 5, 3)
SIFT_KERNELS = (5, 3, 3, 3)
DEPTH_CAP = {"hog": 3, "lbp": 2, "sift": 4}
MIN_CELLS = 2
LEAKY = "_leaky"  # suffix of the activation layer following a layer


def _leaky(layer: Layer) -> list[Layer]:
    """The layer and the leaky ReLU after it (named layer.name + LEAKY; later layers read that)."""
    return [layer, Layer(layer.name + LEAKY, L.leaky_relu)]


def _conv(name: str, out_channels: int, kernel: int, stride: int, inputs: tuple[str, ...] = ()) -> list[Layer]:
    """k x k convolution + leaky ReLU, zero padding (k - 1) // 2 before and the rest after: the
    output is ceil(H / stride) for odd k (H / stride when stride divides H)."""
    p = (kernel - 1) // 2
    return _leaky(Layer(name, net_layers.conv, dict(out_channels=out_channels, kernel=kernel, stride=stride,
                                                    pad=(p, kernel - 1 - p) * 2, groups=1), inputs))


def _upconv(name: str, out_channels: int, kernel: int, leaky: bool = True) -> list[Layer]:
    layer = Layer(name, L.upconv, dict(out_channels=out_channels, kernel=kernel))
    return _leaky(layer) if leaky else [layer]


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


def _up_ladder(side: int, image_size: int, width: float, kernel: int) -> list[Layer]:
    """Up-convolutions from a side x side map to the image: 16 * 2^j channels at level j, 3 last
    (no activation after the image)."""
    levels = _level(side, image_size)
    table = []
    for i in range(levels):
        j = levels - i - 1  # level of this layer's output
        last = j == 0
        table += _upconv(f"up{i + 1}", 3 if last else _channels(width, 16 * 2 ** j), kernel, leaky=not last)
    if not table:
        table = _conv("image", 3, 3, 1)[:1]
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
        table += _conv(f"a_conv{i + 1}", _channels(width, 16 * 2 ** _level(out_side, image_size)),
                       STREAM_A_KERNELS[i], 2, (graph.INPUT,) if i == 0 else ())
    for i in range(depth):  # stream A, up
        out_side = side // 2 ** (depth - i - 1)
        table += _upconv(f"a_up{i + 1}", _channels(width, 16 * 2 ** _level(out_side, image_size)), 4)
    stream_a = table[-1].name if depth else graph.INPUT
    table += (_conv("b_conv1", _channels(width, 128), 5, 1, (graph.INPUT,))
              + _conv("b_conv2", _channels(width, 128), 3, 1)
              + [Layer("join", graph.concat, {}, (stream_a, "b_conv2" + LEAKY))]
              + _conv("join_conv1", _channels(width, 256), 3, 1)
              + _conv("join_conv2", _channels(width, 128), 3, 1))
    return table + _up_ladder(side, image_size, width, 4)


def _sift(feature_shape, image_size, width) -> list[Layer]:
    side, _ = _spatial(feature_shape, "sift")
    depth = _halvings(side, DEPTH_CAP["sift"])
    table = []
    for i in range(depth):
        level = _level(side // 2 ** (i + 1), image_size)
        table += _conv(f"conv{i + 1}", _channels(width, 32 * 2 ** level), SIFT_KERNELS[i], 2)
    bottom = side // 2 ** depth
    level = _level(bottom, image_size)
    table += (_conv(f"conv{depth + 1}", _channels(width, 32 * 2 ** level), 3, 1)
              + _conv(f"conv{depth + 2}", _channels(width, 16 * 2 ** level), 3, 1))
    return table + _up_ladder(bottom, image_size, width, 4)


def _cnn_conv(feature_shape, image_size, width) -> list[Layer]:
    side, _ = _spatial(feature_shape, "conv")
    _level(side, image_size)
    table = [layer for i in range(3) for layer in _conv(f"conv{i + 1}", _channels(width, 256), 3, 1)]
    return table + _up_ladder(side, image_size, width, 5)


FC_RESHAPE = (4, 4, 256)


def _cnn_fc(feature_shape, image_size, width) -> list[Layer]:
    if len(feature_shape) != 1 or feature_shape[0] < 1:
        raise ValueError(f"the 'fc' inverter takes 1-D feature vectors (D,); got shape {tuple(feature_shape)}")
    side, _, depth = FC_RESHAPE
    depth = _channels(width, depth)
    units = (_channels(width, 4096), _channels(width, 4096), side * side * depth)
    table = [layer for i, n in enumerate(units) for layer in _leaky(Layer(f"fc{i + 1}", L.fc, dict(units=n)))]
    table.append(Layer("reshape", L.reshape, dict(shape=(side, side, depth))))
    return table + _up_ladder(side, image_size, width, 5)


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


def output_shapes(table: Sequence[Layer], feature_shape: Sequence[int]) -> dict:
    """{layer: output shape without the batch axis} for features of `feature_shape`."""
    return layer_shapes.output_shapes(table, feature_shape)


def param_shapes(table: Sequence[Layer], feature_shape: Sequence[int]) -> dict:
    """{layer: {"w": shape, "b": shape}} of the convolutions, up-convolutions and fc layers."""
    return layer_shapes.param_shapes(table, feature_shape)


def init_params(table: Sequence[Layer], key, feature_shape: Sequence[int]) -> dict:
    """He-normal weights for leaky ReLUs (gain sqrt(2 / (1 + 0.2^2))), zero biases; the fan-in of an
    up-convolution counts the non-zero inputs only (a quarter of k^2 C_in after unpooling)."""
    return layer_shapes.init_params(table, key, feature_shape, gain=2.0 / (1.0 + L.LEAKY_SLOPE ** 2))


def apply(table: Sequence[Layer], params: Mapping, features):
    """The table's last output: (N, O, O, 3) for a batch of features (N, ...)."""
    return graph.run(table, params, features)[table[-1].name]


num_params = layer_shapes.num_params
