"""Image-space error of reconstructions (Dosovitskiy & Brox, CVPR 2016, Table 2).

error = mean_i ||x_i - x*_i|| / N, N the average Euclidean distance between the (distinct) original
images, pixels in [0, 255] (the normalisation makes the unit irrelevant). Comparisons with methods
that only see grey levels (HOG, LBP, SIFT of the grey image, HOGgle) use `grey=True`: both image sets
are reduced to luma first (hand-crafted features cannot recover colour); the colour error of a
learned inverter is reported beside it.
"""
from __future__ import annotations

import numpy as np

from jaxinv.io import images
from jaxinv.methods import metrics


def _as_batch(batch, what: str, grey: bool) -> np.ndarray:
    x = np.asarray(batch, np.float64)
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise ValueError(f"{what} must be a batch (N, H, W) or (N, H, W, 3); got shape {x.shape}")
    if grey and x.ndim == 4:
        x = x[..., 0] if x.shape[-1] == 1 else images.to_grey(x, np.float64)
    return x


def image_errors(reconstructions, originals, *, grey: bool = False) -> np.ndarray:
    """Per-image ||x_i - x*_i|| / N (N: mean pairwise distance of the originals), shape (N,)."""
    rec = _as_batch(reconstructions, "reconstructions", grey)
    ref = _as_batch(originals, "originals", grey)
    if rec.shape != ref.shape:
        raise ValueError(f"reconstructions of shape {rec.shape} do not match originals of shape {ref.shape}"
                         + ("" if grey else " (compare grey with colour images with grey=True)"))
    if len(ref) < 2:
        raise ValueError("the image error is normalised by the distance between originals: need at least 2 images")
    distances = np.linalg.norm((rec - ref).reshape(len(ref), -1), axis=1)
    return distances / metrics.average_pairwise_distance(ref)


def image_error(reconstructions, originals, *, grey: bool = False) -> float:
    """Mean of `image_errors`: the paper's normalised image-space error."""
    return float(np.mean(image_errors(reconstructions, originals, grey=grey)))


def colour_and_grey_errors(reconstructions, originals) -> dict[str, float]:
    """{image_error, image_error_grey}: `image_error` in colour and grey (as grey-only methods report it)."""
    return {"image_error": image_error(reconstructions, originals),
            "image_error_grey": image_error(reconstructions, originals, grey=True)}


def flat_baseline_errors(originals, *, grey: bool = False) -> dict[str, np.ndarray]:
    """Per-image errors of two reconstructions that use no feature: "mean image" (the pixelwise mean
    of `originals`, the same for every image) and "own mean level" (each image replaced by its own
    mean value, per colour channel unless grey: an oracle, since contrast-normalised features such as
    LBP and SIFT do not encode brightness). A learned inverter is useful where it beats them."""
    ref = _as_batch(originals, "originals", grey)
    mean_image = np.broadcast_to(ref.mean(axis=0, keepdims=True), ref.shape)
    own_level = np.broadcast_to(ref.mean(axis=(1, 2), keepdims=True), ref.shape)
    return {"mean image": image_errors(mean_image, ref), "own mean level": image_errors(own_level, ref)}
