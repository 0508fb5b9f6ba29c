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
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from jaxinv import graph
from jaxinv.nets import layers as L
from jaxinv.nets import tables
from jaxinv.nets.model import Model
from jaxinv.preimage import Problem, Representation

C_VALUES = (300.0, 100.0, 20.0, 1.0)
# Receptive field / input size thresholds separating C = 300 | 100 | 20 (see the module docstring).
C_RF_THRESHOLDS = (0.45, 0.60)
POINTWISE_OPS = (L.relu,)


def rgb_mean(model: Model) -> tuple[float, float, float]:
    """The network's mean as an RGB [0, 255] colour (the per-channel average of a mean image)."""
    mean = np.asarray(model.convention["mean"], np.float64)
    if model.mean_image is not None:
        mean = np.asarray(model.mean_image, np.float64).mean(axis=(0, 1))
    if model.convention["channel_order"] == "BGR":
        mean = mean[::-1]
    return tuple(float(v) for v in mean * 255.0 / model.convention["pixel_range"])


def network_input(model: Model, rgb):
    """RGB [0, 255] images (..., H, W, 3) -> the network's input space, in jnp (differentiable)."""
    convention = model.convention
    x = rgb[..., ::-1] if convention["channel_order"] == "BGR" else rgb
    x = x * (convention["pixel_range"] / 255.0)
    mean = convention["mean"]
    if model.mean_image is not None:
        image_mean = np.asarray(model.mean_image, np.float32)
        mean = image_mean if image_mean.shape[:2] == tuple(x.shape[-3:-1]) else image_mean.mean(axis=(0, 1))
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(convention["std"], jnp.float32)


def check_layer(model: Model, layer: str) -> None:
    graph.check_layer_name(model.table, layer, what=f"network {model.arch!r}")


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


@dataclasses.dataclass(frozen=True, eq=False)
class NetworkRepresentation(Representation):
    """A network layer as a Representation; hashed by identity so the engine caches its compiled steps."""
    model: Model | None = None
    layer: str = ""


def representation(model: Model, layer: str) -> NetworkRepresentation:
    """Layer `layer` of `model` as a Representation of one RGB image (H, W, 3) with the network's
    RGB mean subtracted; cached on the model, so compiled steps are reused."""
    check_layer(model, layer)
    cache = model.__dict__.setdefault("_representations", {})
    if layer not in cache:
        params = model.params

        def phi(rgb):
            return model.apply(params, network_input(model, rgb)[None], upto=layer)[layer][0]

        cache[layer] = NetworkRepresentation(
            name=f"{model.arch}:{layer}", fn=phi, channels=3, mean=rgb_mean(model),
            stride=layer_stride(model, layer), input_size=(model.input_size, model.input_size),
            min_size=model.input_size, model=model, layer=layer)
    return cache[layer]


def inversion_problem(model: Model, layer: str, *, C: float | None = None, jitter: bool = True) -> Problem:
    """IJCV Eq. 1 for inverting `layer`: the Sect. 3.3 defaults with the per-layer C and jitter rules
    (`C` overrides the rule; `jitter=False` sets T = 1)."""
    return Problem(loss="inversion", C=layer_C(model, layer) if C is None else float(C),
                   jitter=layer_jitter(model, layer) if jitter else 1)
