"""torchvision's CNN families as layer tables, and where each layer's weights are in a torchvision
state_dict (`layout`): AlexNet, VGG-11/13/16/19 with and without batch norm, ResNet-18/34/50/101/152,
GoogLeNet (Inception v1), SqueezeNet 1.0/1.1 and MobileNetV2, in evaluation mode.

Batch norm is folded into the convolution before it when weights are converted (`layout` names the
BatchNorm module of each convolution), so a convolution layer outputs the normalised map (what
torchvision's BatchNorm module outputs). Branches are graph layers reading named inputs; residual
connections are `graph.add`, Inception and Fire outputs `graph.concat`. Every table ends with the
class scores and their softmax, `prob`.

Layer names (taps), with torchvision's module names where they mean something:
- ResNet: conv1, relu1, pool1 (torchvision's conv1+bn1, relu, maxpool), then per block
  `layerS.B.conv1`, `.relu1`, `.conv2`, (`.relu2`, `.conv3` in bottlenecks), `.downsample` (its
  conv+bn), `.add` and the block output `layerS.B`, except that the last block of a stage is named
  after the stage (`layer4`); avgpool, fc, prob.
- VGG: as torchvision-vgg16 (conv1_1, relu1_1, ..., pool5, avgpool, fc6, relu6, fc7, relu7, fc8, prob).
- GoogLeNet: torchvision's modules: a BasicConv2d `X` is `X.conv` (conv+bn) then `X` (its ReLU), e.g.
  conv1.conv, conv1, `inception3a.branch2.1.conv`, `inception3a.branch2.1`; an Inception module's
  output is its name (inception3a ... inception5b); the max pools are pool1-pool4 (torchvision's
  maxpool1-4) and the global average pool is pool5 (the paper's), then fc, prob.
- SqueezeNet: the paper's fire2 ... fire9 with torchvision's Fire attributes inside (`fire2.squeeze`,
  `fire2.squeeze_activation`, `fire2.expand1x1`, ..., `fire2` the concatenation); conv1, relu1,
  pool1, and the Caffe model's pool names (1.0: pool4, pool8; 1.1: pool3, pool5); conv10, relu10,
  pool10 (the global pool, whose 1x1x1000 map holds the class scores), prob.
- MobileNetV2: torchvision's `features.N`: a Conv2dNormActivation `X` is `X.0` (conv+bn) then `X`
  (its ReLU6); an inverted residual block N is `features.N.conv.K.0` / `features.N.conv.K` for
  its expansion and depthwise stages, the projection `features.N.conv.K` (its conv+bn) and the block
  output `features.N` (the sum, or the projection where there is no residual); avgpool, fc
  (torchvision's classifier.1), prob.

GoogLeNet's pretrained torchvision weights come with `transform_input=True`, which maps ImageNet-
normalised inputs to (x - 0.5) / 0.5 of the RGB image in [0, 1] before conv1. The table is the network
after that transform (torchvision's transform_input=False), and `layout` records the input convention
mean = std = 0.5, which is exactly the transform; a GoogLeNet trained with transform_input=False
takes the ImageNet convention instead (set `convention` in its metadata). Its auxiliary classifiers
(aux1, aux2) only act in training: their weights are ignored.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

from jaxinv.engine import graph
from jaxinv.engine.graph import INPUT, Layer
from jaxinv.nets import layers as L


@dataclasses.dataclass(frozen=True)
class StateDictLayout:
    """Where a table's weights are in a torchvision state_dict: `modules` {layer: (module holding the
    weight and optional bias, BatchNorm module folded into it or None)}; `bn_eps` the BatchNorm eps;
    `ignored` module prefixes unused in evaluation; `convention` overrides of the input convention."""
    modules: Mapping[str, tuple[str, str | None]]
    bn_eps: float = 1e-5
    ignored: tuple[str, ...] = ()
    convention: Mapping[str, list] = dataclasses.field(default_factory=dict)


class _Builder:
    """Appends layers to a table; each reads the named layer (the previous one by default) and
    records where its weights are."""

    def __init__(self):
        self.table: list[Layer] = []
        self.modules: dict[str, tuple[str, str | None]] = {}

    @property
    def last(self) -> str:
        return self.table[-1].name if self.table else INPUT

    def layer(self, name, op, hyper=None, *inputs, module=None, bn=None) -> str:
        inputs = tuple(inputs) or (self.last,)
        self.table.append(Layer(name, op, dict(hyper or {}), () if inputs == (self.last,) else inputs))
        if module is not None:
            self.modules[name] = (module, bn)
        return name

    def conv(self, name, x, out_channels, kernel, stride=1, pad=0, groups=1, module=None, bn=None) -> str:
        hyper = dict(out_channels=out_channels, kernel=kernel, stride=stride, pad=(pad,) * 4, groups=groups)
        return self.layer(name, L.conv, hyper, x, module=module or name, bn=bn)

    def maxpool(self, name, x, kernel, stride, pad=0, ceil_mode=False) -> str:
        return self.layer(name, L.maxpool, dict(kernel=kernel, stride=stride, pad=(pad,) * 4, ceil_mode=ceil_mode), x)

    def head(self, pool, output_size, fcs) -> None:
        """Adaptive average pool, then (name, units, module) fully connected layers with ReLUs
        (named `relu<i>` after fc<i>) between them, then prob."""
        self.layer(pool, L.adaptive_avgpool, dict(output_size=output_size))
        for k, (name, units, module) in enumerate(fcs):
            if k:
                self.layer("relu" + fcs[k - 1][0][2:], L.relu)
            self.layer(name, L.fc, dict(units=units), module=module)
        self.layer("prob", L.softmax)


# ---------------------------------------------------------------------------------------------
# AlexNet and VGG: chains, named as the Caffe models

def _alexnet(b: _Builder) -> None:
    stages = [(64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False),
              (256, 3, 1, 1, True)]
    index = 0
    for i, (width, kernel, stride, pad, pool) in enumerate(stages, start=1):
        b.conv(f"conv{i}", b.last, width, kernel, stride, pad, module=f"features.{index}")
        b.layer(f"relu{i}", L.relu)
        index += 2
        if pool:
            b.maxpool(f"pool{i}", b.last, 3, 2)
            index += 1
    b.head("avgpool", 6, [("fc6", 4096, "classifier.1"), ("fc7", 4096, "classifier.4"), ("fc8", 1000, "classifier.6")])


VGG_CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def _vgg(b: _Builder, depth: int, batch_norm: bool) -> None:
    index = 0  # torchvision's features.N
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512, 512), VGG_CONFIGS[depth]), start=1):
        for i in range(1, count + 1):
            b.conv(f"conv{stage}_{i}", b.last, width, 3, pad=1, module=f"features.{index}",
                   bn=f"features.{index + 1}" if batch_norm else None)
            index += 3 if batch_norm else 2
            b.layer(f"relu{stage}_{i}", L.relu)
        b.maxpool(f"pool{stage}", b.last, 2, 2)
        index += 1
    b.head("avgpool", 7, [("fc6", 4096, "classifier.0"), ("fc7", 4096, "classifier.3"), ("fc8", 1000, "classifier.6")])


# ---------------------------------------------------------------------------------------------
# ResNet

RESNET_BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
                 101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}


def _resnet_block(b: _Builder, kind: str, prefix: str, output: str, x: str, in_channels: int, width: int,
                  stride: int) -> int:
    """torchvision's BasicBlock (3x3, 3x3) or Bottleneck (1x1, 3x3 with the stride, 1x1 to 4 width),
    each convolution followed by batch norm, the downsample branch (1x1 conv + bn) where the shape
    changes, the sum and a ReLU. Returns the output channels."""
    if kind == "basic":
        convs, out_channels = [(width, 3, stride, 1), (width, 3, 1, 1)], width
    else:
        convs, out_channels = [(width, 1, 1, 0), (width, 3, stride, 1), (4 * width, 1, 1, 0)], 4 * width
    y = x
    for k, (channels, kernel, conv_stride, pad) in enumerate(convs, start=1):
        if k > 1:
            y = b.layer(f"{prefix}.relu{k - 1}", L.relu, None, y)
        y = b.conv(f"{prefix}.conv{k}", y, channels, kernel, conv_stride, pad, bn=f"{prefix}.bn{k}")
    skip = x
    if stride != 1 or in_channels != out_channels:
        skip = b.conv(f"{prefix}.downsample", x, out_channels, 1, stride, module=f"{prefix}.downsample.0",
                      bn=f"{prefix}.downsample.1")
    b.layer(f"{prefix}.add", graph.add, None, y, skip)
    b.layer(output, L.relu)
    return out_channels


def _resnet(b: _Builder, depth: int) -> None:
    kind, counts = RESNET_BLOCKS[depth]
    b.conv("conv1", INPUT, 64, 7, 2, 3, bn="bn1")
    b.layer("relu1", L.relu)
    b.maxpool("pool1", b.last, 3, 2, 1)
    channels = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
        for i in range(count):
            prefix = f"layer{stage}.{i}"
            output = f"layer{stage}" if i == count - 1 else prefix
            stride = 2 if stage > 1 and i == 0 else 1
            channels = _resnet_block(b, kind, prefix, output, b.last, channels, width, stride)
    b.head("avgpool", 1, [("fc", 1000, "fc")])


# ---------------------------------------------------------------------------------------------
# GoogLeNet

GOOGLENET_INCEPTIONS = {  # (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5" (3x3 in torchvision), pool proj)
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128)}
GOOGLENET_BN_EPS = 1e-3


def _basic_conv(b: _Builder, name: str, x: str, out_channels: int, kernel: int, stride: int = 1, pad: int = 0) -> str:
    """torchvision's BasicConv2d: conv (no bias) + batch norm (eps 0.001), then ReLU."""
    b.conv(f"{name}.conv", x, out_channels, kernel, stride, pad, bn=f"{name}.bn")
    return b.layer(name, L.relu)


