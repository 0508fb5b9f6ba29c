"""CIFAR-10 from the shared JPEG tarball, decoded once into a cache outside the repository."""
from __future__ import annotations

import io
import os
import tarfile

import numpy as np
from PIL import Image

from jaxinv.io import cache, images, outputs, paths

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tarball_path(data_dir: str | None = None) -> str:
    return os.path.join(data_dir or images.shared_data_dir(), "cifar10", "cifar10_jpeg.tar.gz")


def cache_path() -> str:
    """The decoded set: <cache root>/cifar10.npz (`jaxinv.io.cache.cache_root`)."""
    return os.path.join(cache.cache_root(), "cifar10.npz")


def load(data_dir: str | None = None) -> dict:
    """{"train_images", "train_labels", "test_images", "test_labels"}: uint8 (N, 32, 32, 3) RGB
    and int32 labels indexing CLASS_NAMES, in sorted file order."""
    decoded = cache_path()
    if not os.path.isfile(decoded):
        source = tarball_path(data_dir)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"CIFAR-10 tarball not found: {source} (set --data_dir or $JAXINV_DATA)")
        # One writer (a second process waits for it, then reads its file); atomic: readers never see half a file.
        with paths.lock_file(decoded, wait=paths.CACHE_WAIT):
            if not os.path.isfile(decoded):
                arrays = _decode(source)
                outputs.atomic_write(decoded, lambda tmp: np.savez(tmp, **arrays), ".npz")
    with np.load(decoded) as data:
        return {key: data[key] for key in data.files}


def _decode(source: str) -> dict:
    found = {"train": [], "test": []}
    with tarfile.open(source) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[-3] not in found or parts[-2] not in CLASS_NAMES:
                continue
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                found[parts[-3]].append((member.name, np.asarray(im.convert("RGB")), CLASS_NAMES.index(parts[-2])))
    arrays = {}
    for split, items in found.items():
        if not items:
            raise ValueError(f"no {split} images in {source}")
        items.sort(key=lambda item: item[0])
        arrays[f"{split}_images"] = np.stack([item[1] for item in items]).astype(np.uint8)
        arrays[f"{split}_labels"] = np.asarray([item[2] for item in items], np.int32)
    return arrays


def accuracy(model, images_uint8: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy of a CIFAR-10 classifier `model` (a jaxinv.nets.Model) on RGB uint8 images."""
    import jax  # deferred: the data loader itself needs no accelerator library

    logits_of = jax.jit(lambda params, x: model.apply(params, x, upto="fc8")["fc8"])
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = model.preprocess(images_uint8[start:start + batch_size])
        correct += int((np.asarray(logits_of(model.params, x)).argmax(-1) == labels[start:start + batch_size]).sum())
    return correct / len(labels)
