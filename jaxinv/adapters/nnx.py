"""Flax NNX modules: `nnx.split` gives the graph definition (the structure, static) and the state
(the params pytree). Taps are collected with `nnx.capture(..., nnx.Intermediate,
method_outputs=nnx.Intermediate)` (flax >= 0.12): every public method's output of every submodule
("c1", "blocks/0", "encoder/features") and the values sown with `self.sow(nnx.Intermediate, ...)`;
"output" is the module's own output. Put the module in inference mode (`module.eval()`) before
wrapping when it has dropout or batch norm."""
from __future__ import annotations

import dataclasses

from flax import nnx

from jaxinv.adapters.core import TappedModel, flatten_taps


def _plain(state):
    """nnx.State of Intermediate variables -> nested dicts of their values."""
    return {key: value.get_value() if isinstance(value, nnx.Variable) else _plain(value)
            for key, value in state.items()}


@dataclasses.dataclass(frozen=True)
class NNXTaps:
    """taps(state, x) of an NNX module (compared by its graph definition)."""
    graphdef: nnx.GraphDef

    def __call__(self, state, x):
        module = nnx.merge(self.graphdef, state)
        out, intermediates = nnx.capture(module, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
        taps = flatten_taps(_plain(intermediates))
        taps["output"] = out if "output" not in taps else taps["output"]
        return taps


def from_nnx(module: nnx.Module, *, input_size, convention=None, batched: bool = True, layout: str = "HWC",
             name: str | None = None) -> TappedModel:
    """An NNX `module` as a TappedModel whose params are its state (`nnx.split(module)`)."""
    graphdef, state = nnx.split(module)
    return TappedModel(NNXTaps(graphdef), state, input_size=input_size, convention=convention, batched=batched,
                       layout=layout, name=name or type(module).__name__)
