"""Architectures as layer tables, and the geometry derived from a table.

A table is a list of `graph.Layer`s named as in the papers (conv1, relu1, pool1, norm1, ...,
fc6, relu6, fc7, relu7, fc8, prob). Shapes of parameters and outputs, receptive fields and
strides are all computed from the table and an input size (by `jaxinv.engine.layer_shapes`), never
written down separately.
"""
from __future__ import annotations

import functools
from typing import Sequence

from jaxinv.engine import layer_shapes
from jaxinv.engine.graph import Layer
from jaxinv.nets import layers as L
from jaxinv.nets import torchvision_tables

CAFFE_LRN = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)


def _conv(name, out_channels, kernel, stride=1, pad=0, groups=1):
    return Layer(name, L.conv, dict(out_channels=out_channels, kernel=kernel, stride=stride,
                                    pad=(pad,) * 4 if isinstance(pad, int) else tuple(pad), groups=groups))


def _relu(name):
    return Layer(name, L.relu)


def _norm(name, **lrn):
    return Layer(name, L.lrn, dict(CAFFE_LRN, **lrn))


def _maxpool(name, kernel, stride, pad=0, ceil_mode=True):
    return Layer(name, L.maxpool, dict(kernel=kernel, stride=stride, pad=(pad,) * 4, ceil_mode=ceil_mode))


def _fc(name, units):
    return Layer(name, L.fc, dict(units=units))


def _classifier(fc_units: Sequence[int], classes: int) -> list[Layer]:
    table = []
    for i, units in enumerate(fc_units, start=6):
        table += [_fc(f"fc{i}", units), _relu(f"relu{i}")]
    return table + [_fc(f"fc{6 + len(fc_units)}", classes), Layer("prob", L.softmax)]


def _caffenet(norm_before_pool: bool) -> list[Layer]:
    def stage(i, conv):
        pool, norm = _maxpool(f"pool{i}", 3, 2), _norm(f"norm{i}")
        return [conv, _relu(f"relu{i}")] + ([norm, pool] if norm_before_pool else [pool, norm])
    return (stage(1, _conv("conv1", 96, 11, stride=4))
            + stage(2, _conv("conv2", 256, 5, pad=2, groups=2))
            + [_conv("conv3", 384, 3, pad=1), _relu("relu3"),
               _conv("conv4", 384, 3, pad=1, groups=2), _relu("relu4"),
               _conv("conv5", 256, 3, pad=1, groups=2), _relu("relu5"), _maxpool("pool5", 3, 2)]
            + _classifier([4096, 4096], 1000))


def _vgg_m() -> list[Layer]:
    return ([_conv("conv1", 96, 7, stride=2), _relu("relu1"), _norm("norm1"), _maxpool("pool1", 3, 2),
             _conv("conv2", 256, 5, stride=2, pad=1), _relu("relu2"), _norm("norm2"), _maxpool("pool2", 3, 2),
             _conv("conv3", 512, 3, pad=1), _relu("relu3"),
             _conv("conv4", 512, 3, pad=1), _relu("relu4"),
             _conv("conv5", 512, 3, pad=1), _relu("relu5"), _maxpool("pool5", 3, 2)]
            + _classifier([4096, 4096], 1000))


def _vgg16_features(ceil_mode: bool) -> list[Layer]:
    """VGG-16's 13 convolutions and 5 pools; Caffe rounds pool outputs up, torchvision down (the
    same on the 224 and 32 inputs that halve evenly five times)."""
    table, widths = [], [64, 128, 256, 512, 512]
    for stage, (width, depth) in enumerate(zip(widths, [2, 2, 3, 3, 3]), start=1):
        for i in range(1, depth + 1):
            table += [_conv(f"conv{stage}_{i}", width, 3, pad=1), _relu(f"relu{stage}_{i}")]
        table.append(_maxpool(f"pool{stage}", 2, 2, ceil_mode=ceil_mode))
    return table


def _cifar_ref() -> list[Layer]:
    """AlexNet-style CIFAR-10 net (1.09M parameters): three conv/relu/pool stages with LRN after
    the first two, then fc6-fc8."""
    return ([_conv("conv1", 64, 5, pad=2), _relu("relu1"), _maxpool("pool1", 3, 2), _norm("norm1"),
             _conv("conv2", 128, 3, pad=1), _relu("relu2"), _maxpool("pool2", 3, 2), _norm("norm2"),
             _conv("conv3", 128, 3, pad=1), _relu("relu3"), _maxpool("pool3", 3, 2)]
            + _classifier([384, 192], 10))


_BUILDERS = {
    "caffe-ref": lambda: _caffenet(norm_before_pool=False),
    "caffe-alex": lambda: _caffenet(norm_before_pool=True),
    "vgg-m": _vgg_m,
    "vgg-vd-16": lambda: _vgg16_features(ceil_mode=True) + _classifier([4096, 4096], 1000),
    "cifar-ref": _cifar_ref,
    # torchvision's families (AlexNet, VGG, ResNet, GoogLeNet, SqueezeNet, MobileNetV2).
    **{arch: functools.partial(torchvision_tables.build, arch) for arch in torchvision_tables.architectures()},
}

INPUT_SIZES = {"caffe-ref": 227, "caffe-alex": 227, "vgg-m": 224, "vgg-vd-16": 224, "cifar-ref": 32,
               **torchvision_tables.INPUT_SIZES}


def architectures() -> list[str]:
    return list(_BUILDERS)


def build(arch: str) -> list[Layer]:
    """The layer table of a named architecture."""
    if arch not in _BUILDERS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(_BUILDERS)}")
    return _BUILDERS[arch]()


def _square(input_size: int, in_channels: int) -> tuple[int, int, int]:
    return input_size, input_size, in_channels


def output_shapes(table: Sequence[Layer], input_size: int, in_channels: int = 3) -> dict:
    """{layer: output shape without the batch axis} for a square input."""
    return layer_shapes.output_shapes(table, _square(input_size, in_channels))


def receptive_fields(table: Sequence[Layer], input_size: int) -> dict:
    """{layer: (receptive field size, stride)} in input pixels, derived from the table."""
    return layer_shapes.receptive_fields(table, _square(input_size, 3))


def param_shapes(table: Sequence[Layer], input_size: int, in_channels: int = 3) -> dict:
    """{layer: {"w": shape, "b": shape}} of every parametric layer for a square input."""
    return layer_shapes.param_shapes(table, _square(input_size, in_channels))


def init_params(table: Sequence[Layer], key, input_size: int, in_channels: int = 3) -> dict:
    """He-normal weights and zero biases (used to train from scratch and for tests)."""
    return layer_shapes.init_params(table, key, _square(input_size, in_channels))
