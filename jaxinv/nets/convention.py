"""The one rule for how an RGB image in [0, 255] enters a network, and back.

A network's input convention (`Model.convention`, plus an optional mean image) says: reorder the
channels ("RGB" or "BGR"), rescale to `pixel_range` (255 for Caffe/MatConvNet models, 1 for
torchvision), subtract the mean (per channel, or a mean image of the input's size), divide by `std`
per channel. Means and stds are in the network's channel order and range.

    x_net = (reorder(rgb) * pixel_range / 255 - mean) / std

`to_network` is that map, in jnp (differentiable, used inside compiled steps and for fine-tuning
encoders) and on numpy arrays alike; `from_network` inverts it; `rgb_mean` is the mean as an RGB
[0, 255] colour, which the pre-image engine subtracts to get null-mean images.
"""
from __future__ import annotations

import numpy as np


def input_mean(convention: dict, mean_image, image_shape) -> np.ndarray:
    """The mean to subtract from inputs of `image_shape` (..., H, W, C): the mean image when it has
    the input's size, else its per-channel average, else the convention's per-channel mean."""
    if mean_image is not None:
        mean_image = np.asarray(mean_image, np.float32)
        if tuple(mean_image.shape[:2]) == tuple(image_shape[-3:-1]):
            return mean_image
        return mean_image.mean(axis=(0, 1))
    return np.asarray(convention["mean"], np.float32)


def input_params(convention: dict, mean_image, image_shape) -> dict:
    """{"mean", "std"} float32 arrays for `to_network` on inputs of `image_shape` (data, not structure:
    they travel as weights so that networks with other means share compiled steps)."""
    return {"mean": input_mean(convention, mean_image, image_shape),
            "std": np.asarray(convention["std"], np.float32)}


def to_network(rgb, channel_order: str, pixel_range: float, mean, std):
    """RGB [0, 255] images (..., H, W, 3) -> the network's input space; works on numpy and jnp arrays."""
    x = rgb[..., ::-1] if channel_order == "BGR" else rgb
    return (x * (pixel_range / 255.0) - mean) / std


def from_network(x, channel_order: str, pixel_range: float, mean, std):
    """The inverse of `to_network`: network inputs -> RGB [0, 255] (not clipped)."""
    rgb = (x * std + mean) * (255.0 / pixel_range)
    return rgb[..., ::-1] if channel_order == "BGR" else rgb


def rgb_mean(convention: dict, mean_image=None) -> tuple[float, float, float]:
    """The network's mean as an RGB [0, 255] colour (the per-channel average of a mean image)."""
    mean = np.asarray(convention["mean"], np.float64)
    if mean_image is not None:
        mean = np.asarray(mean_image, np.float64).mean(axis=(0, 1))
    if convention["channel_order"] == "BGR":
        mean = mean[::-1]
    return tuple(float(v) for v in mean * 255.0 / convention["pixel_range"])