def _inception(b: _Builder, name: str, x: str, widths) -> None:
    c1, c3r, c3, c5r, c5, proj = widths
    branches = [_basic_conv(b, f"{name}.branch1", x, c1, 1)]
    for branch, (reduce, width) in ((2, (c3r, c3)), (3, (c5r, c5))):
        _basic_conv(b, f"{name}.branch{branch}.0", x, reduce, 1)
        branches.append(_basic_conv(b, f"{name}.branch{branch}.1", b.last, width, 3, pad=1))
    b.maxpool(f"{name}.branch4.0", x, 3, 1, 1, ceil_mode=True)
    branches.append(_basic_conv(b, f"{name}.branch4.1", b.last, proj, 1))
    b.layer(name, graph.concat, None, *branches)


def _googlenet(b: _Builder) -> None:
    _basic_conv(b, "conv1", INPUT, 64, 7, 2, 3)
    b.maxpool("pool1", b.last, 3, 2, ceil_mode=True)
    _basic_conv(b, "conv2", b.last, 64, 1)
    _basic_conv(b, "conv3", b.last, 192, 3, pad=1)
    b.maxpool("pool2", b.last, 3, 2, ceil_mode=True)
    for key, widths in GOOGLENET_INCEPTIONS.items():
        if key == "4a":
            b.maxpool("pool3", b.last, 3, 2, ceil_mode=True)
        if key == "5a":
            b.maxpool("pool4", b.last, 2, 2, ceil_mode=True)
        _inception(b, f"inception{key}", b.last, widths)
    b.head("pool5", 1, [("fc", 1000, "fc")])


