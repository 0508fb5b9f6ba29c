"""Training and test images of the learned inverters.

- "imagenet": the ImageNet samples folder, sorted by file name; the LAST `TEST_FILES` (50) files
  are the deterministic test split, the others (450) the training split. A test image is the whole
  image at size x size (shorter side resized to `size`, centre crop: `images.load_image`). Training
  images are random size x size crops of the training images resized so that their shorter side
  is round(CONTEXT * size) (72 for 64), flipped left-right with probability 1/2: nearly the whole
  image, as at test time, with some translation.
- "cifar10": the CIFAR-10 training images (32x32), flipped with probability 1/2; the test split is
  the CIFAR-10 test set (evenly spaced subsets when fewer images are asked for, as the files are
  sorted by class).

Images are float32 (N, size, size, 3) RGB in [0, 255].
"""
from __future__ import annotations

import numpy as np

from jaxinv.io import datasets
from jaxinv.io import images as image_io

TEST_FILES = 50
CONTEXT = 1.125
DATASETS = ("imagenet", "cifar10")
CIFAR_SIZE = 32
DEFAULT_TEST_IMAGES = {"imagenet": TEST_FILES, "cifar10": 1000}  # CIFAR: evenly spaced, 100 per class


def imagenet_split(images_dir: str | None = None) -> tuple[list[str], list[str]]:
    """(train paths, test paths): all sorted files but the last TEST_FILES, and those."""
    paths = image_io.imagenet_sample_paths(images_dir)
    if len(paths) <= TEST_FILES:
        raise ValueError(f"{len(paths)} images in the images folder: need more than {TEST_FILES} "
                         f"(the last {TEST_FILES} are the test split)")
    return paths[:-TEST_FILES], paths[-TEST_FILES:]


def _evenly_spaced_up_to(total: int, limit: int | None) -> np.ndarray:
    """All of range(total), or `limit` evenly spaced indices if fewer (`datasets.evenly_spaced`)."""
    return datasets.evenly_spaced(total, None if limit is None else min(limit, total))


class ImageSource:
    """Random training crops and the fixed test images of one dataset at one size."""

    def __init__(self, dataset: str, size: int, *, images_dir: str | None = None, data_dir: str | None = None,
                 max_train_images: int | None = None):
        """`images_dir`: the ImageNet samples folder; `data_dir`: the data folder holding cifar10/ (defaults:
        `jaxinv.io.images.data_root` and its imagenet_samples/); `max_train_images`: evenly spaced subset."""
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
        self.dataset, self.size, self.images_dir = dataset, int(size), images_dir
        if dataset == "cifar10":
            from jaxinv.nets import cifar10

            if self.size != CIFAR_SIZE:
                raise ValueError(f"CIFAR-10 images are {CIFAR_SIZE}x{CIFAR_SIZE}; got size {size}")
            self._cifar = cifar10.load(data_dir)
            keep = _evenly_spaced_up_to(len(self._cifar["train_images"]), max_train_images)
            self._train = self._cifar["train_images"][keep]
        else:
            train_paths, self._test_paths = imagenet_split(images_dir)
            keep = _evenly_spaced_up_to(len(train_paths), max_train_images)
            context = round(CONTEXT * self.size)
            self._train = [image_io.load_image(train_paths[i], size=context).astype(np.uint8) for i in keep]

    @property
    def num_train(self) -> int:
        return len(self._train)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n random training crops (N, size, size, 3), each flipped left-right with probability 1/2."""
        which = rng.integers(0, self.num_train, n)
        flips = rng.random(n) < 0.5
        out = np.empty((n, self.size, self.size, 3), np.float32)
        for k, (i, flip) in enumerate(zip(which, flips)):
            image = self._train[i]
            top = rng.integers(0, image.shape[0] - self.size + 1)
            left = rng.integers(0, image.shape[1] - self.size + 1)
            crop = image[top:top + self.size, left:left + self.size]
            out[k] = crop[:, ::-1] if flip else crop
        return out

    def test_images(self, num_images: int | None = None) -> tuple[np.ndarray, list[str]]:
        """The test split (or `num_images` of it) and a name for each image."""
        if self.dataset == "cifar10":
            keep = _evenly_spaced_up_to(len(self._cifar["test_images"]), num_images)
            return self._cifar["test_images"][keep].astype(np.float32), [f"cifar10-test-{i:05d}" for i in keep]
        paths = self._test_paths[:num_images] if num_images else self._test_paths
        return (np.stack([image_io.load_image(p, size=self.size) for p in paths]),
                [p.rsplit("/", 1)[-1] for p in paths])


def default_dataset(representation: str) -> str:
    """CIFAR-10 for the layers of the CIFAR-10 reference network, the ImageNet samples otherwise."""
    return "cifar10" if representation.split(":", 1)[0] == "cifar-ref" else "imagenet"
