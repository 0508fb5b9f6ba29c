"""What a layer table implies for a given input shape: every layer's output shape, receptive field
and stride, parameter shapes and initial parameters. Used by the deep networks and the inverters.

Each operator declares a `Rule` (`register`, next to the operator's definition; the graph's own
`add` and `concat` here): its output shape, its parameter shapes if it has any, and its sliding
window (kernel, stride, padding) in input cells for receptive fields. Shapes never include the batch axis.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.engine import graph


def _pointwise_window(hyper, *shapes):
    return 1, 1


@dataclasses.dataclass(frozen=True)
class Rule:
    """`output(hyper, *input_shapes)` -> output shape; `params(hyper, *input_shapes)` ->
    {"w": shape, "b": shape} (None: no parameters); `window(hyper, *input_shapes)` -> (kernel,
    stride) or (kernel, stride, leading padding) in input cells (None: no receptive field, e.g. an
    up-sampling or a reshape; the padding places the window, which only unions of branches need);
    `fan_in_fraction`: the share of the filter's inputs an output actually sees, for initialisation
    (1/4 for the 2x up-convolution, whose input is 3/4 zeros after unpooling)."""
    output: Callable[..., tuple]
    params: Callable[..., dict] | None = None
    window: Callable[..., tuple[int, int]] | None = _pointwise_window
    fan_in_fraction: float = 1.0


POINTWISE = Rule(output=lambda hyper, shape: tuple(shape))
_RULES: dict[Callable, Rule] = {}


def register(op: Callable, rule: Rule) -> None:
    _RULES[op] = rule


def rule(layer: graph.Layer) -> Rule:
    if layer.op not in _RULES:
        raise ValueError(f"layer {layer.name}: no shape rule for op {getattr(layer.op, '__name__', layer.op)!r}")
    return _RULES[layer.op]


def _add_output(hyper, *shapes):
    if len(set(shapes)) != 1:
        raise ValueError(f"cannot add maps of shapes {list(shapes)}")
    return shapes[0]


def _concat_output(hyper, *shapes):
    if len({s[:-1] for s in shapes}) != 1:
        raise ValueError(f"cannot concatenate maps of shapes {list(shapes)}")
    return shapes[0][:-1] + (sum(s[-1] for s in shapes),)


register(graph.add, Rule(output=_add_output))
register(graph.concat, Rule(output=_concat_output))


def _walk(table: Sequence[graph.Layer], input_shape: Sequence[int]):
    """Yields (layer, input names, input shapes, output shape) in table order."""
    shapes = {graph.INPUT: tuple(input_shape)}
    for layer, names in zip(table, graph.input_names(table)):
        ins = [shapes[n] for n in names]
        try:
            out = tuple(rule(layer).output(layer.hyper, *ins))
        except ValueError as e:
            raise ValueError(f"layer {layer.name}: {e}") from None
        if min(out) < 1:
            raise ValueError(f"input shape {tuple(input_shape)} is too small: layer {layer.name} would output {out}")
        shapes[layer.name] = out
        yield layer, names, ins, out


def output_shapes(table: Sequence[graph.Layer], input_shape: Sequence[int]) -> dict:
    """{layer: output shape} for an input of `input_shape` ((H, W, C) or (D,))."""
    return {layer.name: out for layer, _, _, out in _walk(table, input_shape)}


def receptive_field_intervals(table: Sequence[graph.Layer], input_shape: Sequence[int]) -> dict:
    """{layer: (start, stop, stride)}: unit 0 of the layer's map sees input pixels [start, stop)
    (start < 0 where it reaches into padding) and unit i sees [start + i stride, stop + i stride).

    A layer reading several maps (a sum, a concatenation) sees the union of what their units see,
    i.e. the union over the paths from the input. Maps read together have one shape; at one stride
    the union of their units' intervals is [min start, max stop) for every unit (maps at different
    strides, which no shipped table has, take the coarsest: a bound for unit 0)."""
    fields = {graph.INPUT: (0, 1, 1)}
    for layer, names, ins, _ in _walk(table, input_shape):
        window = rule(layer).window
        if window is None:
            raise ValueError(f"layer {layer.name}: op {layer.op.__name__!r} has no receptive field")
        kernel, layer_stride, *padding = window(layer.hyper, *ins)
        pad = padding[0] if padding else 0
        start = min(fields[n][0] for n in names)
        stop = max(fields[n][1] for n in names)
        stride = max(fields[n][2] for n in names)
        fields[layer.name] = (start - pad * stride, stop + (kernel - 1 - pad) * stride, stride * layer_stride)
    del fields[graph.INPUT]
    return fields


def receptive_fields(table: Sequence[graph.Layer], input_shape: Sequence[int]) -> dict:
    """{layer: (receptive field size, stride)} in input pixels, from `receptive_field_intervals`
    (through branches: the union of the paths' fields)."""
    return {name: (stop - start, stride)
            for name, (start, stop, stride) in receptive_field_intervals(table, input_shape).items()}


def param_shapes(table: Sequence[graph.Layer], input_shape: Sequence[int]) -> dict:
    """{layer: {"w": shape, "b": shape}} of every layer with parameters, in table order."""
    return {layer.name: rule(layer).params(layer.hyper, *ins)
            for layer, _, ins, _ in _walk(table, input_shape) if rule(layer).params is not None}


@functools.partial(jax.jit, static_argnums=1)
def _draw(key, specs: tuple):
    """Standard normal weights of shapes `specs` ((shape, std), ...) times their std, from one
    draw sliced up: one compilation per table rather than one per parameter shape (eager
    jax.random calls compile once per shape, ~1 s each on this CPU), and traceable."""
    sizes = [math.prod(shape) for shape, _ in specs]
    flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
    offsets = np.cumsum([0] + sizes)
    return [flat[a:b].reshape(shape) * std for (shape, std), a, b in zip(specs, offsets[:-1], offsets[1:])]


def init_params(table: Sequence[graph.Layer], key, input_shape: Sequence[int], gain: float = 2.0) -> dict:
    """He-normal weights (variance gain / fan-in; 2 for ReLUs), zero biases, drawn from `key`."""
    rules = {layer.name: rule(layer) for layer in table}
    shapes = param_shapes(table, input_shape)
    specs = tuple((shape["w"], math.sqrt(gain / (math.prod(shape["w"][:-1]) * rules[name].fan_in_fraction)))
                  for name, shape in shapes.items())
    weights = _draw(key, specs)
    return {name: {"w": w, "b": jnp.zeros(shape["b"], jnp.float32)}
            for (name, shape), w in zip(shapes.items(), weights)}


def num_params(params: Mapping) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
