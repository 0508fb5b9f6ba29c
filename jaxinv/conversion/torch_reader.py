"""PyTorch state_dicts: torchvision's families (`jaxinv.nets.torchvision_tables`: each layer's weights
read from the module its `layout` names, batch norm folded into the convolution before it) and the
Caffe-style architectures written as nn.Sequential, with numbered or layer-named modules."""
from __future__ import annotations

import re

import numpy as np

from jaxinv.io import paths
from jaxinv.nets import tables, torchvision_tables
from jaxinv.conversion import common

BATCH_NORM_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def read_state_dict(path: str) -> dict:
    """{key: numpy array} of a .pth file, in the file's (module registration) order."""
    try:
        import torch
    except ImportError:
        raise ImportError("reading PyTorch files needs torch: pip install torch==2.13.0") from None
    paths.input_file(path, "PyTorch file")  # missing: FileNotFoundError; a pipe or folder: ValueError
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises assorted types for truncated or foreign files
        raise ValueError(f"cannot read PyTorch file {path}: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return {key: value.detach().cpu().numpy() for key, value in state.items() if hasattr(value, "detach")}


def _modules(state: dict, path: str, leaves=("weight", "bias")) -> dict:
    """{module prefix: {leaf: array}} in file order, dropping a DataParallel "module." prefix."""
    modules = {}
    for key, value in state.items():
        prefix, _, leaf = re.sub(r"^module\.", "", key).rpartition(".")
        if leaf not in leaves:
            expected = "batch norm statistics and " if "running_mean" in leaves else ""
            raise ValueError(f"{path}: unexpected tensor {key!r} (only {expected}conv/linear weights and biases "
                             "are expected)")
        modules.setdefault(prefix, {})[leaf] = value
    return modules


def fold_batch_norm(weight, bias, bn: dict, eps: float, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Convolution (out, ...) weights and bias (None: zero) followed by eval-mode batch norm ->
    one convolution: w * s, (b - mean) * s + beta with s = gamma / sqrt(running_var + eps)."""
    out = np.shape(weight)[0]
    for key in ("running_mean", "running_var"):
        if key not in bn:
            raise ValueError(f"{what}: batch norm has no {key}")
        if np.shape(bn[key]) != (out,):
            raise ValueError(f"{what}: batch norm {key} has shape {np.shape(bn[key])}, the convolution {out} outputs")
    gamma = np.asarray(bn.get("weight", np.ones(out)), np.float64)
    beta = np.asarray(bn.get("bias", np.zeros(out)), np.float64)
    scale = gamma / np.sqrt(np.asarray(bn["running_var"], np.float64) + eps)
    bias = np.zeros(out) if bias is None else np.asarray(bias, np.float64)
    weight = np.asarray(weight, np.float64) * scale.reshape((out,) + (1,) * (np.ndim(weight) - 1))
    bias = (bias - np.asarray(bn["running_mean"], np.float64)) * scale + beta
    return weight.astype(np.float32), bias.astype(np.float32)


def _layout_params(table, input_size: int, state: dict, layout, path: str) -> dict:
    """Reads each layer from the module `layout` names, folding its batch norm; every module of the
    file must be used or ignored."""
    modules = _modules(state, path, BATCH_NORM_LEAVES)
    expected = tables.param_shapes(table, input_size)
    ops = {layer.name: layer.op for layer in table}
    tensors, used = {}, set()
    for name, (prefix, bn) in layout.modules.items():
        for module in (prefix, bn):
            if module is not None and module not in modules:
                raise ValueError(f"{path}: no module {module!r} (layer {name}); the file's modules are "
                                 f"{', '.join(list(modules)[:12])}{', ...' if len(modules) > 12 else ''}")
        if "weight" not in modules[prefix]:
            raise ValueError(f"{path}: module {prefix!r} (layer {name}) has no weight")
        what = f"layer {name} (module {prefix!r}) weights in {path}"
        weight, bias = modules[prefix]["weight"], modules[prefix].get("bias")
        if bn is not None:
            weight, bias = fold_batch_norm(weight, bias, modules[bn], layout.bn_eps, f"{path}: layer {name} ({bn!r})")
        tensors[name] = {"w": common.oihw_weights(ops[name], weight, expected[name]["w"], what)}
        if bias is not None:
            tensors[name]["b"] = bias
        used.update((prefix, bn))
    unused = [m for m in modules if m not in used and not any(m == p or m.startswith(p + ".") for p in layout.ignored)]
    if unused:
        raise ValueError(f"{path}: modules {', '.join(unused[:8])}{', ...' if len(unused) > 8 else ''} "
                         "are not part of the architecture")
    return common.assemble(table, input_size, tensors, path)


def to_params(table, input_size: int, state: dict, path: str, arch: str | None = None) -> dict:
    """torchvision architectures (`arch` in `torchvision_tables`) by their layout; the others map
    modules to layers by name when every module is named after a layer, else in order."""
    if arch in torchvision_tables.architectures():
        return _layout_params(table, input_size, state, torchvision_tables.layout(arch), path)
    modules = _modules(state, path)
    mapping = common.match_layers(table, [(prefix, prefix) for prefix in modules], path, "parametric modules")
    expected = tables.param_shapes(table, input_size)
    ops = {layer.name: layer.op for layer in table}
    tensors = {}
    for name, prefix in mapping.items():
        module = modules[prefix]
        if "weight" not in module:
            raise ValueError(f"{path}: module {prefix!r} (layer {name}) has no weight")
        what = f"layer {name} (module {prefix!r}) weights in {path}"
        tensors[name] = {"w": common.oihw_weights(ops[name], module["weight"], expected[name]["w"], what)}
        if "bias" in module:
            tensors[name]["b"] = module["bias"]
    return common.assemble(table, input_size, tensors, path)
