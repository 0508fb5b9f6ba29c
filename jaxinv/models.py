"""Any model, one interface: what the methods ask of a network, answered for both kinds of model.

A *model* here is either
- a `jaxinv.nets.Model` (a layer table with weights: shipped, converted or trained), whose geometry
  (receptive field, stride, output shapes) is derived from its table and whose per-layer C and
  jitter follow `jaxinv.methods.layer_rules`; or
- a `jaxinv.adapters.TappedModel` (your own Flax linen / NNX / Equinox model or plain function),
  whose geometry is measured from the gradient support (`jaxinv.adapters.geometry`) and whose C and
  jitter follow the same rules on the measured geometry.

`load` also accepts a shipped network's name or a converted network's folder. The methods
(`jaxinv.methods.visualise`, `activation_max`, `texture`, `windows`) and the one-call API
(`jaxinv.api`) ask only through these functions, so this module is the one place where the two
kinds differ. Images are RGB (or grey, for one-channel models) in [0, 255], square, at
`input_side(model)` pixels unless a function says otherwise.
"""
from __future__ import annotations

import functools
from typing import Sequence


from jaxinv.adapters.core import TappedModel
from jaxinv.engine import graph
from jaxinv.engine.preimage import Problem
from jaxinv.engine.representation import Representation
from jaxinv.nets import layers as L
from jaxinv.nets import taps
from jaxinv.nets.model import Model

KINDS = "a shipped network name, a converted network folder, a jaxinv.nets.Model or an adapted model (jaxinv.adapters)"


def load(model) -> Model | TappedModel:
    """The model `model` names: a `nets.Model` or `TappedModel` as is, a string as a shipped name or folder."""
    if isinstance(model, (Model, TappedModel)):
        return model
    if isinstance(model, str):
        from jaxinv import nets
        return nets.load(model)
    raise TypeError(f"model must be {KINDS}; got {type(model).__name__}")


def is_table(model) -> bool:
    """True for a layer-table network (geometry derived), False for an adapted model (geometry measured)."""
    return isinstance(load(model), Model)


def name(model) -> str:
    return model.arch if isinstance(model, Model) else model.name


def layer_names(model) -> list[str]:
    return model.layer_names if isinstance(model, Model) else list(model.layers())


def check_layer(model, layer: str) -> None:
    if isinstance(model, Model):
        taps.check_layer(model, layer)
    else:
        model.check_tap(layer)


def input_side(model) -> int:
    """The side of the square images the model is shown (its input size)."""
    if isinstance(model, Model):
        return int(model.input_size)
    height, width = model.input_size
    if height != width:
        raise ValueError(f"{model.name} is wrapped at {height}x{width}; the methods need a square input size")
    return int(height)


def channels(model) -> int:
    return 3 if isinstance(model, Model) else model.channels


def class_names(model) -> list[str] | None:
    return getattr(model, "class_names", None)


def layer_shape(model, layer: str, input_size: int | None = None) -> tuple[int, ...]:
    """Output shape of `layer` (no batch axis): (h, w, c) for feature maps, (units,) otherwise."""
    if isinstance(model, Model):
        return taps.layer_output_shape(model, layer, input_size)
    check_layer(model, layer)
    return tuple(model.layers(input_size)[layer])


def feature_map_shape(model, layer: str, what: str, input_size: int | None = None) -> tuple[int, int, int]:
    """`layer_shape`, or a ValueError naming the model, layer and shape when it is not a spatial map."""
    shape = layer_shape(model, layer, input_size)
    if len(shape) != 3:
        raise ValueError(f"{what} needs a layer with a spatial map; layer {layer!r} of {name(model)} outputs {shape}")
    return shape


def spatial_layers(model) -> list[str]:
    """Layers whose outputs are feature maps that run at input sizes other than the model's: the
    table's spatial trunk, or an adapted model's taps with (h, w, c) outputs."""
    if isinstance(model, Model):
        return taps.spatial_trunk(model)
    return [tap for tap, shape in model.layers().items() if len(shape) == 3]


def representation(model, layer: str, input_size: int | None = None) -> Representation:
    """`layer` of `model` as a Representation of one image (S, S, channels) in [0, 255] minus the model's mean."""
    if isinstance(model, Model):
        return taps.representation(model, layer, input_size)
    return model.representation(layer, input_size=input_size)


@functools.lru_cache(maxsize=256)
def _measured(model: TappedModel, layer: str):
    from jaxinv.adapters import geometry
    return geometry.measure(model.representation(layer, stride=1))


def receptive_field(model, layer: str) -> tuple[int, int]:
    """(receptive field, stride) in pixels at the model's input size: derived from the table, or
    measured (the larger of rows and columns; a code with no spatial map sees the whole image and
    takes the representation's stride)."""
    if isinstance(model, Model):
        taps.check_layer(model, layer)
        rf, stride = model.receptive_fields[layer]
        return int(rf), int(stride)
    check_layer(model, layer)
    geometry = _measured(model, layer)
    stride = max(geometry.stride) if geometry.stride is not None else model.representation(layer).stride
    return int(max(geometry.receptive_field)), int(stride)


def window_box(model, layer: str, window: Sequence[int]) -> tuple[int, int, int, int]:
    """Input pixels (top, left, bottom, right; exclusive ends) that influence the cells `window` of
    `layer`: walked back through the table, or measured as the gradient support of those cells."""
    if isinstance(model, Model):
        from jaxinv.methods import windows
        return windows.receptive_field_box(model, layer, window)
    from jaxinv.adapters import geometry
    return geometry.window_support(model.representation(layer, stride=1), window)


