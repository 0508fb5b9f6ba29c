"""Training, validation and test images of the learned inverters.

- "imagenet": the ImageNet samples folder, sorted by file name. The LAST `TEST_FILES` (50) files are
  the deterministic test split, never trained on or selected with. Of the others (450),
  `validation_images` (default `VALIDATION_FILES`, 50) evenly spaced files are the validation split
  (model selection: the best checkpoint, early stopping) and the rest (400) the training split. A test
  or validation image is the whole image at size x size (shorter side resized to `size`, centre crop:
  `images.load_image`). Training images are random crops, flipped left-right with probability 1/2:
  - "multiscale" (default): each training photo is decoded once and kept in memory (at its full
    resolution, or with its shorter side reduced to `STORE_FACTOR` (4) x size when larger, which no
    crop resized to `size` can tell apart); a crop is a square of side s * (the photo's shorter
    side), s uniform in [min_crop_scale, 1] (0.5 by default), at a uniform random position (sub-pixel),
    resized (bicubic, antialiased) to size x size. s = 1 at the centre is exactly a test image, so the
    crops span the test images' scale and zoom in up to 2x: crops do not run out.
  - "thumbnail": the photos resized so that their shorter side is round(CONTEXT * size) (72 for 64),
    random size x size windows of them (nearly the whole image, with some translation).
  With `cifar10_fraction` f > 0, round(f * N) images of each batch of N are instead CIFAR-10 training
  images (all 50,000, none held out: the validation and test photos stay ImageNet's) resized (bicubic) to
  size x size and flipped with probability 1/2: more distinct images than the 400 photos (at 64 px, half
  of each batch from CIFAR-10 lowered the HOG inverter's held-out error from 0.445 to 0.419 at 2000 steps,
  and to 0.416 at 4000: docs/learned_inverters.md, section 4).
- "cifar10": the CIFAR-10 training images (32x32), flipped with probability 1/2; `validation_images`
  (default 500) evenly spaced training images are the validation split; the test split is the
  CIFAR-10 test set (evenly spaced subsets when fewer images are asked for, as the files are sorted by
  class).

Images are float32 (N, size, size, 3) RGB in [0, 255].
"""
from __future__ import annotations

import concurrent.futures
import os

import numpy as np
from PIL import Image

from jaxinv.io import datasets
from jaxinv.io import images as image_io

TEST_FILES = 50
VALIDATION_FILES = 50
CONTEXT = 1.125
STORE_FACTOR = 4
DEFAULT_MIN_CROP_SCALE = 0.5
DATASETS = ("imagenet", "cifar10")
CROPS = ("multiscale", "thumbnail")
CIFAR_SIZE = 32
DEFAULT_TEST_IMAGES = {"imagenet": TEST_FILES, "cifar10": 1000}  # CIFAR: evenly spaced, 100 per class
DEFAULT_VALIDATION_IMAGES = {"imagenet": VALIDATION_FILES, "cifar10": 500}


def imagenet_split(images_dir: str | None = None) -> tuple[list[str], list[str]]:
    """(train paths, test paths): all sorted files but the last TEST_FILES, and those. The first list
    still holds the validation files (`imagenet_splits` separates them)."""
    paths = image_io.imagenet_sample_paths(images_dir)
    if len(paths) <= TEST_FILES:
        raise ValueError(f"{len(paths)} images in the images folder: need more than {TEST_FILES} "
                         f"(the last {TEST_FILES} are the test split)")
    return paths[:-TEST_FILES], paths[-TEST_FILES:]


def _held_out(total: int, num: int) -> np.ndarray:
    """`num` evenly spaced indices of range(total) (none for num = 0)."""
    if num < 0 or num >= total:
        raise ValueError(f"cannot hold out {num} of {total} training images for validation: need 0 <= num < {total}")
    return datasets.evenly_spaced(total, num) if num else np.zeros(0, int)


def imagenet_splits(images_dir: str | None = None, validation_images: int = VALIDATION_FILES
                    ) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, test) paths: the test split is the last TEST_FILES sorted files; the
    validation split `validation_images` evenly spaced files of the others; the training split the rest."""
    train, test = imagenet_split(images_dir)
    held = set(_held_out(len(train), validation_images).tolist())
    return ([p for i, p in enumerate(train) if i not in held], [train[i] for i in sorted(held)], test)


def _evenly_spaced_up_to(total: int, limit: int | None) -> np.ndarray:
    """All of range(total), or `limit` evenly spaced indices if fewer (`datasets.evenly_spaced`)."""
    return datasets.evenly_spaced(total, None if limit is None else min(limit, total))


def _stored_photo(path: str, size: int) -> Image.Image:
    """The RGB photo at full resolution, or reduced (bicubic) to a shorter side of STORE_FACTOR * size."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        cap = STORE_FACTOR * size
        if min(w, h) > cap:
            scale = cap / min(w, h)
            im = im.resize((max(cap, round(w * scale)), max(cap, round(h * scale))), Image.BICUBIC)
        im.load()
        return im


