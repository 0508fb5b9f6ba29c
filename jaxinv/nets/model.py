"""A network with weights: layer table + parameters + input convention, saved as an orbax
checkpoint beside a small JSON of metadata.

The input convention (how an RGB image in [0, 255] becomes the network's input) is
`jaxinv.nets.convention`.
"""
from __future__ import annotations

import dataclasses
import os
from importlib import resources
from typing import Any, Sequence

import numpy as np

from jaxinv.engine import graph
from jaxinv.io import checkpoints, outputs
from jaxinv.engine.graph import Layer
from jaxinv.nets import convention, tables

METADATA_FILE = "metadata.json"
PARAMS_DIR = "params"
MEAN_IMAGE_FILE = "mean_image.npy"

# Conventions of the sources the models come from (means of ILSVRC-2012 training images).
CAFFE_CONVENTION = dict(channel_order="BGR", pixel_range=255.0, mean=[103.939, 116.779, 123.68], std=[1.0, 1.0, 1.0])
MATCONVNET_CONVENTION = dict(channel_order="RGB", pixel_range=255.0, mean=[123.68, 116.779, 103.939], std=[1.0, 1.0, 1.0])
TORCHVISION_CONVENTION = dict(channel_order="RGB", pixel_range=1.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@dataclasses.dataclass
class Model:
    arch: str
    table: Sequence[Layer]
    params: Any
    input_size: int
    convention: dict
    class_names: list[str] | None = None
    mean_image: np.ndarray | None = None  # (H, W, C) in the network's channel order and range
    metadata: dict = dataclasses.field(default_factory=dict)

    def apply(self, params, x, upto: str | None = None) -> dict:
        """{layer: output} for a batch (N, H, W, C) already in the network's input space."""
        return graph.run(self.table, params, x, upto)

    @property
    def layer_names(self) -> list[str]:
        return graph.layer_names(self.table)

    @property
    def receptive_fields(self) -> dict:
        return tables.receptive_fields(self.table, self.input_size)

    def preprocess(self, images):
        """RGB [0, 255] image (H, W, 3) or batch (N, H, W, 3) -> network input space (numpy)."""
        x = np.asarray(images, np.float32)
        p = convention.input_params(self.convention, self.mean_image, x.shape)
        return convention.to_network(x, self.convention["channel_order"], self.convention["pixel_range"],
                                     p["mean"], p["std"])

    def deprocess(self, x):
        """Network input space -> RGB [0, 255] (not clipped)."""
        x = np.asarray(x, np.float32)
        p = convention.input_params(self.convention, self.mean_image, x.shape)
        return convention.from_network(x, self.convention["channel_order"], self.convention["pixel_range"],
                                       p["mean"], p["std"])


# What a saved network consists of; anything else in its folder (a training run's checkpoints...) is left alone.
SAVED_ENTRIES = (PARAMS_DIR, METADATA_FILE, MEAN_IMAGE_FILE)


def save(directory: str, model: Model, extra_metadata: dict | None = None) -> None:
    """Writes DIR/params (orbax), DIR/metadata.json and, if any, DIR/mean_image.npy.

    An existing network in DIR is replaced atomically (outputs.replace_directory): a process killed at any moment
    leaves the old or the new network loadable. The metadata records fingerprints (checkpoints.weights_fingerprint) of
    the parameters and mean image, which `load` verifies."""
    mean_image = None if model.mean_image is None else np.asarray(model.mean_image, np.float32)
    metadata = dict(model.metadata, arch=model.arch, input_size=model.input_size,
                    convention=model.convention, class_names=model.class_names, **(extra_metadata or {}))
    metadata["fingerprints"] = checkpoints.fingerprints(params=model.params, mean_image=mean_image)

    def write(folder):
        checkpoints.write_tree(os.path.join(folder, PARAMS_DIR), model.params)
        outputs.write_json(os.path.join(folder, METADATA_FILE), metadata)
        if mean_image is not None:
            np.save(os.path.join(folder, MEAN_IMAGE_FILE), mean_image)

    outputs.replace_directory(directory, write, SAVED_ENTRIES)


def builtin_dir(name: str) -> str:
    return str(resources.files("jaxinv.nets") / "assets" / name)


def _check_convention(value):
    if not isinstance(value, dict):
        return f"should be a dict, got {value!r}"
    if value.get("channel_order") not in ("RGB", "BGR"):
        return f"channel_order should be 'RGB' or 'BGR', got {value.get('channel_order')!r}"
    pixel_range = value.get("pixel_range")
    if not isinstance(pixel_range, (int, float)) or isinstance(pixel_range, bool) or not pixel_range > 0:
        return f"pixel_range should be a positive number, got {pixel_range!r}"
    for name in ("mean", "std"):
        problem = checkpoints.number_list(3)(value.get(name))
        if problem:
            return f"{name} {problem}"
    if not all(v != 0 for v in value["std"]):
        return f"std should be nonzero, got {value['std']!r}"
    return None


def _check_arch(value):
    if not isinstance(value, str):
        return f"should be a str, got {value!r}"
    if value not in tables.architectures():
        return f"names an unknown architecture {value!r}; valid: {', '.join(tables.architectures())}"
    return None


def _check_class_names(value):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"should be a list of names, got {value!r}"
    return None


METADATA_FIELDS = dict(arch=_check_arch, input_size=int, convention=_check_convention,
                       class_names=checkpoints.optional(_check_class_names), fingerprints=checkpoints.optional(dict))


def read_mean_image(path: str) -> np.ndarray:
    try:
        mean_image = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path} is corrupt: not a NumPy array file ({type(e).__name__}: {str(e)[:200]})") from e
    if mean_image.ndim != 3 or not np.issubdtype(mean_image.dtype, np.floating):
        raise ValueError(f"{path}: a mean image should be a float (H, W, C) array, got {mean_image.dtype} "
                         f"{mean_image.shape}")
    return mean_image