# ---------------------------------------------------------------------------------------------
# SqueezeNet

SQUEEZENET_FIRES = {  # fire number: (squeeze, expand 1x1, expand 3x3)
    2: (16, 64, 64), 3: (16, 64, 64), 4: (32, 128, 128), 5: (32, 128, 128),
    6: (48, 192, 192), 7: (48, 192, 192), 8: (64, 256, 256), 9: (64, 256, 256)}
SQUEEZENET_STEMS = {"1_0": (96, 7, (4, 8)), "1_1": (64, 3, (3, 5))}  # conv1 width, kernel; pools after fires


def _squeezenet(b: _Builder, version: str) -> None:
    width, kernel, pools_after = SQUEEZENET_STEMS[version]
    b.conv("conv1", INPUT, width, kernel, 2, module="features.0")
    b.layer("relu1", L.relu)
    b.maxpool("pool1", b.last, 3, 2, ceil_mode=True)
    index = 3  # torchvision's features.N
    for fire, (squeeze, e1, e3) in SQUEEZENET_FIRES.items():
        name, module = f"fire{fire}", f"features.{index}"
        b.conv(f"{name}.squeeze", b.last, squeeze, 1, module=f"{module}.squeeze")
        x = b.layer(f"{name}.squeeze_activation", L.relu)
        b.conv(f"{name}.expand1x1", x, e1, 1, module=f"{module}.expand1x1")
        left = b.layer(f"{name}.expand1x1_activation", L.relu)
        b.conv(f"{name}.expand3x3", x, e3, 3, pad=1, module=f"{module}.expand3x3")
        right = b.layer(f"{name}.expand3x3_activation", L.relu)
        b.layer(name, graph.concat, None, left, right)
        index += 1
        if fire in pools_after:
            b.maxpool(f"pool{fire}", b.last, 3, 2, ceil_mode=True)
            index += 1
    b.conv("conv10", b.last, 1000, 1, module="classifier.1")
    b.layer("relu10", L.relu)
    b.layer("pool10", L.adaptive_avgpool, dict(output_size=1))
    b.layer("prob", L.softmax)