def multiscale_crop(photo: Image.Image, size: int, rng: np.random.Generator, min_scale: float) -> np.ndarray:
    """One random square crop of `photo` (side s * shorter side, s ~ U[min_scale, 1], uniform
    position), resized (bicubic) to size x size and flipped left-right with probability 1/2: (size, size, 3)."""
    return _resized(photo, size, *_crop_box(photo.size, rng, min_scale))


def _crop_box(photo_size: tuple[int, int], rng: np.random.Generator, min_scale: float) -> tuple[tuple, bool]:
    """The random draws of `multiscale_crop`: ((left, top, right, bottom), flip)."""
    w, h = photo_size
    side = rng.uniform(min_scale, 1.0) * min(w, h)
    left, top = rng.uniform(0.0, w - side), rng.uniform(0.0, h - side)
    return (left, top, left + side, top + side), rng.random() < 0.5


def _resized(photo: Image.Image, size: int, box: tuple, flip: bool) -> np.ndarray:
    crop = np.asarray(photo.resize((size, size), Image.BICUBIC, box=box), np.float32)
    return crop[:, ::-1] if flip else crop


_RESIZERS: concurrent.futures.ThreadPoolExecutor | None = None


def _resizers() -> concurrent.futures.ThreadPoolExecutor:
    """Threads for the crops' resizing (Pillow releases the GIL while it resamples), one per CPU: on an
    accelerator's host the training crops of a step are made in parallel instead of on one core."""
    global _RESIZERS
    if _RESIZERS is None:
        _RESIZERS = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="crops")
    return _RESIZERS


