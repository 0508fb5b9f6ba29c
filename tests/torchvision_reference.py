"""PyTorch references for torchvision's CNN families, and their layer-by-layer comparison with the
converted jaxinv networks.

torchvision itself does not work in this environment (its compiled ops fail against the CPU torch), so
the modules below restate torchvision's definitions (torchvision 0.2x: models/resnet.py, vgg.py,
googlenet.py, squeezenet.py, mobilenetv2.py and ops/misc.py's Conv2dNormActivation) with the same
module tree, hence the same state_dict keys and registration order, and the same evaluation-mode
forward. Two deliberate differences that change no value: ReLUs and residual sums are not in-place,
and the forwards record the maps jaxinv names (`tap`) so that every layer can be compared.

    python -m tests.torchvision_reference [--archs=A,B] [--size=224] [--num_images=1]

converts a random-weight state_dict of every architecture and prints
a markdown table of the worst per-layer difference against PyTorch (the table in docs/deep_visualisation.md).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import tempfile
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

_RECORD: dict | None = None


def tap(name: str, x):
    """Records `x` as the reference output of jaxinv layer `name` while `recording()`."""
    if _RECORD is not None:
        _RECORD[name] = x
    return x


@contextlib.contextmanager
def recording():
    global _RECORD
    _RECORD = {}
    try:
        yield _RECORD
    finally:
        _RECORD = None


def _named(net: nn.Module) -> nn.Module:
    """Gives every submodule its dotted path (`path`), which its forward uses to name its taps."""
    for name, module in net.named_modules():
        module.path = name
    return net


# ---------------------------------------------------------------------------------------------
# ResNet (torchvision.models.resnet)

def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        p = self.path
        out = tap(f"{p}.conv1", self.bn1(self.conv1(x)))
        out = tap(f"{p}.relu1", self.relu(out))
        out = tap(f"{p}.conv2", self.bn2(self.conv2(out)))
        identity = x if self.downsample is None else tap(f"{p}.downsample", self.downsample(x))
        out = tap(f"{p}.add", out + identity)
        return tap(p, self.relu(out))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        p = self.path
        out = tap(f"{p}.conv1", self.bn1(self.conv1(x)))
        out = tap(f"{p}.relu1", self.relu(out))
        out = tap(f"{p}.conv2", self.bn2(self.conv2(out)))
        out = tap(f"{p}.relu2", self.relu(out))
        out = tap(f"{p}.conv3", self.bn3(self.conv3(out)))
        identity = x if self.downsample is None else tap(f"{p}.downsample", self.downsample(x))
        out = tap(f"{p}.add", out + identity)
        return tap(p, self.relu(out))


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = tap("conv1", self.bn1(self.conv1(x)))
        x = tap("relu1", self.relu(x))
        x = tap("pool1", self.maxpool(x))
        for stage in (1, 2, 3, 4):
            x = tap(f"layer{stage}", getattr(self, f"layer{stage}")(x))
        x = tap("avgpool", self.avgpool(x))
        x = torch.flatten(x, 1)
        return tap("fc", self.fc(x))


RESNETS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3]),
           101: (Bottleneck, [3, 4, 23, 3]), 152: (Bottleneck, [3, 8, 36, 3])}


# ---------------------------------------------------------------------------------------------
# VGG (torchvision.models.vgg)

VGG_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg, batch_norm=False):
    layers, in_channels = [], 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU()] if batch_norm else [conv2d, nn.ReLU()]
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        stage, i = 1, 1
        for module in self.features:
            x = module(x)
            if isinstance(module, nn.MaxPool2d):
                tap(f"pool{stage}", x)
                stage, i = stage + 1, 1
            elif isinstance(module, nn.ReLU):
                tap(f"relu{stage}_{i}", x)
                i += 1
            else:  # the convolution, or the batch norm after it
                tap(f"conv{stage}_{i}", x)
        x = tap("avgpool", self.avgpool(x))
        x = torch.flatten(x, 1)
        for module, name in zip(self.classifier, ["fc6", "relu6", None, "fc7", "relu7", None, "fc8"]):
            x = module(x)
            if name:
                tap(name, x)
        return x


# ---------------------------------------------------------------------------------------------
# GoogLeNet (torchvision.models.googlenet)

class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        x = tap(f"{self.path}.conv", self.bn(self.conv(x)))
        return tap(self.path, F.relu(x))


class Inception(nn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     # torchvision's kernel_size=3 here (a known difference from the paper's 5x5)
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        branch4 = self.branch4[1](tap(f"{self.path}.branch4.0", self.branch4[0](x)))
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), branch4]
        return tap(self.path, torch.cat(outputs, 1))


class InceptionAux(nn.Module):
    def __init__(self, in_channels, num_classes, dropout=0.7):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)


class GoogLeNet(nn.Module):
    """With aux_logits=True and transform_input=True, as torchvision builds it for the pretrained
    weights (the aux heads are only used in training)."""

    def __init__(self, num_classes=1000, aux_logits=True, transform_input=True, dropout=0.2):
        super().__init__()
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes)
            self.aux2 = InceptionAux(528, num_classes)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

    def _transform_input(self, x):
        if self.transform_input:
            x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
            x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
            x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
            x = torch.cat((x_ch0, x_ch1, x_ch2), 1)
        return x

    def forward(self, x):
        x = self._transform_input(x)
        x = self.conv1(x)
        x = tap("pool1", self.maxpool1(x))
        x = self.conv3(self.conv2(x))
        x = tap("pool2", self.maxpool2(x))
        x = self.inception3b(self.inception3a(x))
        x = tap("pool3", self.maxpool3(x))
        x = self.inception4e(self.inception4d(self.inception4c(self.inception4b(self.inception4a(x)))))
        x = tap("pool4", self.maxpool4(x))
        x = self.inception5b(self.inception5a(x))
        x = tap("pool5", self.avgpool(x))
        x = self.dropout(torch.flatten(x, 1))
        return tap("fc", self.fc(x))


# ---------------------------------------------------------------------------------------------
# SqueezeNet (torchvision.models.squeezenet)

class Fire(nn.Module):
    def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x):
        n = self.name
        x = tap(f"{n}.squeeze", self.squeeze(x))
        x = tap(f"{n}.squeeze_activation", self.squeeze_activation(x))
        left = tap(f"{n}.expand1x1_activation", self.expand1x1_activation(tap(f"{n}.expand1x1", self.expand1x1(x))))
        right = tap(f"{n}.expand3x3_activation", self.expand3x3_activation(tap(f"{n}.expand3x3", self.expand3x3(x))))
        return tap(n, torch.cat([left, right], 1))


class SqueezeNet(nn.Module):
    def __init__(self, version="1_0", num_classes=1000, dropout=0.5):
        super().__init__()
        self.num_classes = num_classes
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2), nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(512, 64, 256, 256))
        else:
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
                nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        final_conv = nn.Conv2d(512, self.num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), final_conv, nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)))
        fire = 2
        for module in self.features:  # the paper's names fire2 ... fire9
            if isinstance(module, Fire):
                module.name, fire = f"fire{fire}", fire + 1

    def forward(self, x):
        fire = 1
        for k, module in enumerate(self.features):
            x = module(x)
            if isinstance(module, Fire):
                fire += 1
            elif isinstance(module, nn.MaxPool2d):
                tap(f"pool{fire}", x)
            else:
                tap("conv1" if k == 0 else "relu1", x)
        for module, name in zip(self.classifier, [None, "conv10", "relu10", "pool10"]):
            x = module(x)
            if name:
                tap(name, x)
        return torch.flatten(x, 1)


# ---------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision.models.mobilenetv2, torchvision.ops.misc.Conv2dNormActivation)

class Conv2dNormActivation(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU6())
        self.out_channels = out_channels

    def forward(self, x):
        x = tap(f"{self.path}.0", self[1](self[0](x)))
        return tap(self.path, self[2](x))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = self.stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1))
        layers.extend([Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                       nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)])
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x):
        y = x
        for module in self.conv[:-2]:
            y = module(y)
        project = f"{self.path}.conv.{len(self.conv) - 2}"
        y = tap(project if self.use_res_connect else self.path, self.conv[-1](self.conv[-2](y)))
        return tap(self.path, x + y) if self.use_res_connect else y


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.2):
        super().__init__()
        input_channel, last_channel = 32, 1280
        settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                    [6, 320, 1, 1]]
        features = [Conv2dNormActivation(3, input_channel, stride=2)]
        for t, c, n, s in settings:
            for i in range(n):
                features.append(InvertedResidual(input_channel, c, s if i == 0 else 1, expand_ratio=t))
                input_channel = c
        features.append(Conv2dNormActivation(input_channel, last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last_channel, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = tap("avgpool", F.adaptive_avg_pool2d(x, (1, 1)))
        x = torch.flatten(x, 1)
        return tap("fc", self.classifier(x))


# ---------------------------------------------------------------------------------------------

def reference(arch: str) -> nn.Module:
    """The evaluation-mode PyTorch network of a jaxinv torchvision architecture name."""
    name = arch.removeprefix("torchvision-")
    if name.startswith("resnet"):
        net = ResNet(*RESNETS[int(name[6:])])
    elif name.startswith("vgg"):
        depth, _, bn = name[3:].partition("-")
        net = VGG(make_layers(VGG_CFGS[int(depth)], batch_norm=bool(bn)))
    elif name == "googlenet":
        net = GoogLeNet()
    elif name.startswith("squeezenet"):
        net = SqueezeNet(name[10:])
    elif name == "mobilenet-v2":
        net = MobileNetV2()
    else:
        raise ValueError(f"no reference for {arch}")
    return _named(net).eval()


def randomise(net: nn.Module, seed: int = 0, rgb: np.ndarray | None = None) -> None:
    """Random weights (He-normal) and biases, and random batch norm statistics and affine parameters
    that keep activations of order one however deep, as in a trained network: each BatchNorm's
    statistics are first measured on `rgb` (training-mode batch statistics; mean 0, variance 1
    without images), then its running variance set to the measured one times q, log-uniform in
    [1e-4, 1] (so that eps matters), its running mean moved by 0.2 standard deviations at random,
    gamma = sqrt((q var + eps) / var) times U(0.5, 1.5) and beta random. (He-normal weights under
    statistics unrelated to the activations let MobileNetV2's linear bottlenecks double the variance
    at every block, so that ReLU6 saw pre-activations in the thousands at 224 px.)"""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: the batch's statistics
            norm.weight.fill_(1.0)
            norm.bias.zero_()
        if rgb is not None and norms:
            net.train()
            net(_torchvision_input(torch.tensor(np.transpose(rgb, (0, 3, 1, 2)), dtype=torch.float32)))
            net.eval()
        for norm in norms:
            n, mean, variance = norm.num_features, norm.running_mean.clone(), norm.running_var.clone()
            q = 10.0 ** (-4.0 * torch.rand(n, generator=g))
            norm.running_var.copy_(variance * q)
            norm.running_mean.copy_(mean + 0.2 * variance.sqrt() * torch.randn(n, generator=g))
            norm.weight.copy_(((variance * q + norm.eps) / variance).sqrt() * (0.5 + torch.rand(n, generator=g)))
            norm.bias.copy_(torch.randn(n, generator=g) * 0.2)
            norm.momentum = 0.1
            norm.num_batches_tracked.fill_(1000)


IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _torchvision_input(image):
    """RGB [0, 255] images (N, 3, H, W) -> torchvision's input: [0, 1], ImageNet's mean and std."""
    mean, std = (torch.tensor(v, dtype=image.dtype).reshape(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return (image / 255.0 - mean) / std


def torch_layers(net: nn.Module, rgb: np.ndarray, objective: str | None = None, objective_weights=None):
    """({jaxinv layer: output as NHWC / (N, units)}, with prob the scores' softmax; and if asked the
    gradient of sum(objective_weights * objective's output) with respect to the RGB [0, 255] images)
    of the network fed torchvision's input: the RGB image in [0, 1] normalised with ImageNet's mean
    and std. In the dtype of `rgb`."""
    image = torch.tensor(np.transpose(rgb, (0, 3, 1, 2)), requires_grad=objective is not None)
    with recording() as outputs:
        scores = net(_torchvision_input(image))
        tap("prob", torch.softmax(scores, dim=1))
    gradient = None
    if objective is not None:
        target = outputs[objective]
        weights = objective_weights if target.ndim == 2 else np.transpose(objective_weights, (0, 3, 1, 2))
        (target * torch.tensor(weights)).sum().backward()
        gradient = np.transpose(image.grad.numpy(), (0, 2, 3, 1))
    as_numpy = lambda t: t.detach().numpy() if t.ndim == 2 else np.transpose(t.detach().numpy(), (0, 2, 3, 1))
    return {name: as_numpy(t) for name, t in outputs.items()}, gradient


def _network_function(model, params):
    """RGB [0, 255] images -> {layer: output} of the converted model, through its input convention."""
    from jaxinv.nets import convention
    c = model.convention
    mean, std = np.asarray(c["mean"]), np.asarray(c["std"])
    return lambda rgb: model.apply(params, convention.to_network(rgb, c["channel_order"], c["pixel_range"], mean, std))


def _relative(found, expected) -> float:
    return float(np.abs(np.asarray(found).reshape(expected.shape) - expected).max() / np.abs(expected).max())


def _compared(model, ours: dict, reference: dict) -> dict:
    missing = [name for name in model.layer_names if name not in reference]
    if missing:
        raise AssertionError(f"no PyTorch reference for layers {missing}")
    return {name: _relative(ours[name], reference[name]) for name in model.layer_names}


def jax_layers(model, rgb: np.ndarray, objective: str | None = None, objective_weights=None):
    """What `torch_layers` returns, from the converted model in the dtype of `rgb` (its weights cast
    to it), as one compiled program. In float64 (a check of the graph, not of jaxinv's float32 runs)
    the program is compiled without LLVM's optimisations: 2.5x faster to compile (GoogLeNet's outputs
    and gradient at 64 px: 5.9 s instead of 14.6 s of CPU), as fast to run at test sizes."""
    import jax
    import jax.numpy as jnp
    dtype = rgb.dtype
    with jax.enable_x64(dtype == np.float64):
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), model.params)

        @jax.jit
        def layers_and_gradient(params, rgb, weights):
            outputs, pullback = jax.vjp(_network_function(model, params), rgb)
            if weights is None:
                return outputs, None
            cotangent = {name: jnp.zeros_like(y) for name, y in outputs.items()}
            cotangent[objective] = weights
            return outputs, pullback(cotangent)[0]

        weights = None if objective is None else jnp.asarray(objective_weights, dtype)
        args = (params, jnp.asarray(rgb), weights)
        options = {"xla_backend_optimization_level": 0} if dtype == np.float64 else None
        outputs, gradient = layers_and_gradient.lower(*args).compile(compiler_options=options)(*args)
        return {name: np.asarray(y) for name, y in outputs.items()}, None if gradient is None else np.asarray(gradient)


def layer_differences(model, net: nn.Module, rgb: np.ndarray) -> dict:
    """{layer: max |jaxinv - PyTorch| / max |PyTorch|} over every layer of the converted `model` run in
    float32, as jaxinv runs, against the PyTorch network in float64 (both see RGB [0, 255] images
    through their own input conventions). Against PyTorch in float32 the two float32 errors would add:
    on MobileNetV2 at 224 px PyTorch's own float32 error reaches 7e-5 of a ReLU6 layer's largest value
    (`float32_differences`; pre-activations up to ~80 clipped at 6), jaxinv's 6e-5, the two together 1.1e-4."""
    with torch.no_grad():
        reference, _ = torch_layers(copy.deepcopy(net).double(), rgb.astype(np.float64))
    return _compared(model, jax_layers(model, rgb.astype(np.float32))[0], reference)


def float32_differences(net: nn.Module, rgb: np.ndarray) -> dict:
    """PyTorch's own float32 error: {layer: max |float32 - float64| / max |float64|} of the network."""
    with torch.no_grad():
        single, _ = torch_layers(copy.deepcopy(net).float(), rgb.astype(np.float32))
        double, _ = torch_layers(copy.deepcopy(net).double(), rgb.astype(np.float64))
    return {name: _relative(single[name], double[name]) for name in double}


def with_converted_weights(net: nn.Module, model, arch: str) -> nn.Module:
    """A float64 copy of `net` computing what the converted model computes: every layer's weights
    put back from model.params through the layout, each folded batch norm made an exact bias
    (mean 0, variance 1, eps 0, gamma 1, beta the folded bias)."""
    from jaxinv.nets import torchvision_tables
    net = copy.deepcopy(net).double()
    modules = dict(net.named_modules())
    with torch.no_grad():
        for layer, (name, bn) in torchvision_tables.layout(arch).modules.items():
            w, b = (np.asarray(model.params[layer][k], np.float64) for k in ("w", "b"))
            module = modules[name]
            weight = np.transpose(w, (3, 2, 0, 1))  # conv (kh, kw, in, out), fc (h, w, c, units)
            module.weight.copy_(torch.from_numpy(weight.reshape(module.weight.shape)))
            if bn is None:
                module.bias.copy_(torch.from_numpy(b))
                continue
            if module.bias is not None:
                module.bias.zero_()
            norm = modules[bn]
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0)
            norm.eps = 0.0
            norm.weight.fill_(1.0)
            norm.bias.copy_(torch.from_numpy(b))
    return net


def max_relative_differences(model, net: nn.Module, arch: str, rgb: np.ndarray, objective: str, seed: int = 1) -> dict:
    """{layer: max |jaxinv - PyTorch| / max |PyTorch|} over every layer of the converted `model`, and
    "input gradient": that of the input gradient of a random linear function of `objective`'s output,
    from one compiled float64 program of the model (its float32 weights cast).

    Layers are compared with the PyTorch network in float64 on its own weights (batch norm unfolded),
    so the differences are the conversion's: the float32 rounding of the folded weights. The gradient
    is compared with the PyTorch network on the converted weights (`with_converted_weights`): in
    float32, or on weights that differ by a rounding, a ReLU whose input is within rounding of zero
    can be on in one network and off in the other (ResNet-50 at 64 px in float32: one unit of layer4.0
    moved the input gradient by 7e-3 of its largest entry), which says nothing of the backward pass.
    `layer_differences` compares the layers in float32, as jaxinv runs."""
    from jaxinv.nets import output_shapes
    rgb = rgb.astype(np.float64)
    shape = output_shapes(model.table, rgb.shape[1])[objective]
    weights = np.random.default_rng(seed).normal(size=(len(rgb),) + shape)
    ours, gradient = jax_layers(model, rgb, objective, weights)
    with torch.no_grad():
        reference, _ = torch_layers(copy.deepcopy(net).double(), rgb)
    _, reference_gradient = torch_layers(with_converted_weights(net, model, arch), rgb, objective, weights)
    differences = _compared(model, ours, reference)
    differences["input gradient"] = _relative(gradient, reference_gradient)
    return differences


OBJECTIVES = {"resnet": "fc", "vgg": "fc8", "googlenet": "fc", "squeezenet": "pool10", "mobilenet": "fc"}


def objective_layer(arch: str) -> str:
    """The layer whose input gradient is compared: the class scores."""
    return next(layer for family, layer in OBJECTIVES.items() if arch.startswith(f"torchvision-{family}"))


def converted(arch: str, directory: str, input_size: int, rgb: np.ndarray | None = None, seed: int = 0):
    """(random-weight PyTorch network, batch norm statistics measured on `rgb` then randomised, and
    the jaxinv model converted from its saved state_dict)."""
    from jaxinv.conversion import convert
    net = reference(arch)
    randomise(net, seed, rgb)
    path = os.path.join(directory, f"{arch}.pth")
    torch.save(net.state_dict(), path)
    return net, convert.convert("torch", arch, path, input_size=input_size)


def compare(arch: str, input_size: int, rgb: np.ndarray, directory: str) -> dict:
    net, model = converted(arch, directory, input_size, rgb)
    return max_relative_differences(model, net, arch, rgb, objective_layer(arch))


def natural_images(input_size: int, num_images: int) -> np.ndarray:
    from jaxinv.io import images
    paths = images.imagenet_sample_paths(num_images=num_images)
    return np.stack([images.load_image(path, size=input_size) for path in paths]).astype(np.float32)


ARCHS = ["torchvision-resnet18", "torchvision-resnet34", "torchvision-resnet50", "torchvision-resnet101",
         "torchvision-resnet152"] + [f"torchvision-vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "-bn")] + [
    "torchvision-googlenet", "torchvision-squeezenet1_0", "torchvision-squeezenet1_1", "torchvision-mobilenet-v2"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--size", type=int, default=224, help="input size (pixels)")
    parser.add_argument("--num_images", type=int, default=1)
    args = parser.parse_args()
    rgb = natural_images(args.size, args.num_images)
    print(f"{args.num_images} ImageNet sample(s) at {args.size}x{args.size}; random weights, batch norm statistics "
          "measured then randomised; per layer max |x - PyTorch float64| / max |PyTorch float64|, the worst layer "
          "shown")
    print("| architecture | layers | jaxinv float32 (worst layer) | PyTorch float32 (worst layer) | jaxinv float64 | "
          "input gradient, float64 | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for arch in args.archs.split(","):
        start = time.time()
        with tempfile.TemporaryDirectory() as directory:
            net, model = converted(arch, directory, args.size, rgb)
        single = layer_differences(model, net, rgb)
        torch_single = {name: d for name, d in float32_differences(net, rgb).items() if name in single}
        double = max_relative_differences(model, net, arch, rgb, objective_layer(arch))
        gradient = double.pop("input gradient")
        worst, torch_worst = max(single, key=single.get), max(torch_single, key=torch_single.get)
        print(f"| `{arch}` | {len(single)} | {single[worst]:.1e} ({worst}) | {torch_single[torch_worst]:.1e} "
              f"({torch_worst}) | {max(double.values()):.1e} | {gradient:.1e} | {time.time() - start:.0f} |",
              flush=True)
        del net, model


if __name__ == "__main__":
    main()