# ---------------------------------------------------------------------------------------------
# MobileNetV2

MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                         (6, 160, 3, 2), (6, 320, 1, 1))  # expansion t, channels c, blocks n, first stride s


def _conv_bn_relu6(b: _Builder, name: str, x: str, out_channels: int, kernel: int, stride: int = 1,
                   groups: int = 1) -> str:
    """torchvision's Conv2dNormActivation: conv (no bias, 'same' padding) + batch norm, then ReLU6."""
    b.conv(f"{name}.0", x, out_channels, kernel, stride, (kernel - 1) // 2, groups, bn=f"{name}.1")
    return b.layer(name, L.relu6)


def _mobilenet_v2(b: _Builder) -> None:
    _conv_bn_relu6(b, "features.0", INPUT, 32, 3, 2)
    channels, index = 32, 1
    for t, c, n, s in MOBILENET_V2_SETTINGS:
        for i in range(n):
            stride, name, x = (s if i == 0 else 1), f"features.{index}", b.last
            hidden, stage = channels * t, 0
            if t != 1:
                _conv_bn_relu6(b, f"{name}.conv.0", x, hidden, 1)
                stage = 1
            _conv_bn_relu6(b, f"{name}.conv.{stage}", b.last, hidden, 3, stride, groups=hidden)
            residual = stride == 1 and channels == c
            project = f"{name}.conv.{stage + 1}"
            b.conv(project if residual else name, b.last, c, 1, module=project, bn=f"{name}.conv.{stage + 2}")
            if residual:
                b.layer(name, graph.add, None, project, x)
            channels, index = c, index + 1
    _conv_bn_relu6(b, f"features.{index}", b.last, 1280, 1)
    b.head("avgpool", 1, [("fc", 1000, "classifier.1")])


# ---------------------------------------------------------------------------------------------

def _families() -> dict:
    families = {"torchvision-alexnet": (_alexnet, {})}
    for depth in VGG_CONFIGS:
        families[f"torchvision-vgg{depth}"] = (lambda b, d=depth: _vgg(b, d, False), {})
        families[f"torchvision-vgg{depth}-bn"] = (lambda b, d=depth: _vgg(b, d, True), {})
    for depth in RESNET_BLOCKS:
        families[f"torchvision-resnet{depth}"] = (lambda b, d=depth: _resnet(b, d), {})
    families["torchvision-googlenet"] = (_googlenet, dict(bn_eps=GOOGLENET_BN_EPS, ignored=("aux1", "aux2"),
                                                          convention=dict(mean=[0.5] * 3, std=[0.5] * 3)))
    for version in SQUEEZENET_STEMS:
        families[f"torchvision-squeezenet{version}"] = (lambda b, v=version: _squeezenet(b, v), {})
    families["torchvision-mobilenet-v2"] = (_mobilenet_v2, {})
    return families


_FAMILIES = _families()
INPUT_SIZES = dict.fromkeys(_FAMILIES, 224)


def architectures() -> list[str]:
    return list(_FAMILIES)


def _built(arch: str) -> _Builder:
    if arch not in _FAMILIES:
        raise ValueError(f"unknown torchvision architecture {arch!r}; valid: {', '.join(_FAMILIES)}")
    b = _Builder()
    _FAMILIES[arch][0](b)
    return b


def build(arch: str) -> list[Layer]:
    """The layer table of a torchvision architecture."""
    return _built(arch).table


def layout(arch: str) -> StateDictLayout:
    """Where `arch`'s weights are in a torchvision state_dict."""
    return StateDictLayout(modules=_built(arch).modules, **_FAMILIES[arch][1])