class ImageSource:
    """Random training crops and the fixed validation and test images of one dataset at one size."""

    def __init__(self, dataset: str, size: int, *, images_dir: str | None = None, data_dir: str | None = None,
                 max_train_images: int | None = None, crops: str = "multiscale",
                 min_crop_scale: float = DEFAULT_MIN_CROP_SCALE, validation_images: int | None = None,
                 cifar10_fraction: float = 0.0):
        """`images_dir`: the ImageNet samples folder; `data_dir`: the data folder holding cifar10/ (defaults:
        `jaxinv.io.images.data_root` and its imagenet_samples/); `max_train_images`: evenly spaced subset of
        the training split; `crops`, `min_crop_scale`: the ImageNet training crops (module docstring);
        `validation_images`: the size of the validation split (None: DEFAULT_VALIDATION_IMAGES);
        `cifar10_fraction`: the share of each ImageNet training batch drawn from CIFAR-10 (module docstring)."""
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
        if crops not in CROPS:
            raise ValueError(f"unknown crops {crops!r}; valid: {', '.join(CROPS)}")
        if not 0 < min_crop_scale <= 1:
            raise ValueError(f"min_crop_scale must be in (0, 1]; got {min_crop_scale}")
        check_cifar10_fraction(cifar10_fraction, dataset)
        self.dataset, self.size, self.images_dir = dataset, int(size), images_dir
        self.crops, self.min_crop_scale = crops, float(min_crop_scale)
        num_validation = DEFAULT_VALIDATION_IMAGES[dataset] if validation_images is None else int(validation_images)
        if dataset == "cifar10":
            from jaxinv.nets import cifar10

            if self.size != CIFAR_SIZE:
                raise ValueError(f"CIFAR-10 images are {CIFAR_SIZE}x{CIFAR_SIZE}; got size {size}")
            self._cifar = cifar10.load(data_dir)
            every = self._cifar["train_images"]
            held = _held_out(len(every), num_validation)
            self._validation = every[held].astype(np.float32)
            self._validation_names = [f"cifar10-train-{i:05d}" for i in held]
            rest = np.setdiff1d(np.arange(len(every)), held)
            self._train = every[rest[_evenly_spaced_up_to(len(rest), max_train_images)]]
        else:
            train_paths, validation_paths, self._test_paths = imagenet_splits(images_dir, num_validation)
            self._validation_paths = validation_paths
            keep = _evenly_spaced_up_to(len(train_paths), max_train_images)
            if crops == "multiscale":
                self._train = [_stored_photo(train_paths[i], self.size) for i in keep]
            else:
                context = round(CONTEXT * self.size)
                self._train = [image_io.load_image(train_paths[i], size=context).astype(np.uint8) for i in keep]
        self.cifar10_fraction = float(cifar10_fraction)
        if self.cifar10_fraction > 0:
            from jaxinv.nets import cifar10

            self._extra = cifar10.load(data_dir)["train_images"]

    @property
    def num_train(self) -> int:
        return len(self._train)

    def sample(self, rng: np.random.Generator, n: int, *, threads: bool = True) -> np.ndarray:
        """n random training crops (N, size, size, 3), each flipped left-right with probability 1/2; the first
        round(cifar10_fraction * n) are CIFAR-10 images. ImageNet's multiscale crops are resized in one thread
        per CPU, or with `threads` False one after another in the calling thread (`multiscale_crop` calls on
        `rng`): the same crops, bitwise, as the random draws come in the same order."""
        extra = int(round(self.cifar10_fraction * n))
        if extra:
            return np.concatenate([self._cifar10_images(rng, extra), self._crops(rng, n - extra, threads)])
        return self._crops(rng, n, threads)

    def _cifar10_images(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n random CIFAR-10 training images resized (bicubic) to size x size, each flipped with probability 1/2."""
        out = np.empty((n, self.size, self.size, 3), np.float32)
        for k, (i, flip) in enumerate(zip(rng.integers(0, len(self._extra), n), rng.random(n) < 0.5)):
            image = np.asarray(Image.fromarray(self._extra[i]).resize((self.size, self.size), Image.BICUBIC), np.float32)
            out[k] = image[:, ::-1] if flip else image
        return out

    def _crops(self, rng: np.random.Generator, n: int, threads: bool = True) -> np.ndarray:
        """n random crops of the training split, each flipped left-right with probability 1/2 (`sample`)."""
        which = rng.integers(0, self.num_train, n)
        out = np.empty((n, self.size, self.size, 3), np.float32)
        if self.dataset == "imagenet" and self.crops == "multiscale":
            if not threads:
                for k, i in enumerate(which):
                    out[k] = multiscale_crop(self._train[i], self.size, rng, self.min_crop_scale)
                return out
            # The draws in the order of one crop after another (the crops of a seed do not depend on the threads).
            boxes = [_crop_box(self._train[i].size, rng, self.min_crop_scale) for i in which]
            jobs = [_resizers().submit(_resized, self._train[i], self.size, box, flip)
                    for i, (box, flip) in zip(which, boxes)]
            for k, job in enumerate(jobs):
                out[k] = job.result()
            return out
        flips = rng.random(n) < 0.5
        for k, (i, flip) in enumerate(zip(which, flips)):
            image = self._train[i]
            top = rng.integers(0, image.shape[0] - self.size + 1)
            left = rng.integers(0, image.shape[1] - self.size + 1)
            crop = image[top:top + self.size, left:left + self.size]
            out[k] = crop[:, ::-1] if flip else crop
        return out

    def validation_images(self) -> tuple[np.ndarray, list[str]]:
        """The validation split (whole images, as the test images) and a name for each; may be empty."""
        if self.dataset == "cifar10":
            return self._validation, list(self._validation_names)
        if not self._validation_paths:
            return np.zeros((0, self.size, self.size, 3), np.float32), []
        return (np.stack([image_io.load_image(p, size=self.size) for p in self._validation_paths]),
                [p.rsplit("/", 1)[-1] for p in self._validation_paths])

    def test_images(self, num_images: int | None = None) -> tuple[np.ndarray, list[str]]:
        """The test split (or `num_images` of it) and a name for each image."""
        if self.dataset == "cifar10":
            keep = _evenly_spaced_up_to(len(self._cifar["test_images"]), num_images)
            return self._cifar["test_images"][keep].astype(np.float32), [f"cifar10-test-{i:05d}" for i in keep]
        paths = self._test_paths[:num_images] if num_images else self._test_paths
        return (np.stack([image_io.load_image(p, size=self.size) for p in paths]),
                [p.rsplit("/", 1)[-1] for p in paths])


def check_cifar10_fraction(fraction: float, dataset: str) -> None:
    """Raises ValueError unless `fraction` is in [0, 1), and 0 for the CIFAR-10 dataset itself."""
    if not 0 <= fraction < 1:
        raise ValueError(f"cifar10_fraction must be in [0, 1) (the share of each batch from CIFAR-10); got {fraction}")
    if fraction and dataset != "imagenet":
        raise ValueError(f"cifar10_fraction mixes CIFAR-10 into ImageNet training batches; dataset {dataset!r} "
                         f"takes 0")


def default_dataset(representation: str) -> str:
    """CIFAR-10 for the layers of the CIFAR-10 reference network, the ImageNet samples otherwise."""
    return "cifar10" if representation.split(":", 1)[0] == "cifar-ref" else "imagenet"
