"""Checks shared by every reader: assemble {layer: {"w", "b"}} in jaxinv's layout against the
shapes the layer table expects, failing with errors that name the tensors involved."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from jaxinv.nets import tables
from jaxinv.nets import layers as L


def parametric_layers(table) -> list[str]:
    return [layer.name for layer in table if layer.op in L.PARAMETRIC_OPS]


def match_layers(table, named_items: Sequence[tuple[str, Any]], source: str, kind: str) -> dict:
    """{table layer: item} for a file's weighted layers, given as (name in the file, item) in file
    order: by name when every name is one of the table's parametric layers, else in order."""
    names = parametric_layers(table)
    file_names = [name for name, _ in named_items]
    if set(file_names) <= set(names):
        return dict(named_items)
    if len(named_items) != len(names):
        raise ValueError(f"{source} has {len(named_items)} {kind} ({', '.join(file_names)}) "
                         f"but the architecture has {len(names)} ({', '.join(names)})")
    return {name: item for name, (_, item) in zip(names, named_items)}


def oihw_weights(op, weight, expected_shape, what: str) -> np.ndarray:
    """A PyTorch/Caffe weight blob -> jaxinv layout: conv (out, in, kh, kw) -> (kh, kw, in, out),
    fc (units, c*h*w) -> (h, w, c, units)."""
    if op is L.conv:
        if np.ndim(weight) != 4:
            raise ValueError(f"shape mismatch for {what}: expected a 4-D convolution blob, found {np.shape(weight)}")
        return torch_conv_to_hwio(weight)
    return torch_fc_to_hwcu(weight, expected_shape, what)


def fit(array, expected_shape, what: str) -> np.ndarray:
    """`array` as float32 of `expected_shape`, allowing only dropped or added singleton axes
    (MATLAB drops trailing ones; fc biases come as 1xN or Nx1)."""
    array = np.asarray(array, np.float32)
    expected_shape = tuple(expected_shape)
    if array.shape == expected_shape:
        return array
    squeeze = lambda shape: tuple(d for d in shape if d != 1)
    if squeeze(array.shape) == squeeze(expected_shape):
        return array.reshape(expected_shape)
    raise ValueError(f"shape mismatch for {what}: expected {expected_shape}, found {array.shape}")


def torch_conv_to_hwio(weight) -> np.ndarray:
    """(out, in, kh, kw) (PyTorch and Caffe) -> (kh, kw, in, out)."""
    return np.transpose(np.asarray(weight, np.float32), (2, 3, 1, 0))


def torch_fc_to_hwcu(weight, expected_shape, what: str) -> np.ndarray:
    """(units, c*h*w) flattened in (c, h, w) order (PyTorch and Caffe) -> (h, w, c, units)."""
    weight = np.asarray(weight, np.float32)
    h, w, c, units = expected_shape
    if weight.ndim != 2 and weight.size == h * w * c * units:
        weight = weight.reshape(units, -1)  # Caffe's old 4-D blobs (1, 1, units, inputs)
    if weight.shape != (units, c * h * w):
        raise ValueError(f"shape mismatch for {what}: expected {(units, c * h * w)} "
                         f"(units, channels*height*width), found {weight.shape}")
    return np.transpose(weight.reshape(units, c, h, w), (2, 3, 1, 0))


def assemble(table, input_size: int, tensors: Mapping[str, Mapping[str, np.ndarray]], source: str) -> dict:
    """Checks that `tensors` ({layer: {"w", "b"}}, already in jaxinv layout) has exactly the
    table's parametric layers with the expected shapes; returns them as float32 params."""
    expected = tables.param_shapes(table, input_size)
    missing = [name for name in expected if name not in tensors]
    extra = [name for name in tensors if name not in expected]
    if missing or extra:
        raise ValueError(f"{source} does not match the architecture: "
                         f"missing layers {missing or 'none'}, unexpected layers {extra or 'none'}")
    params = {}
    for name, shapes in expected.items():
        params[name] = {}
        for key, shape in shapes.items():
            if key not in tensors[name]:
                raise ValueError(f"{source}: layer {name} has no {'weights' if key == 'w' else 'biases'}")
            params[name][key] = fit(tensors[name][key], shape, f"layer {name} {'weights' if key == 'w' else 'biases'} in {source}")
    return params

