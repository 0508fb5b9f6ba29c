"""Network layers as Representations: any named layer of a `jaxinv.nets.Model`, its output shape and stride.

Images are RGB in [0, 255] with the network's per-channel mean (converted to RGB [0, 255])
subtracted, so the engine's bounds B = 80, B+ = 2B are in grey levels as for HOG. The network's own
convention (channel order, pixel range, mean image, std; `jaxinv.nets.convention`) is applied inside
the representation, differentiably. The representation's params are the network's weights, so two
networks of one architecture share compiled steps. Layers of the spatial trunk (before the first
fully connected or adaptive pooling layer) accept other input sizes than the network's:
`representation(model, layer, input_size=S)`.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from jaxinv.engine import graph
from jaxinv.engine.representation import Representation
from jaxinv.io import checkpoints
from jaxinv.nets import layers as L
from jaxinv.nets import convention, tables
from jaxinv.nets.model import Model


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
    key = checkpoints.weights_fingerprint(given)
    apply = NetworkCode(tuple(model.table), table_structure(model.table), model.convention["channel_order"],
                        float(model.convention["pixel_range"]), given["mean"], given["std"], key, layer,
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
