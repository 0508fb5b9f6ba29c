"""Geometry for inverting selected components of a network layer (IJCV Sect. 5.4), read off the table:
`window_mask` (a central window of a layer's map, all channels), `receptive_field_box` (the input
pixels that can influence a window's cells, padding and offsets of every layer included),
`channel_mask` and `channel_groups` (the channel groups of grouped convolutions).
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from jaxinv.engine import graph
from jaxinv.nets import layers as L
from jaxinv.nets import tables
from jaxinv.nets.model import Model
from jaxinv.nets.taps import check_layer
from jaxinv import models


def central_window(map_shape: Sequence[int], size: int = 5) -> tuple[int, int, int, int]:
    """The central size x size window of a map (h, w, ...) as cell ranges (top, left, bottom, right),
    bottom and right exclusive; the whole axis where the map is smaller than `size`."""
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    h, w = int(map_shape[0]), int(map_shape[1])
    top, left = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return top, left, min(top + size, h), min(left + size, w)


def window_mask(model, layer: str, size: int = 5, input_size: int | None = None) -> np.ndarray:
    """Mask shaped like `layer`'s output (h, w, c): 1 on the cells of the central size x size window
    (all channels), 0 elsewhere (the M of IJCV Eq. 3 for Fig. 13). Any model (`jaxinv.models`)."""
    shape = models.feature_map_shape(model, layer, "a window mask", input_size)
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


def channel_mask(model, layer: str, channels: Sequence[int], input_size: int | None = None) -> np.ndarray:
    """Mask shaped like `layer`'s output, 1 on the listed channels (units of an fc layer), all positions.
    Any model (`jaxinv.models`)."""
    shape = models.layer_shape(model, layer, input_size)
    channels = list(channels)
    inexact = [c for c in channels if isinstance(c, bool) or not isinstance(c, numbers.Integral)]
    if inexact:
        raise ValueError(f"channel indices must be integers; got {inexact[0]!r} for layer {layer!r}")
    channels = np.asarray(channels, np.int64)
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


def channel_groups(model, layer: str) -> list[np.ndarray]:
    """The channels of `layer`'s output split by the grouped convolution that defines them:
    the convolution producing them (conv2 of CaffeNet: groups=2) or, when that one is not grouped,
    the next convolution consuming them (conv1's channels, read by CaffeNet's two conv2 groups).
    Group g is a contiguous block of channels/groups. One group holding every channel when
    neither convolution is grouped. Pointwise, pooling and LRN layers keep their input's channels
    (LRN mixes a few channels across a group boundary). An adapted model (no table) has one group."""
    shape = models.feature_map_shape(model, layer, "channel groups")
    channels = shape[-1]
    if not models.is_table(model):
        return [np.arange(channels)]
    index = model.layer_names.index(layer)
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
