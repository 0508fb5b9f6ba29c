"""Caffe .caffemodel (binary protobuf NetParameter) and deploy.prototxt (protobuf text format),
read without Caffe or protobuf: a protobuf wire-format reader that knows the few caffe.proto
fields needed, and a minimal text-format parser.

caffe.proto field numbers used: NetParameter.layer = 100 (LayerParameter: name = 1, type = 2
(string), blobs = 7) and the deprecated NetParameter.layers = 2 (V1LayerParameter: name = 4,
type = 5 (enum), blobs = 6); BlobProto: num, channels, height, width = 1..4 (legacy 4-D shape),
data = 5 (packed float), double_data = 8, shape = 7 (BlobShape: dim = 1, packed int64).
Blobs are (out, in / groups, kh, kw) for convolutions and (out, in) (or legacy (1, 1, out, in))
for inner products, inputs flattened in (c, h, w) order.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from jaxinv.io import paths
from jaxinv.nets import layers as L
from jaxinv.nets import tables
from jaxinv.conversion import common

V1_LAYER_TYPES = {4: "Convolution", 14: "InnerProduct", 15: "LRN", 17: "Pooling", 18: "ReLU",
                  20: "Softmax", 6: "Dropout", 5: "Data"}
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


@dataclasses.dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list[np.ndarray]


class TruncatedError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise TruncatedError("varint runs past the end")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("malformed varint")


def fields(data: bytes):
    """Yields (field number, wire type, value) of a protobuf message: ints for varints, bytes
    for length-delimited and fixed-width fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = _varint(data, pos)
        elif wire_type == LENGTH_DELIMITED:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise TruncatedError(f"field {number} claims {length} bytes, {len(data) - pos} remain")
            value, pos = data[pos:pos + length], pos + length
        elif wire_type in (FIXED32, FIXED64):
            size = 4 if wire_type == FIXED32 else 8
            if pos + size > len(data):
                raise TruncatedError(f"field {number} runs past the end")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} (field {number})")
        yield number, wire_type, value


def _packed_varints(value, wire_type) -> list[int]:
    if wire_type == VARINT:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def _blob(data: bytes) -> np.ndarray:
    floats, legacy_shape, shape = [], {}, None
    for number, wire_type, value in fields(data):
        if number == 5:  # data: packed (length-delimited) or one fixed32 per element
            floats.append(np.frombuffer(value, "<f4"))
        elif number == 8:  # double_data
            floats.append(np.frombuffer(value, "<f8").astype(np.float32))
        elif number == 7:
            shape = [d for n, t, v in fields(value) if n == 1 for d in _packed_varints(v, t)]
        elif number in (1, 2, 3, 4) and wire_type == VARINT:
            legacy_shape[number] = value
    array = np.concatenate(floats) if floats else np.zeros(0, np.float32)
    if shape is None:
        shape = [legacy_shape.get(i, 1) for i in (1, 2, 3, 4)] if legacy_shape else [array.size]
    if int(np.prod(shape)) != array.size:
        raise ValueError(f"blob of shape {shape} holds {array.size} values")
    return array.astype(np.float32).reshape(shape)


def read_caffemodel(path: str) -> list[CaffeLayer]:
    paths.input_file(path, "Caffe model file")  # missing: FileNotFoundError; a pipe or folder: ValueError
    with open(path, "rb") as f:
        data = f.read()
    try:
        layers = []
        for number, wire_type, value in fields(data):
            if number == 100 and wire_type == LENGTH_DELIMITED:
                layers.append(_layer(value, name_field=1, type_field=2, blobs_field=7))
            elif number == 2 and wire_type == LENGTH_DELIMITED:
                layers.append(_layer(value, name_field=4, type_field=5, blobs_field=6))
    except TruncatedError as e:
        raise ValueError(f"{path} is truncated or corrupt: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a valid .caffemodel: {e}") from None
    if not layers:
        raise ValueError(f"{path} holds no Caffe layers: not a .caffemodel")
    return layers


def _layer(data: bytes, name_field: int, type_field: int, blobs_field: int) -> CaffeLayer:
    name, layer_type, blobs = "", "", []
    for number, wire_type, value in fields(data):
        if number == name_field and wire_type == LENGTH_DELIMITED:
            name = value.decode()
        elif number == type_field:
            layer_type = value.decode() if wire_type == LENGTH_DELIMITED else V1_LAYER_TYPES.get(value, f"V1 type {value}")
        elif number == blobs_field and wire_type == LENGTH_DELIMITED:
            blobs.append(_blob(value))
    return CaffeLayer(name, layer_type, blobs)