def load(name_or_dir: str) -> Model:
    """Loads a converted or trained network from a directory, or a network shipped with jaxinv
    by name ("cifar-ref").

    Verifies what it reads: the metadata's keys and types, that every parameter is finite, and the fingerprints
    of the parameters and mean image recorded at saving (networks saved before they were recorded are not
    checked against any); a problem raises ValueError naming the file. A replacement of the folder that a killed
    process left unfinished is completed first (outputs.recover_directory)."""
    directory = name_or_dir
    outputs.recover_directory(directory, SAVED_ENTRIES)
    if not os.path.isdir(directory):
        if os.path.isdir(builtin_dir(name_or_dir)):
            directory = builtin_dir(name_or_dir)
        elif name_or_dir in tables.architectures():
            raise FileNotFoundError(
                f"no weights ship with jaxinv for {name_or_dir!r}; convert some with "
                f"`jaxinv-convert --arch={name_or_dir} ...` and load that directory")
        else:
            raise FileNotFoundError(f"network directory not found: {name_or_dir}")
    metadata_path = os.path.join(directory, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(f"{metadata_path} not found: not a jaxinv network directory")
    metadata = outputs.read_json(metadata_path)
    checkpoints.check_fields(metadata, metadata_path, METADATA_FIELDS)
    params_dir = os.path.join(os.path.abspath(directory), PARAMS_DIR)
    params = checkpoints.read_tree(params_dir)
    checkpoints.check_weights(params, params_dir, metadata, "params", metadata_path)
    mean_path = os.path.join(directory, MEAN_IMAGE_FILE)
    mean_image = read_mean_image(mean_path) if os.path.isfile(mean_path) else None
    if mean_image is not None:
        checkpoints.check_weights(mean_image, mean_path, metadata, "mean_image", metadata_path)
    return Model(arch=metadata["arch"], table=tables.build(metadata["arch"]), params=params,
                 input_size=metadata["input_size"], convention=metadata["convention"],
                 class_names=metadata.get("class_names"), mean_image=mean_image, metadata=metadata)
