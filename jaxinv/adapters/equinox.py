"""Equinox modules: `eqx.partition(model, eqx.is_array)` splits the arrays (the params) from the rest
(static, compared by value). Equinox has no intermediates mechanism, so every callable submodule is
wrapped by a recorder that keeps its output: taps are named by attribute path ("layers/0",
"encoder/conv"); "output" is the model's own output. Equinox layers take unbatched CHW images:
the defaults are batched=False, layout="CHW" (feature maps come back (h, w, c)). Stateful layers
(`eqx.nn.BatchNorm` with `eqx.nn.State`) are not supported."""
from __future__ import annotations

import dataclasses
import threading

import equinox as eqx

from jaxinv.adapters.core import TappedModel

_records = threading.local()


class _Recorded(eqx.Module):
    inner: eqx.Module
    name: str = eqx.field(static=True)

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        stack = getattr(_records, "stack", None)
        if stack:
            taps = stack[-1]
            key, k = self.name, 1
            while key in taps:  # a submodule called again: name[1], name[2], ...
                key, k = f"{self.name}[{k}]", k + 1
            taps[key] = out
        return out

    def __getattr__(self, item):  # the parent may read the wrapped module's attributes
        if item.startswith("__") or item in ("inner", "name"):
            raise AttributeError(item)
        return getattr(self.inner, item)


def submodules(model, path: tuple = ()) -> list[tuple[tuple, eqx.Module]]:
    """(path, module) of every callable eqx.Module inside `model` (fields, lists, tuples, dicts), root excluded."""
    found = []
    if isinstance(model, eqx.Module):
        children = [(f.name, getattr(model, f.name, None)) for f in dataclasses.fields(model)]
    elif isinstance(model, (list, tuple)):
        children = list(enumerate(model))
    elif isinstance(model, dict):
        children = list(model.items())
    else:
        return found
    for key, child in children:
        if isinstance(child, eqx.Module) and callable(child):
            found.append((path + (key,), child))
        found.extend(submodules(child, path + (key,)))
    return found


def _get(model, path):
    for key in path:
        model = getattr(model, key) if isinstance(key, str) and isinstance(model, eqx.Module) else model[key]
    return model


@dataclasses.dataclass(frozen=True)
class EquinoxTaps:
    """taps(arrays, x) of an Equinox model (compared by its static part)."""
    static: eqx.Module

    def __call__(self, arrays, x):
        model = eqx.combine(arrays, self.static)
        for path, _ in sorted(submodules(model), key=lambda item: -len(item[0])):
            name = "/".join(str(k) for k in path)
            model = eqx.tree_at(lambda m: _get(m, path), model, _Recorded(_get(model, path), name))
        stack = _records.__dict__.setdefault("stack", [])
        stack.append({})
        try:
            out = model(x)
        finally:
            taps = stack.pop()
        taps["output"] = out
        return taps


def from_equinox(model: eqx.Module, *, input_size, convention=None, batched: bool = False, layout: str = "CHW",
                 name: str | None = None) -> TappedModel:
    """An Equinox `model` as a TappedModel whose params are its arrays (`eqx.partition`)."""
    arrays, static = eqx.partition(model, eqx.is_array)
    return TappedModel(EquinoxTaps(static), arrays, input_size=input_size, convention=convention, batched=batched,
                       layout=layout, name=name or type(model).__name__)