_COMMENT = re.compile(r"#[^\n]*")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}:]|[^\s{}:"\']+')


def parse_prototxt(text: str) -> dict:
    """Protobuf text format -> {field: [values]}, messages as nested dicts, scalars as str/float."""
    tokens = _TOKEN.findall(_COMMENT.sub("", text))

    def message(i, closing):
        out = {}
        while i < len(tokens) and tokens[i] != "}":
            key = tokens[i]
            i += 1
            if i < len(tokens) and tokens[i] == ":":
                i += 1
            if i >= len(tokens):
                raise ValueError(f"prototxt ends after field {key!r}")
            if tokens[i] == "{":
                value, i = message(i + 1, True)
            else:
                value, i = _scalar(tokens[i]), i + 1
            out.setdefault(key, []).append(value)
        if closing:
            if i >= len(tokens):
                raise ValueError("prototxt has an unclosed '{'")
            i += 1
        elif i < len(tokens):
            raise ValueError("prototxt has an unmatched '}'")
        return out, i

    return message(0, False)[0]


def _scalar(token: str):
    if token[0] in "\"'":
        return token[1:-1]
    try:
        return float(token)
    except ValueError:
        return token  # enum names (MAX, TRAIN) and booleans


def read_prototxt(path: str) -> list[dict]:
    """The layers of a deploy.prototxt: [{"name", "type", params...}], V1 enum types as names."""
    paths.input_file(path, "Caffe prototxt")  # missing: FileNotFoundError; a pipe or folder: ValueError
    with open(path) as f:
        net = parse_prototxt(f.read())
    layers = net.get("layer", []) + net.get("layers", [])
    out = []
    for layer in layers:
        layer_type = layer.get("type", [""])[0]
        v1_names = {"CONVOLUTION": "Convolution", "INNER_PRODUCT": "InnerProduct", "POOLING": "Pooling",
                    "RELU": "ReLU", "SOFTMAX": "Softmax", "DROPOUT": "Dropout"}
        out.append(dict(layer, name=layer.get("name", [""])[0], type=v1_names.get(layer_type, layer_type)))
    return out


def to_params(table, input_size: int, model_layers: list[CaffeLayer], prototxt_layers, path: str) -> dict:
    weighted = [(layer.name, layer) for layer in model_layers if layer.blobs]
    by_name = common.match_layers(table, weighted, path, "layers with blobs")
    if prototxt_layers is not None:
        check_prototxt(table, prototxt_layers)
    expected = tables.param_shapes(table, input_size)
    ops = {layer.name: layer.op for layer in table}
    tensors = {}
    for name, layer in by_name.items():
        if len(layer.blobs) != 2:
            raise ValueError(f"{path}: layer {name} has {len(layer.blobs)} blobs; expected weights and biases")
        weights, biases = layer.blobs
        what = f"layer {name} weights in {path}"
        tensors[name] = {"w": common.oihw_weights(ops[name], weights, expected[name]["w"], what), "b": biases}
    return common.assemble(table, input_size, tensors, path)


def _param(layer: dict, message: str, field: str, default):
    values = layer.get(message, [{}])[0].get(field, [default])
    return values[0]


def check_prototxt(table, prototxt_layers: list[dict]) -> None:
    """Raises ValueError where the prototxt's hyper-parameters disagree with the table."""
    by_name = {layer["name"]: layer for layer in prototxt_layers}
    for layer in table:
        proto = by_name.get(layer.name)
        if proto is None:
            continue
        h = layer.hyper
        if layer.op is L.conv:
            found = dict(out_channels=_param(proto, "convolution_param", "num_output", None),
                         kernel=_param(proto, "convolution_param", "kernel_size", None),
                         stride=_param(proto, "convolution_param", "stride", 1),
                         pad=_param(proto, "convolution_param", "pad", 0),
                         groups=_param(proto, "convolution_param", "group", 1))
            expected = dict(out_channels=h["out_channels"], kernel=h["kernel"], stride=h["stride"],
                            pad=h["pad"][0], groups=h["groups"])
        elif layer.op is L.maxpool:
            found = dict(kernel=_param(proto, "pooling_param", "kernel_size", None),
                         stride=_param(proto, "pooling_param", "stride", 1),
                         method=_param(proto, "pooling_param", "pool", "MAX"))
            expected = dict(kernel=h["kernel"], stride=h["stride"], method="MAX")
        elif layer.op is L.lrn:
            found = dict(size=_param(proto, "lrn_param", "local_size", 5), alpha=_param(proto, "lrn_param", "alpha", 1.0),
                         beta=_param(proto, "lrn_param", "beta", 0.75), k=_param(proto, "lrn_param", "k", 1.0))
            expected = {key: h[key] for key in found}
        elif layer.op is L.fc:
            found = dict(units=_param(proto, "inner_product_param", "num_output", None))
            expected = dict(units=h["units"])
        else:
            continue
        mismatched = {key: (expected[key], found[key]) for key in found
                      if not (found[key] == expected[key] or (isinstance(found[key], float) and isinstance(
                          expected[key], (int, float)) and np.isclose(found[key], expected[key], rtol=1e-5)))}
        if mismatched:
            detail = ", ".join(f"{key}: expected {e}, found {f}" for key, (e, f) in mismatched.items())
            raise ValueError(f"prototxt layer {layer.name} disagrees with the architecture: {detail}")
