"""PyTorch state_dicts: torchvision's AlexNet/VGG-16 layouts (features.N / classifier.N) and the
Caffe-style architectures written as nn.Sequential, with numbered or layer-named modules."""
from __future__ import annotations

import re

from jaxinv.io import paths
from jaxinv.nets import tables
from jaxinv.conversion import common


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


def _modules(state: dict, path: str) -> dict:
    """{module prefix: {"weight", "bias"}} in file order, dropping a DataParallel "module." prefix."""
    modules = {}
    for key, value in state.items():
        prefix, _, leaf = re.sub(r"^module\.", "", key).rpartition(".")
        if leaf not in ("weight", "bias"):
            raise ValueError(f"{path}: unexpected tensor {key!r} (only conv/linear weights and biases are expected)")
        modules.setdefault(prefix, {})[leaf] = value
    return modules


def to_params(table, input_size: int, state: dict, path: str) -> dict:
    """Maps modules to layers by name when every module is named after a layer, else in order."""
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
