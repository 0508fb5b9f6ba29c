"""Which images of a dataset are used: the one rule for taking a subset of a set stored sorted by
class (CIFAR-10), which networks are CIFAR-10 networks, and the reference images a network is
studied on (deep studies' images, the set activation maximisation measures M on)."""
from __future__ import annotations

import os

import numpy as np

from jaxinv.io import images
from jaxinv.nets import cifar10
from jaxinv.nets.model import Model


def evenly_spaced(total: int, num: int | None = None) -> np.ndarray:
    """`num` (default: all) ascending indices spread evenly over range(total): i * total // num for
    i < num, up to rounding. CIFAR-10's files are sorted by class, so a prefix would hold one class
    only. Callers that take "at most num" pass min(num, total)."""
    if num is None:
        num = total
    if not 1 <= num <= total:
        raise ValueError(f"cannot take {num} of {total} items: need 1 <= num <= {total}")
    return np.linspace(0, total, num, endpoint=False).astype(int)


def is_cifar10_network(model: Model) -> bool:
    """True for a network that is shown CIFAR-10 images: a 32x32 input, and CIFAR-10's class names
    or none recorded.

    - The input must be 32x32: CIFAR-10 images are used as they are, never resized, and a network
      of another input size could not take them (whatever its class names).
    - Class names, when the network records them, must be CIFAR-10's: a 32 px network of another
      dataset (CIFAR-100, SVHN, ...) is not a CIFAR-10 network.
    - A 32 px network without class names (converted from a checkpoint that did not record them)
      counts as CIFAR-10's: 32 px natural images are the closest match jaxinv has.
    """
    names = getattr(model, "class_names", None)
    return (input_side(model) == 32 and getattr(model, "channels", 3) == 3
            and (not names or list(names) == cifar10.CLASS_NAMES))


def input_side(model) -> int:
    """The side of a model's square input: `input_size` is an int for layer-table networks and
    (height, width) for adapted models (`jaxinv.models.input_side` checks that it is square)."""
    size = model.input_size
    return int(size) if np.ndim(size) == 0 else int(max(size))


def reference_images(model: Model, num_images: int | None = None, *, images_dir: str | None = None,
                     data_dir: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(N, S, S, 3) float32 RGB [0, 255] reference images at the network's input size S, and a name
    for each: the images deep studies invert and activation maximisation measures M on.

    With `images_dir`, its first N files (sorted), resized and centre-cropped; otherwise N evenly
    spaced images of the CIFAR-10 test set for a CIFAR-10 network (`is_cifar10_network`; the set is
    stored sorted by class, so the first N would all be airplanes), else the first N files of
    the data folder's imagenet_samples/ (`images.data_root(data_dir)`). `num_images` None: all.
    """
    if num_images is not None and num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if images_dir is None and is_cifar10_network(model):
        data = cifar10.load(data_dir)
        total = len(data["test_labels"])
        if num_images is not None and num_images > total:
            raise ValueError(f"the CIFAR-10 test set has {total} images; asked for {num_images}")
        keep = evenly_spaced(total, num_images)
        names = [f"test {i} ({cifar10.CLASS_NAMES[data['test_labels'][i]]})" for i in keep]
        return data["test_images"][keep].astype(np.float32), names
    if images_dir is None and data_dir is not None:
        images_dir = images.imagenet_samples_dir(data_dir)
    if images_dir is not None and not os.path.isdir(images_dir):
        raise ValueError(f"images folder not found: {images_dir}")
    paths = images.imagenet_sample_paths(images_dir, num_images)
    if num_images is not None and len(paths) < num_images:
        raise ValueError(f"asked for {num_images} images; {os.path.dirname(paths[0])} has {len(paths)}")
    loaded = np.stack([images.load_image(p, size=input_side(model)) for p in paths])
    return loaded, [os.path.basename(p) for p in paths]


def reference_description(model: Model, num_images: int, *, images_dir: str | None = None) -> str:
    """How results name a set of `num_images` images from `reference_images`: "imagenet_samples[:N]"
    (the first N files of the folder) or "cifar10 test, N evenly spaced"."""
    if images_dir is None and is_cifar10_network(model):
        return f"cifar10 test, {num_images} evenly spaced"
    return f"{os.path.basename(os.path.normpath(images_dir)) if images_dir else 'imagenet_samples'}[:{num_images}]"
