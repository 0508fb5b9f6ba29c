"""MatConvNet simplenn .mat files, MAT v5 (scipy.io) and v7.3 (HDF5, h5py).

A simplenn network is a struct with `layers` (a cell array of structs with `type`, `name`,
`weights` = {filters HxWxINxOUT, biases} or, in old files, `filters` / `biases`, `stride`, `pad`
[top bottom left right], `method`, `param`) and normalisation metadata (`meta.normalization` or,
in old files, `normalization`: averageImage, imageSize) and class descriptions
(`meta.classes.description` or `classes.description`). Filters already have jaxinv's layout.
MatConvNet's LRN `param` is [N kappa alpha beta] with alpha NOT divided by N, unlike Caffe's.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from jaxinv.io import paths
from jaxinv.nets import layers as L
from jaxinv.conversion import common


@dataclasses.dataclass
class MatNet:
    layers: list[dict]  # {"name", "type", "weights": [arrays], "stride", "pad", "param"}
    mean_image: np.ndarray | None  # (H, W, 3) RGB, or None when only a per-channel mean is given
    mean_rgb: np.ndarray | None
    class_names: list[str] | None


def read(path: str) -> MatNet:
    paths.input_file(path, "MatConvNet file")  # missing: FileNotFoundError; a pipe or folder: ValueError
    with open(path, "rb") as f:
        header = f.read(128)
    if len(header) < 128:
        raise ValueError(f"{path} is truncated: not a MAT file")
    if b"MATLAB 7.3" in header[:116] or header.startswith(b"\x89HDF"):
        return _read_v73(path)
    import scipy.io
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except Exception as e:  # scipy raises ValueError/TypeError/OSError variants on corrupt files
        raise ValueError(f"cannot read MAT file {path}: {e}") from None
    if "layers" not in mat:
        raise ValueError(f"{path} is not a MatConvNet simplenn network (no 'layers'; DagNN files are not supported)")
    layers = [_v5_layer(layer) for layer in np.atleast_1d(mat["layers"])]
    meta = mat.get("meta")
    normalization = _v5_field(meta, "normalization") if meta is not None else mat.get("normalization")
    classes = _v5_field(meta, "classes") if meta is not None else mat.get("classes")
    average = _v5_field(normalization, "averageImage")
    descriptions = _v5_field(classes, "description")
    names = None if descriptions is None else [str(d) for d in np.atleast_1d(descriptions)]
    return MatNet(layers, *_mean(average), names)


def _v5_field(struct, name):
    return getattr(struct, name, None) if struct is not None else None


def _v5_layer(layer) -> dict:
    weights = _v5_field(layer, "weights")
    if weights is None:  # old simplenn: separate filters / biases fields
        weights = [w for w in (_v5_field(layer, "filters"), _v5_field(layer, "biases")) if w is not None]
    # squeeze_me turns a cell {W, b} into an object array, and a one-element cell into W itself.
    cells = list(weights) if isinstance(weights, np.ndarray) and weights.dtype == object else [weights]
    return dict(name=str(_v5_field(layer, "name") or ""), type=str(_v5_field(layer, "type") or ""),
                weights=[np.asarray(w) for w in cells if w is not None and np.asarray(w).size],
                stride=_v5_field(layer, "stride"), param=_v5_field(layer, "param"))


def _read_v73(path: str) -> MatNet:
    try:
        import h5py
    except ImportError:
        raise ImportError("reading MAT v7.3 files needs h5py: pip install h5py") from None
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"cannot read MAT v7.3 (HDF5) file {path}: {e}") from None
    with f:
        root = f["net"] if "net" in f and "layers" not in f else f
        if "layers" not in root:
            raise ValueError(f"{path} is not a MatConvNet simplenn network (no 'layers')")
        layers = [_h5_layer(f, f[ref]) for ref in np.asarray(root["layers"]).ravel()]
        meta = root["meta"] if "meta" in root else root
        average = names = None
        if "normalization" in meta and "averageImage" in meta["normalization"]:
            average = _h5_array(meta["normalization"]["averageImage"])
        if "classes" in meta and "description" in meta["classes"]:
            names = [_h5_string(f[ref]) for ref in np.asarray(meta["classes"]["description"]).ravel()]
    return MatNet(layers, *_mean(average), names)


def _h5_array(dataset) -> np.ndarray:
    # HDF5 stores MATLAB's column-major arrays with their axes reversed.
    return np.transpose(np.asarray(dataset))


def _h5_string(dataset) -> str:
    return "".join(chr(c) for c in np.asarray(dataset).ravel(order="F"))


def _h5_layer(f, group) -> dict:
    def field(name):
        return group[name] if name in group else None

    weights = []
    if field("weights") is not None:
        weights = [_h5_array(f[ref]) for ref in np.asarray(field("weights")).ravel()]
    else:
        weights = [_h5_array(field(name)) for name in ("filters", "biases") if field(name) is not None]
    return dict(name=_h5_string(field("name")) if field("name") is not None else "",
                type=_h5_string(field("type")) if field("type") is not None else "",
                weights=[w for w in weights if w.size],
                stride=None if field("stride") is None else _h5_array(field("stride")),
                param=None if field("param") is None else _h5_array(field("param")))


def _mean(average):
    """(mean image, per-channel mean) from averageImage, which is HxWx3 or 1x1x3."""
    if average is None:
        return None, None
    average = np.asarray(average, np.float32)
    if average.size == 3:
        return None, average.reshape(3)
    if average.ndim != 3 or average.shape[-1] != 3:
        raise ValueError(f"averageImage has shape {average.shape}; expected HxWx3 or 1x1x3")
    return average, average.reshape(-1, 3).mean(0)


def to_params(table, input_size: int, net: MatNet, path: str) -> dict:
    """Takes the weights of layers named after the table's parametric layers (or, if the file's
    layer names differ, its weighted layers in order), checking strides and LRN parameters."""
    weighted = [(layer["name"], layer) for layer in net.layers if layer["weights"]]
    by_name = common.match_layers(table, weighted, path, "layers with weights")
    _check_hyper_parameters(table, net, by_name, path)
    tensors = {}
    for name, layer in by_name.items():
        if len(layer["weights"]) != 2:
            raise ValueError(f"{path}: layer {name} has {len(layer['weights'])} weight arrays; expected filters and biases")
        tensors[name] = {"w": layer["weights"][0], "b": layer["weights"][1]}
    return common.assemble(table, input_size, tensors, path)


def _check_hyper_parameters(table, net: MatNet, by_name: dict, path: str) -> None:
    by_table_name = {layer.name: layer for layer in table}
    for name, layer in by_name.items():
        stride = layer["stride"]
        expected = by_table_name[name].hyper.get("stride", 1)
        if by_table_name[name].op is L.conv and stride is not None and set(np.ravel(stride).tolist()) != {expected}:
            raise ValueError(f"{path}: layer {name} has stride {np.ravel(stride).tolist()}; the architecture expects {expected}")
    for layer in net.layers:
        if layer["type"] in ("normalize", "lrn") and layer["name"] in by_table_name and layer["param"] is not None:
            n, kappa, alpha, beta = np.ravel(layer["param"]).tolist()
            hyper = by_table_name[layer["name"]].hyper
            found = dict(size=int(n), k=kappa, alpha=alpha * n, beta=beta)  # Caffe's alpha = MatConvNet's * N
            if any(not np.isclose(found[key], hyper[key], rtol=1e-4) for key in found):
                raise ValueError(f"{path}: LRN layer {layer['name']} has [N kappa alpha beta] = "
                                 f"{[n, kappa, alpha, beta]}; the architecture expects "
                                 f"{[hyper['size'], hyper['k'], hyper['alpha'] / hyper['size'], hyper['beta']]}")