def layer_jitter(model, layer: str) -> int:
    """Jitter T = max(round(stride / 4), 1) (IJCV Sect. 5.2)."""
    from jaxinv.methods import layer_rules
    if isinstance(model, Model):
        return layer_rules.layer_jitter(model, layer)
    from jaxinv.adapters import geometry
    return geometry.jitter_for(receptive_field(model, layer)[1])


def inversion_problem(model, layer: str, *, C: float | None = None, jitter: bool = True) -> Problem:
    """IJCV Eq. 1 for inverting `layer` with the per-layer C and jitter rules (`C` overrides the rule)."""
    from jaxinv.methods import layer_rules
    if isinstance(model, Model):
        return layer_rules.inversion_problem(model, layer, C=C, jitter=jitter)
    from jaxinv.adapters import geometry
    check_layer(model, layer)
    return geometry.problem_for(model.representation(layer), C=C, jitter=jitter, geometry=_measured(model, layer))


def layer_C(model, layer: str) -> float:
    """The loss weight C of IJCV Sect. 5.2 for inverting `layer` (`inversion_problem`'s rule)."""
    from jaxinv.methods import layer_rules
    if isinstance(model, Model):
        return layer_rules.layer_C(model, layer)
    from jaxinv.adapters import geometry
    check_layer(model, layer)
    return geometry.measured_C(_measured(model, layer))


def prediction_layer(model) -> str:
    """The layer whose argmax is the predicted class: a table's last layer (its softmax), or an
    adapted model's class output (`class_layer`)."""
    return model.layer_names[-1] if isinstance(model, Model) else class_layer(model)


def invertible_layers(model) -> list[str]:
    """Every layer except a final softmax (the layers of IJCV Fig. 12)."""
    if isinstance(model, Model):
        return [layer.name for layer in model.table if layer.op is not L.softmax]
    return layer_names(model)


def class_layer(model) -> str:
    """The layer of class scores: the last fully connected layer of a table, or an adapted model's
    output when it is a vector."""
    if isinstance(model, Model):
        fcs = [layer.name for layer in model.table if layer.op is L.fc]
        if not fcs:
            raise ValueError(f"network {model.arch!r} has no fully connected layer of class scores")
        return fcs[-1]
    from jaxinv.adapters.core import OUTPUT
    shape = model.layers().get(OUTPUT)
    if shape is None or len(shape) != 1:
        raise ValueError(f"{model.name} has no vector output {OUTPUT!r} of class scores (its output is {shape})")
    return OUTPUT


def is_class_layer(model, layer: str) -> bool:
    """True for the class-score layer and the layers after it (its softmax): a unit is a class."""
    try:
        scores = class_layer(model)
    except ValueError:
        return False
    names = layer_names(model)
    return names.index(layer) >= names.index(scores)


def pre_activation(model, layer: str) -> str:
    """The ReLU's input for a table's ReLU (or ReLU6) layer (maximising it has a gradient where the
    unit is zero), else `layer` itself."""
    if isinstance(model, Model):
        index = model.layer_names.index(layer)
        source = graph.input_names(model.table)[index][0]
        return source if model.table[index].op in L.ACTIVATIONS and source != graph.INPUT else layer
    return layer



def texture_layers(model) -> list[str]:
    """Default layers of the texture and style losses: the ReLU (ReLU6) layers of a table's spatial trunk
    (relu1, relu2, relu3 on cifar-ref), or every tap with a spatial map of an adapted model."""
    if isinstance(model, Model):
        trunk = set(taps.spatial_trunk(model))
        return [layer.name for layer in model.table if layer.op in L.ACTIVATIONS and layer.name in trunk]
    return spatial_layers(model)


def check_texture_layers(model, layers: Sequence[str]) -> None:
    """ValueError unless every layer exists and has a spatial map (and at least one is given)."""
    if not layers:
        raise ValueError("no texture layers given")
    spatial = spatial_layers(model)
    for layer in layers:
        check_layer(model, layer)
        if layer not in spatial:
            raise ValueError(f"texture layer {layer!r} has no spatial map in {name(model)}; "
                             f"layers with maps: {', '.join(spatial)}")


def gram_representation(model, layers: Sequence[str], content_layer: str | None = None,
                        input_size: int | None = None) -> Representation:
    """A Representation whose code is {"features": {layer: map}} (and "content": the content layer's
    code) of one image minus the model's mean, from one forward pass."""
    layers = tuple(layers)
    check_texture_layers(model, layers)
    if isinstance(model, Model):
        size = model.input_size if input_size is None else int(input_size)
        for layer in layers + ((content_layer,) if content_layer else ()):
            taps.check_input_size(model, layer, size)
        name = f"{model.arch}:gram({','.join(layers)})" + (f"+{content_layer}" if content_layer else "")
        return taps.network_representation(model, content_layer or layers[-1], size, name, gram_layers=layers,
                                           content=content_layer is not None)
    return model.gram_representation(layers, content_layer, input_size=input_size)


def deepest_layer(model, representation: Representation) -> str:
    """The deepest layer a network or Gram representation computes (its jitter follows that layer's stride)."""
    code, names = representation.apply, layer_names(model)
    return max((code.layer,) + tuple(code.gram_layers), key=names.index)
