"""Deep networks as representations for the pre-image engine, and the papers' per-layer settings.

Any named layer of a `jaxinv.nets.Model` is a `Representation`: images are RGB in [0, 255]
with the network's per-channel mean (converted to RGB [0, 255]) subtracted, so the engine's
bounds B = 80, B+ = 2B are in grey levels as for HOG. The network's own convention (channel
order, pixel range, mean image, std) is applied inside the representation, differentiably.

Per-layer settings of IJCV Sect. 5.2, written as rules over the layer table (receptive field
and stride derived from it) rather than per-name lookups, so they carry over to other networks:

- jitter T = max(round(stride / 4), 1) with the layer's derived stride;
- C (`layer_C`): 1 for every layer past the convolutional trunk (the last convolution and the
  pointwise layers right after it), otherwise by the layer's receptive field relative to the
  input size: 300 up to 0.45, 100 up to 0.60, 20 beyond. On CaffeNet/AlexNet and VGG-M this
  gives the paper's 300 up to relu3, 100 up to relu4, 20 up to relu5, 1 beyond; on VGG-VD-16
  300 up to conv4_3 (and pool4), 100 for conv5_1, 20 up to conv5_3, 1 beyond (tested). On the
  shipped cifar-ref (32x32 input) it gives 300 up to relu2, 100 for pool2/norm2, 20 for
  conv3/relu3, 1 from pool3 on.

Geometry for inverting selected components (IJCV Sect. 5.4), also read off the table:
`window_mask` (a central window of a layer's map, all channels), `receptive_field_box` (the input
pixels that can influence a window's cells, padding and offsets of every layer included),
`channel_mask` and `channel_groups` (the channel groups of grouped convolutions).
Layers of the spatial trunk (before the first fully connected or adaptive pooling layer) accept
other input sizes than the network's: `representation(model, layer, input_size=S)`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np

from jaxinv import graph
from jaxinv.nets import layers as L
from jaxinv.nets import convention, tables
from jaxinv.nets.model import Model
from jaxinv.preimage import Problem
from jaxinv.representation import Representation

C_VALUES = (300.0, 100.0, 20.0, 1.0)
# Receptive field / input size thresholds separating C = 300 | 100 | 20 (see the module docstring).
C_RF_THRESHOLDS = (0.45, 0.60)
POINTWISE_OPS = (L.relu,)


def rgb_mean(model: Model) -> tuple[float, float, float]:
    """The network's mean as an RGB [0, 255] colour (the per-channel average of a mean image)."""
    return convention.rgb_mean(model.convention, model.mean_image)


def check_layer(model: Model, layer: str) -> None:
    graph.check_layer_name(model.table, layer, what=f"network {model.arch!r}")


SIZE_FIXING_OPS = (L.fc, L.adaptive_avgpool)


def spatial_trunk(model: Model) -> list[str]:
    """Names of the layers before the first fully connected or adaptive pooling layer: their
    outputs are feature maps and they run on any input size large enough."""
    names = []
    for layer in model.table:
        if layer.op in SIZE_FIXING_OPS:
            break
        names.append(layer.name)
    return names


def layer_output_shape(model: Model, layer: str, input_size: int | None = None) -> tuple[int, ...]:
    """Output shape of `layer` (no batch axis) for a square input of `input_size` pixels (default:
    the network's); (h, w, channels) for feature maps, (units,) for fully connected layers."""
    check_layer(model, layer)
    size = model.input_size if input_size is None else int(input_size)
    names = model.layer_names
    table = model.table[:names.index(layer) + 1]
    return tuple(tables.output_shapes(table, size)[layer])


def layer_stride(model: Model, layer: str) -> int:
    check_layer(model, layer)
    return int(model.receptive_fields[layer][1])


def layer_jitter(model: Model, layer: str) -> int:
    """Jitter amount T = max(round(stride / 4), 1) from the layer's derived stride (IJCV Sect. 5.2)."""
    return max(int(round(layer_stride(model, layer) / 4)), 1)


