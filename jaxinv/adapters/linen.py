"""Flax linen modules: taps are every submodule's `__call__` output (`capture_intermediates=True`)
plus the values sown into the "intermediates" collection, named by module path ("Conv_0",
"Block_1/Dense_0", a sown "features"); "output" is the module's own output."""
from __future__ import annotations

import dataclasses
from typing import Any

from flax import linen as nn

from jaxinv.adapters.core import TappedModel, flatten_taps


@dataclasses.dataclass(frozen=True)
class LinenTaps:
    """taps(variables, x) of a linen module (compared by the module's hyper-parameters)."""
    module: nn.Module
    method: str | None = None
    kwargs: tuple = ()

    def __call__(self, variables, x):
        out, state = self.module.apply(variables, x, method=self.method, capture_intermediates=True,
                                       mutable=["intermediates"], **dict(self.kwargs))
        taps = flatten_taps(state["intermediates"])
        taps["output"] = out if "output" not in taps else taps["output"]
        return taps


def from_linen(module: nn.Module, variables: Any, *, input_size, convention=None, method: str | None = None,
               batched: bool = True, layout: str = "HWC", name: str | None = None, **kwargs) -> TappedModel:
    """A linen `module` with `variables` (as from `module.init`: {"params": ..., ...}) as a
    TappedModel; `kwargs` (hashable values, e.g. train=False) go to every `module.apply`. Modules
    with batch statistics must run in inference mode (use_running_average=True)."""
    taps = LinenTaps(module, method, tuple(sorted(kwargs.items())))
    return TappedModel(taps, variables, input_size=input_size, convention=convention, batched=batched,
                       layout=layout, name=name or type(module).__name__)
