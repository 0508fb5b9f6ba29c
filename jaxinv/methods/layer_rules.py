"""Per-layer settings of IJCV Sect. 5.2 for inverting a network layer, written as rules over the layer
table (receptive field and stride derived from it) rather than per-name lookups, so they carry over
to other networks:

- jitter T = max(round(stride / 4), 1) with the layer's derived stride;
- C (`layer_C`): 1 for every layer past the convolutional trunk (the last convolution and the
  pointwise layers, sums and concatenations right after it: ResNet's last add and ReLU, an Inception
  module's concatenation), otherwise by the layer's receptive field relative to the
  input size: 300 up to 0.45, 100 up to 0.60, 20 beyond. On CaffeNet/AlexNet and VGG-M this
  gives the paper's 300 up to relu3, 100 up to relu4, 20 up to relu5, 1 beyond; on VGG-VD-16
  300 up to conv4_3 (and pool4), 100 for conv5_1, 20 up to conv5_3, 1 beyond (tested). On the
  shipped cifar-ref (32x32 input) it gives 300 up to relu2, 100 for pool2/norm2, 20 for
  conv3/relu3, 1 from pool3 on. Through branches the receptive field is the union over the paths
  (`jaxinv.engine.layer_shapes.receptive_field_intervals`) and a global average pool keeps its
  input's stride: on torchvision's ResNet-50 (224 px) this gives 300 up to layer2 (field 91 px), 100
  for layer3.0, 20 for the rest of layer3 and layer4, 1 for avgpool and fc, with T = 1 up to layer1,
  then 2, 4, 8 for layer2, layer3, layer4 (8 for avgpool and fc); on GoogLeNet 300 up to pool3, 100
  for inception4a, 20 from inception4b to inception5b, 1 for pool5 and fc (tested).
"""
from __future__ import annotations

from typing import Sequence

from jaxinv.engine import graph
from jaxinv.engine.preimage import Problem
from jaxinv.nets import layers as L
from jaxinv.nets.model import Model
from jaxinv.nets.taps import check_layer, layer_stride

C_VALUES = (300.0, 100.0, 20.0, 1.0)
# Receptive field / input size thresholds separating C = 300 | 100 | 20 (see the module docstring).
C_RF_THRESHOLDS = (0.45, 0.60)
POINTWISE_OPS = L.ACTIVATIONS
# Ops that continue the trunk after its last convolution: pointwise ones and the merges of branches.
TRUNK_OPS = POINTWISE_OPS + (graph.add, graph.concat)

def layer_jitter(model: Model, layer: str) -> int:
    """Jitter amount T = max(round(stride / 4), 1) from the layer's derived stride (IJCV Sect. 5.2)."""
    return max(int(round(layer_stride(model, layer) / 4)), 1)


def trunk_end(table: Sequence[graph.Layer]) -> str:
    """Name of the last layer of the convolutional trunk: the last convolution and the pointwise
    layers, sums and concatenations that directly follow it (conv5 -> relu5 on CaffeNet; ResNet's
    layer4.1.conv2 -> layer4.1.add -> layer4)."""
    convs = [i for i, layer in enumerate(table) if layer.op is L.conv]
    if not convs:
        raise ValueError("the network has no convolutional layer")
    end = convs[-1]
    while end + 1 < len(table) and table[end + 1].op in TRUNK_OPS:
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

def inversion_problem(model: Model, layer: str, *, C: float | None = None, jitter: bool = True) -> Problem:
    """IJCV Eq. 1 for inverting `layer`: the Sect. 3.3 defaults with the per-layer C and jitter rules
    (`C` overrides the rule; `jitter=False` sets T = 1)."""
    return Problem(loss="inversion", C=layer_C(model, layer) if C is None else float(C),
                   jitter=layer_jitter(model, layer) if jitter else 1)
