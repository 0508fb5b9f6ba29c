"""A plain function `apply(params, x) -> {name: array}` as a TappedModel (its keys are the taps)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from jaxinv.adapters.core import TappedModel


def from_function(apply: Callable[[Any, Any], Mapping], params: Any, *, input_size, convention=None,
                  batched: bool = True, layout: str = "HWC", name: str | None = None) -> TappedModel:
    """`apply(params, x)` returns {tap: array} for model inputs x (a batch of one when `batched`).
    It must be hashable and compare by what it computes (a module-level function or a frozen
    dataclass, not a fresh lambda) for models that differ only in `params` to share compiled steps."""
    return TappedModel(apply, params, input_size=input_size, convention=convention, batched=batched,
                       layout=layout, name=name or getattr(apply, "__name__", type(apply).__name__))