def trunk_end(table: Sequence[graph.Layer]) -> str:
    """Name of the last layer of the convolutional trunk: the last convolution and the pointwise
    layers that directly follow it (conv5 -> relu5 on CaffeNet)."""
    convs = [i for i, layer in enumerate(table) if layer.op is L.conv]
    if not convs:
        raise ValueError("the network has no convolutional layer")
    end = convs[-1]
    while end + 1 < len(table) and table[end + 1].op in POINTWISE_OPS:
        end += 1
    return table[end].name


def layer_C(model: Model, layer: str) -> float:
    """The loss weight C for inverting `layer` (IJCV Sect. 5.2), by the rule in the module docstring."""
    check_layer(model, layer)
    names = model.layer_names
    if names.index(layer) > names.index(trunk_end(model.table)):
        return C_VALUES[3]
    relative_rf = model.receptive_fields[layer][0] / model.input_size
    for threshold, value in zip(C_RF_THRESHOLDS, C_VALUES):
        if relative_rf <= threshold:
            return value
    return C_VALUES[2]


def _frozen(value):
    """A hashable copy of a layer's hyper-parameters (dicts and lists become sorted tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def table_structure(table: Sequence[graph.Layer]) -> tuple:
    """What a table computes, as a hashable value: equal for two loads of one architecture."""
    return tuple((layer.name, layer.op, _frozen(dict(layer.hyper)), tuple(getattr(layer, "inputs", ())))
                 for layer in table)


@dataclasses.dataclass(frozen=True)
class NetworkCode:
    """apply(params, rgb) of a network on one RGB [0, 255] image (H, W, 3): the output of `layer`, or
    with `gram_layers` the code {"features": {layer: map}} of the Gram losses (plus "content": the
    output of `layer` when `content` is set). params are the network's weights, nothing else.

    Compared by the table's structure and the input convention, never by weights, so two networks of
    one architecture and convention share compiled steps. The mean and std are constants of the
    step (compared through `input_key`, a digest of their values)."""
    table: tuple = dataclasses.field(compare=False, repr=False)
    structure: tuple = dataclasses.field(repr=False)
    channel_order: str
    pixel_range: float
    mean: np.ndarray = dataclasses.field(compare=False, repr=False)
    std: np.ndarray = dataclasses.field(compare=False, repr=False)
    input_key: str = dataclasses.field(repr=False)
    layer: str
    gram_layers: tuple[str, ...] = ()
    content: bool = True

    def __call__(self, params, rgb):
        x = convention.to_network(rgb[None], self.channel_order, self.pixel_range, self.mean, self.std)
        names = [layer.name for layer in self.table]
        deepest = max((self.layer,) + self.gram_layers, key=names.index)
        out = graph.run(self.table, params, x, upto=deepest)
        if not self.gram_layers:
            return out[self.layer][0]
        code = {"features": {name: out[name][0] for name in self.gram_layers}}
        if self.content:
            code["content"] = out[self.layer][0]
        return code


def network_representation(model: Model, layer: str, input_size: int, name: str, gram_layers: Sequence[str] = (),
                           content: bool = True) -> Representation:
    """A Representation of `model` (see `NetworkCode`) whose params are `model.params`; its stride is
    that of the deepest layer used."""
    given = convention.input_params(model.convention, model.mean_image, (input_size, input_size, 3))
    key = hashlib.sha256(given["mean"].tobytes() + given["std"].tobytes() + repr(given["mean"].shape).encode())
    apply = NetworkCode(tuple(model.table), table_structure(model.table), model.convention["channel_order"],
                        float(model.convention["pixel_range"]), given["mean"], given["std"], key.hexdigest(), layer,
                        tuple(gram_layers), content)
    deepest = max((layer,) + tuple(gram_layers), key=model.layer_names.index)
    return Representation(name, apply, model.params, channels=3, mean=rgb_mean(model),
                          stride=layer_stride(model, deepest), input_size=(input_size, input_size),
                          min_size=input_size, layers=tuple(model.layer_names))


def check_input_size(model: Model, layer: str, input_size: int) -> None:
    """Raises ValueError unless `layer` can run on square inputs of `input_size` pixels."""
    if input_size == model.input_size:
        return
    if layer not in spatial_trunk(model):
        raise ValueError(f"layer {layer!r} of network {model.arch!r} needs {model.input_size}x{model.input_size} "
                         f"inputs (it follows a fully connected or adaptive pooling layer); got {input_size}")
    try:
        layer_output_shape(model, layer, input_size)
    except ValueError:
        raise ValueError(f"input size {input_size} is too small for layer {layer!r} of network {model.arch!r}") from None


def representation(model: Model, layer: str, input_size: int | None = None) -> Representation:
    """Layer `layer` of `model` as a Representation of one RGB image (H, W, 3) with the network's
    RGB mean subtracted; the weights are its params, so every network of this architecture shares
    compiled steps. `input_size` (pixels, square; default the network's) may differ from the
    network's for layers of the spatial trunk."""
    check_layer(model, layer)
    size = model.input_size if input_size is None else int(input_size)
    check_input_size(model, layer, size)
    return network_representation(model, layer, size, f"{model.arch}:{layer}")


def inversion_problem(model: Model, layer: str, *, C: float | None = None, jitter: bool = True) -> Problem:
    """IJCV Eq. 1 for inverting `layer`: the Sect. 3.3 defaults with the per-layer C and jitter rules
    (`C` overrides the rule; `jitter=False` sets T = 1)."""
    return Problem(loss="inversion", C=layer_C(model, layer) if C is None else float(C),
                   jitter=layer_jitter(model, layer) if jitter else 1)


def central_window(map_shape: Sequence[int], size: int = 5) -> tuple[int, int, int, int]:
    """The central size x size window of a map (h, w, ...) as cell ranges (top, left, bottom, right),
    bottom and right exclusive; the whole axis where the map is smaller than `size`."""
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    h, w = int(map_shape[0]), int(map_shape[1])
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return top, left, min(top + size, h), min(left + size, w)


def _feature_map_shape(model: Model, layer: str, input_size: int | None, what: str) -> tuple[int, int, int]:
    shape = layer_output_shape(model, layer, input_size)
    if len(shape) != 3:
        raise ValueError(f"{what} needs a layer with a spatial map; layer {layer!r} of network {model.arch!r} "
                         f"outputs {shape}")
    return shape


def window_mask(model: Model, layer: str, size: int = 5, input_size: int | None = None) -> np.ndarray:
    """Mask shaped like `layer`'s output (h, w, c): 1 on the cells of the central size x size window
    (all channels), 0 elsewhere (the M of IJCV Eq. 3 for Fig. 13)."""
    shape = _feature_map_shape(model, layer, input_size, "a window mask")
    top, left, bottom, right = central_window(shape, size)
    mask = np.zeros(shape, np.float32)
    mask[top:bottom, left:right] = 1.0
    return mask


def _input_range(layer: graph.Layer, start: int, stop: int, in_length: int, axis: int) -> tuple[int, int]:
    """Cells [start, stop) of a spatial layer's output along `axis` (0 rows, 1 columns) -> the input
    cells [start', stop') that can influence them, clipped to the input (padding depends on no pixel)."""
    if layer.op in (L.conv, L.maxpool):
        kernel, stride, pad = layer.hyper["kernel"], layer.hyper["stride"], layer.hyper["pad"][2 * axis]
        start, stop = start * stride - pad, (stop - 1) * stride - pad + kernel
    elif layer.op is L.adaptive_avgpool:
        o = layer.hyper["output_size"]
        start, stop = (start * in_length) // o, -(-(stop * in_length) // o)
    return max(start, 0), min(stop, in_length)


def receptive_field_box(model: Model, layer: str, window: Sequence[int] | None = None,
                        input_size: int | None = None) -> tuple[int, int, int, int]:
    """Input pixels that can influence the cells `window` = (top, left, bottom, right) of `layer`
    (exclusive ends; default the whole map, and always the whole image for fully connected layers)
    as (top, left, bottom, right) in input pixels, exclusive ends, clipped to the image.

    Walks the table back from `layer` applying each layer's kernel, stride and padding; cells of
    a padding depend on no pixel, so ranges are clipped at every layer and borders come out exact."""
    check_layer(model, layer)
    size = model.input_size if input_size is None else int(input_size)
    table = model.table[:model.layer_names.index(layer) + 1]
    shapes = tables.output_shapes(table, size)
    out = shapes[layer]
    if len(out) != 3:
        if window is not None:
            raise ValueError(f"layer {layer!r} has no spatial map (outputs {out}); pass window=None")
        window = (0, 0, 1, 1)
    elif window is None:
        window = (0, 0, out[0], out[1])
    top, left, bottom, right = (int(v) for v in window)
    if len(out) == 3 and not (0 <= top < bottom <= out[0] and 0 <= left < right <= out[1]):
        raise ValueError(f"window {tuple(window)} is outside layer {layer!r}'s {out[0]}x{out[1]} map")
    rows, cols = (top, bottom), (left, right)
    for i in reversed(range(len(table))):
        in_shape = shapes[table[i - 1].name] if i else (size, size, 3)
        if len(in_shape) != 3:  # above a fully connected layer: no spatial cells yet
            continue
        if len(shapes[table[i].name]) != 3:  # a fully connected layer sees its whole input
            rows, cols = (0, in_shape[0]), (0, in_shape[1])
        else:
            rows = _input_range(table[i], *rows, in_shape[0], 0)
            cols = _input_range(table[i], *cols, in_shape[1], 1)
    return rows[0], cols[0], rows[1], cols[1]


def channel_mask(model: Model, layer: str, channels: Sequence[int], input_size: int | None = None) -> np.ndarray:
    """Mask shaped like `layer`'s output, 1 on the listed channels (units of an fc layer), all positions."""
    shape = layer_output_shape(model, layer, input_size)
    channels = np.asarray(list(channels), np.int64)
    if channels.size == 0:
        raise ValueError(f"no channels given for the mask of layer {layer!r}")
    bad = channels[(channels < 0) | (channels >= shape[-1])]
    if bad.size:
        raise ValueError(f"channel index {int(bad[0])} out of range for layer {layer!r} "
                         f"({shape[-1]} channels: 0..{shape[-1] - 1})")
    mask = np.zeros(shape, np.float32)
    mask[..., channels] = 1.0
    return mask


CHANNEL_PRESERVING_OPS = (L.relu, L.lrn, L.maxpool, L.adaptive_avgpool)


def channel_groups(model: Model, layer: str) -> list[np.ndarray]:
    """The channels of `layer`'s output split by the grouped convolution that defines them:
    the convolution producing them (conv2 of CaffeNet: groups=2) or, when that one is not grouped,
    the next convolution consuming them (conv1's channels, read by CaffeNet's two conv2 groups).
    Group g is a contiguous block of channels/groups. One group holding every channel when
    neither convolution is grouped. Pointwise, pooling and LRN layers keep their input's channels
    (LRN mixes a few channels across a group boundary)."""
    check_layer(model, layer)
    names = model.layer_names
    index = names.index(layer)
    shape = layer_output_shape(model, layer)
    if len(shape) != 3:
        raise ValueError(f"channel groups need a layer with a spatial map; layer {layer!r} outputs {shape}")
    channels = shape[-1]
    groups = 1
    producer = index
    while producer >= 0 and model.table[producer].op in CHANNEL_PRESERVING_OPS:
        producer -= 1
    if producer >= 0 and model.table[producer].op is L.conv:
        groups = model.table[producer].hyper["groups"]
    if groups == 1:
        consumer = index + 1
        while consumer < len(model.table) and model.table[consumer].op in CHANNEL_PRESERVING_OPS:
            consumer += 1
        if consumer < len(model.table) and model.table[consumer].op is L.conv:
            groups = model.table[consumer].hyper["groups"]
    return [np.arange(g * channels // groups, (g + 1) * channels // groups) for g in range(groups)]
