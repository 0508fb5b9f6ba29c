"""Layer tables: a representation is an ordered list of named layers run by one pure function.

A `Layer` is data: a name, the operator (a pure function of its inputs, then its parameters if the
layer has any) and its static hyper-parameters, plus the layers it reads. With `inputs` empty it
reads the previous layer's output (the graph input for the first layer), so HOG, DSIFT and the
deep networks are plain chains; naming inputs makes branches, sums (`add`) and concatenations
(`concat`). `run` interprets a table and returns every named layer's output, so any stage can be
tapped. Shapes, receptive fields and parameters are derived from tables in `jaxinv.engine.layer_shapes`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp

# Name by which `inputs` refer to the graph input (a layer may not take it).
INPUT = "input"


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    op: Callable[..., Any]
    hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    inputs: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-able description (recorded in saved inverters' metadata; loading rebuilds the table
        from the recorded configuration instead, so the op is recorded by name only)."""
        return {"name": self.name, "op": self.op.__name__, "hyper": dict(self.hyper), "inputs": list(self.inputs)}


def add(*xs):
    """Sum of the inputs (a residual connection)."""
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


def concat(*xs):
    """Concatenation on the channel (last) axis."""
    return jnp.concatenate(xs, axis=-1)


def layer_names(layers: Sequence[Layer]) -> list[str]:
    return [layer.name for layer in layers]


def check_layer_name(layers: Sequence[Layer], name: str, what: str = "representation") -> None:
    names = layer_names(layers)
    if name not in names:
        raise ValueError(f"unknown layer {name!r} of {what}; valid layers: {', '.join(names)}")


def input_names(table: Sequence[Layer]) -> list[tuple[str, ...]]:
    """The names each layer reads, defaults resolved; checks that every one is an earlier layer (or
    INPUT) and that names are unique, so a malformed table fails before any tracing."""
    seen, resolved = {INPUT}, []
    for i, layer in enumerate(table):
        if layer.name in seen:
            raise ValueError(f"layer name {layer.name!r} is used twice (or is the reserved input name)")
        names = layer.inputs or ((table[i - 1].name,) if i else (INPUT,))
        missing = [n for n in names if n not in seen]
        if missing:
            raise ValueError(f"layer {layer.name!r} reads {missing}, which no earlier layer outputs")
        seen.add(layer.name)
        resolved.append(tuple(names))
    return resolved


def run(table: Sequence[Layer], params: Mapping[str, Any] | None, x, upto: str | None = None) -> dict:
    """Runs the table on `x`; returns {layer name: output} for every layer up to `upto` (inclusive).

    A layer receives parameters iff `params` has an entry under its name (the parameter-free
    feature graphs pass None)."""
    if upto is not None:
        check_layer_name(table, upto)
    params = params or {}
    outputs = {INPUT: x}
    for layer, names in zip(table, input_names(table)):
        xs = [outputs[n] for n in names]
        if layer.name in params:
            outputs[layer.name] = layer.op(*xs, params[layer.name], **layer.hyper)
        else:
            outputs[layer.name] = layer.op(*xs, **layer.hyper)
        if layer.name == upto:
            break
    del outputs[INPUT]
    return outputs
