"""Learned inverters shipped inside the package, as cifar-ref ships with `jaxinv.nets`.

    inverter = jaxinv.inverters.load("hog-64")   # no training, no cache: jaxinv/inverters/assets/hog-64

A shipped inverter is a saved inverter (`model.save`: params/ and metadata.json, whose "fingerprints"
record the SHA-256 `checkpoints.weights_fingerprint` of the parameters, verified by every `load`) copied
into jaxinv/inverters/assets/NAME by `ship`, which also records in its metadata "shipped_check": the image
error (colour and grey) of its reconstructions of the first CHECK_IMAGES (5) test photos (`data`: the
last 50 sorted ImageNet samples, never trained on), with their names and `cache.images_fingerprint`.
`check` recomputes that error, so a fresh machine can confirm it reproduces what was shipped.
"""
from __future__ import annotations

import os

import numpy as np

from jaxinv.inverters import data
from jaxinv.inverters import metrics as inverter_metrics
from jaxinv.inverters import model
from jaxinv.io import cache, images

CHECK_IMAGES = 5
CHECK_FIELD = "shipped_check"


def check_images(size: int, images_dir: str | None = None) -> tuple[np.ndarray, list[str]]:
    """The first CHECK_IMAGES test photos at size x size (whole image, centre crop) and their file names."""
    source_paths = data.imagenet_split(images_dir)[1][:CHECK_IMAGES]
    return (np.stack([images.load_image(p, size=size) for p in source_paths]),
            [os.path.basename(p) for p in source_paths])


def check_errors(inverter: model.Inverter, images_dir: str | None = None) -> dict:
    """{image_error, image_error_grey, images, images_fingerprint} of `inverter` on the check photos."""
    originals, names = check_images(inverter.image_size, images_dir)
    out = inverter.invert_images(originals)
    return dict(inverter_metrics.colour_and_grey_errors(out, originals), images=names,
                images_fingerprint=cache.images_fingerprint(originals))


def ship(source_dir: str, name: str | None = None, images_dir: str | None = None) -> str:
    """Copies the trained inverter in `source_dir` into the package as NAME (default
    `model.inverter_name`, e.g. "hog-64"), recording its check errors; returns the shipped folder."""
    inverter = model.load(source_dir)
    name = name or model.inverter_name(inverter.representation, inverter.image_size)
    inverter.metadata = dict(inverter.metadata, shipped_name=name, **{CHECK_FIELD: check_errors(inverter, images_dir)})
    inverter.metadata.pop("fingerprints", None)  # recomputed by save
    return model.save(model.builtin_dir(name), inverter)


def check(name: str, images_dir: str | None = None) -> dict:
    """The shipped inverter's check errors now and as recorded: {"recorded": ..., "measured": ...}; raises
    ValueError if the check photos are not the ones it was shipped with."""
    inverter = model.load(name)
    recorded = inverter.metadata.get(CHECK_FIELD)
    if not recorded:
        raise ValueError(f"{name}: no {CHECK_FIELD!r} in its metadata (not shipped by jaxinv.inverters.shipped.ship)")
    measured = check_errors(inverter, images_dir)
    if (measured["images"], measured["images_fingerprint"]) != (recorded["images"], recorded["images_fingerprint"]):
        raise ValueError(f"{name}: the check photos {measured['images']} differ from those it was shipped with "
                         f"({recorded['images']}, or their pixels differ)")
    return {"recorded": recorded, "measured": measured}
