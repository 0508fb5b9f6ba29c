"""A network with weights: layer table + parameters + input convention, saved as an orbax
checkpoint beside a small JSON of metadata.

The input convention says how an RGB image in [0, 255] becomes the network's input:
reorder channels ("RGB" or "BGR"), rescale to `pixel_range` (255 for Caffe/MatConvNet models,
1 for torchvision), subtract the mean (per channel, or a mean image stored as mean_image.npy),
divide by `std` per channel. Means and stds are in the network's channel order and range.
"""
from __future__ import annotations

import dataclasses
import os
from importlib import resources
from typing import Any, Sequence

import numpy as np
import orbax.checkpoint as ocp

from jaxinv import graph, outputs
from jaxinv.graph import Layer
from jaxinv.nets import tables

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

    def _mean_and_std(self, shape):
        std = np.asarray(self.convention["std"], np.float32)
        if self.mean_image is not None and tuple(self.mean_image.shape[:2]) == tuple(shape[-3:-1]):
            return self.mean_image.astype(np.float32), std
        # A mean image of another size than the input falls back to its per-channel average.
        if self.mean_image is not None:
            return self.mean_image.mean(axis=(0, 1)).astype(np.float32), std
        return np.asarray(self.convention["mean"], np.float32), std

    def preprocess(self, images):
        """RGB [0, 255] image (H, W, 3) or batch (N, H, W, 3) -> network input space."""
        x = np.asarray(images, np.float32)
        if self.convention["channel_order"] == "BGR":
            x = x[..., ::-1]
        x = x * (self.convention["pixel_range"] / 255.0)
        mean, std = self._mean_and_std(x.shape)
        return (x - mean) / std

    def deprocess(self, x):
        """Network input space -> RGB [0, 255] (not clipped)."""
        x = np.asarray(x, np.float32)
        mean, std = self._mean_and_std(x.shape)
        x = (x * std + mean) * (255.0 / self.convention["pixel_range"])
        return x[..., ::-1] if self.convention["channel_order"] == "BGR" else x


def save(directory: str, model: Model, extra_metadata: dict | None = None) -> None:
    """Writes DIR/params (orbax), DIR/metadata.json and, if any, DIR/mean_image.npy."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    params_dir = os.path.join(directory, PARAMS_DIR)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(params_dir, model.params, force=True)
    metadata = dict(model.metadata, arch=model.arch, input_size=model.input_size,
                    convention=model.convention, class_names=model.class_names, **(extra_metadata or {}))
    outputs.write_json(os.path.join(directory, METADATA_FILE), metadata)
    if model.mean_image is not None:
        np.save(os.path.join(directory, MEAN_IMAGE_FILE), model.mean_image.astype(np.float32))


def builtin_dir(name: str) -> str:
    return str(resources.files("jaxinv.nets") / "assets" / name)


def load(name_or_dir: str) -> Model:
    """Loads a converted or trained network from a directory, or a network shipped with jaxinv
    by name ("cifar-ref")."""
    directory = name_or_dir
    if not os.path.isdir(directory):
        if os.path.isdir(builtin_dir(name_or_dir)):
            directory = builtin_dir(name_or_dir)
        elif name_or_dir in tables.architectures():
            raise FileNotFoundError(
                f"no weights ship with jaxinv for {name_or_dir!r}; convert some with "
                f"`python -m weights_conversion.convert --arch={name_or_dir} ...` and load that directory")
        else:
            raise FileNotFoundError(f"network directory not found: {name_or_dir}")
    metadata_path = os.path.join(directory, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(f"{metadata_path} not found: not a jaxinv network directory")
    metadata = outputs.read_json(metadata_path)
    with ocp.StandardCheckpointer() as checkpointer:
        params = checkpointer.restore(os.path.join(os.path.abspath(directory), PARAMS_DIR))
    mean_path = os.path.join(directory, MEAN_IMAGE_FILE)
    mean_image = np.load(mean_path) if os.path.isfile(mean_path) else None
    return Model(arch=metadata["arch"], table=tables.build(metadata["arch"]), params=params,
                 input_size=metadata["input_size"], convention=metadata["convention"],
                 class_names=metadata.get("class_names"), mean_image=mean_image, metadata=metadata)
