"""CIFAR-10 from the data folder (`jaxinv.io.images.data_root`): DATA/cifar10/ holds the standard python archive
cifar-10-python.tar.gz, its extracted folder cifar-10-batches-py/, or the JPEG tarball cifar10_jpeg.tar.gz (the
first found, in that order). Every source gives the same arrays: uint8 NHWC RGB images and labels, each split
sorted by class (within a class in the source's order), so "N evenly spaced images" are the same images. The
python format is read directly; the JPEG tarball is decoded once, with a progress bar, into a cache outside
the repository."""
from __future__ import annotations

import io
import os
import pickle
import sys
import tarfile

import numpy as np
from PIL import Image

from jaxinv.io import cache, images, outputs, paths

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PYTHON_ARCHIVE, PYTHON_FOLDER, JPEG_TARBALL = "cifar-10-python.tar.gz", "cifar-10-batches-py", "cifar10_jpeg.tar.gz"
SOURCES = (PYTHON_FOLDER, PYTHON_ARCHIVE, JPEG_TARBALL)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def source_path(data_dir: str | None = None) -> str:
    """The CIFAR-10 source in <data folder>/cifar10/ (the first of `SOURCES` there), or a FileNotFoundError naming
    the folder, where the data folder came from and the layout expected."""
    folder = os.path.join(images.data_root(data_dir), "cifar10")
    for name in SOURCES:
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise images.missing_data("CIFAR-10", os.path.join(folder, "{" + ",".join(SOURCES) + "}"), data_dir)


def cache_path() -> str:
    """The decoded JPEG tarball: <cache root>/cifar10.npz (`jaxinv.io.cache.cache_root`)."""
    return os.path.join(cache.cache_root(), "cifar10.npz")


def load(data_dir: str | None = None) -> dict:
    """{"train_images", "train_labels", "test_images", "test_labels"}: uint8 (N, 32, 32, 3) RGB and int32 labels
    indexing CLASS_NAMES, sorted by class, from `source_path(data_dir)`."""
    source = source_path(data_dir)
    if not source.endswith(JPEG_TARBALL):
        return read_python(source)
    decoded, stamp = cache_path(), _stamp(source)
    cached = _cached(decoded, stamp)
    if cached is not None:
        return cached
    # One writer (a second process waits for it, then reads its file); atomic: readers never see half a file.
    with paths.lock_file(decoded, wait=paths.CACHE_WAIT):
        cached = _cached(decoded, stamp)
        if cached is not None:
            return cached
        print(f"decoding CIFAR-10 from {source} once, into {decoded}", file=sys.stderr, flush=True)
        arrays = _decode(source)
        outputs.atomic_write(decoded, lambda tmp: np.savez(tmp, source=np.asarray(stamp), **arrays), ".npz")
    return arrays


def _cached(decoded: str, stamp: str) -> dict | None:
    """The decoded set in the cache, if it was decoded from the file `stamp` names."""
    if os.path.isfile(decoded):
        with np.load(decoded) as data:
            if "source" not in data.files or str(data["source"]) == stamp:  # (caches before stamps: the shared one)
                return {key: data[key] for key in data.files if key != "source"}
    return None


def _stamp(source: str) -> str:
    """Which file a cache was decoded from: its real path and size."""
    return f"{os.path.realpath(source)}:{os.path.getsize(source)}"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: CIFAR-10's batches need no more, and a pickle that
    asks for anything else (code to run) is refused."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # (bytes in protocol 2)

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: (N, 32, 32, 3) uint8 images (the rows are channel planes, R then G then B) and labels."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
        pixels, labels = np.asarray(batch[b"data"], np.uint8), np.asarray(batch[b"labels"], np.int32)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
        raise ValueError(f"{where} is not a CIFAR-10 python batch: {e}") from None
    if pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32 or len(labels) != len(pixels):
        raise ValueError(f"{where} is not a CIFAR-10 python batch: data {pixels.shape}, {len(labels)} labels")
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_python(source: str) -> dict:
    """CIFAR-10 from the python archive cifar-10-python.tar.gz or its extracted folder cifar-10-batches-py/
    (data_batch_1..5, test_batch), each split stably sorted by class."""
    if os.path.isdir(source):
        def read(name):
            path = os.path.join(source, name)
            if not os.path.isfile(path):
                raise ValueError(f"{source} lacks {name}: not a complete CIFAR-10 python folder")
            with open(path, "rb") as f:
                return _batch(f.read(), path)
        found = {name: read(name) for name in TRAIN_BATCHES + ("test_batch",)}
    else:
        found = {}
        with tarfile.open(source) as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in TRAIN_BATCHES + ("test_batch",):
                    found[name] = _batch(tar.extractfile(member).read(), f"{source}:{member.name}")
        missing = [name for name in TRAIN_BATCHES + ("test_batch",) if name not in found]
        if missing:
            raise ValueError(f"{source} lacks {', '.join(missing)}: not a CIFAR-10 python archive")
    arrays = {}
    for split, names in (("train", TRAIN_BATCHES), ("test", ("test_batch",))):
        pixels = np.concatenate([found[name][0] for name in names])
        labels = np.concatenate([found[name][1] for name in names])
        order = np.argsort(labels, kind="stable")
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = pixels[order], labels[order]
    return arrays


def _decode(source: str) -> dict:
    """The JPEG tarball's images sorted by file name (class, then number), with a progress bar on stderr."""
    from tqdm import tqdm

    found = {"train": [], "test": []}
    with open(source, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar, \
            tqdm(total=os.path.getsize(source), unit="B", unit_scale=True, desc="decoding CIFAR-10",
                 file=sys.stderr, mininterval=1.0) as bar:
        for member in tar:
            bar.update(raw.tell() - bar.n)
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[-3] not in found or parts[-2] not in CLASS_NAMES:
                continue
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                found[parts[-3]].append((member.name, np.asarray(im.convert("RGB")), CLASS_NAMES.index(parts[-2])))
        bar.update(bar.total - bar.n)
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
