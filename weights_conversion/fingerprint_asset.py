"""Records the fingerprints of a saved network's parameters (and mean image) in its metadata.json without
rewriting the parameters (used once for the shipped cifar-ref, saved before fingerprints were recorded):

    python -m weights_conversion.fingerprint_asset jaxinv/nets/assets/cifar-ref

Refuses a network with non-finite parameters or that already records different fingerprints."""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from jaxinv.io import checkpoints, outputs
from jaxinv.nets import model


def add_fingerprints(directory: str) -> dict:
    metadata_path = os.path.join(directory, model.METADATA_FILE)
    metadata = outputs.read_json(metadata_path)
    params_dir = os.path.join(os.path.abspath(directory), model.PARAMS_DIR)
    params = checkpoints.read_tree(params_dir)
    mean_path = os.path.join(directory, model.MEAN_IMAGE_FILE)
    mean_image = model.read_mean_image(mean_path) if os.path.isfile(mean_path) else None
    checkpoints.check_weights(params, params_dir, {}, "params", metadata_path)  # finiteness
    if mean_image is not None:
        checkpoints.check_weights(mean_image, mean_path, {}, "mean_image", metadata_path)
    found = checkpoints.fingerprints(params=params, mean_image=None if mean_image is None else np.asarray(mean_image))
    if metadata.get("fingerprints") not in (None, found):
        raise ValueError(f"{metadata_path} records other fingerprints {metadata['fingerprints']} than its files {found}")
    metadata["fingerprints"] = found

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(metadata, f, indent=1)
    outputs.atomic_write(metadata_path, write, ".json")
    model.load(directory)  # verifies
    return found


if __name__ == "__main__":
    for directory in sys.argv[1:]:
        print(directory, add_fingerprints(directory))
