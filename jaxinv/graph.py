"""Layer tables: a representation is an ordered list of named layers run by one pure function.

A `Layer` is data: a name, the operator (a pure function of the previous layer's output and the
layer's parameters) and its static hyper-parameters. `run` interprets a table and returns every
named layer's output, so any stage of HOG, DSIFT or a deep network can be tapped.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    op: Callable[..., Any]
    hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __call__(self, x, params=None):
        if params is None:
            return self.op(x, **self.hyper)
        return self.op(x, params, **self.hyper)


def layer_names(layers: Sequence[Layer]) -> list[str]:
    return [layer.name for layer in layers]


def check_layer_name(layers: Sequence[Layer], name: str, what: str = "representation") -> None:
    names = layer_names(layers)
    if name not in names:
        raise ValueError(f"unknown layer {name!r} of {what}; valid layers: {', '.join(names)}")


def run(layers: Sequence[Layer], x, params: Mapping[str, Any] | None = None, upto: str | None = None) -> dict:
    """Runs the table on `x`; returns {layer name: output} for every layer up to `upto` (inclusive)."""
    if upto is not None:
        check_layer_name(layers, upto)
    outputs = {}
    for layer in layers:
        x = layer(x, None if params is None else params.get(layer.name))
        outputs[layer.name] = x
        if layer.name == upto:
            break
    return outputs
