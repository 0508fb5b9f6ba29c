"""Picture of dense SIFT descriptors, in the style of VLFeat's vl_plotsiftdescriptor (display code).

Each frame's 4x4 spatial bins are drawn as 8-direction stars centred on the bin centres; the
line in direction 2*pi*t/8 (measured from +x towards +y, y pointing down, as in
`jaxinv.features.dsift`) has a length proportional to histogram value t, half a bin for the
largest value of its descriptor (as vl_plotsiftdescriptor scales each descriptor by its maximum).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from jaxinv.io import images
from jaxinv.features.dsift import DESCRIPTOR_SIZE, NUM_ORIENTATIONS, NUM_SPATIAL_BINS

IMAGE_DIMMING = 0.35


def default_canvas_shape(ny: int, nx: int, bin_size: int, step: int) -> tuple[int, int]:
    """Smallest (H, W) image with ny x nx frames: the last bin centre sits on the last pixel."""
    span = (NUM_SPATIAL_BINS - 1) * bin_size + 1
    return (ny - 1) * step + span, (nx - 1) * step + span


def _background(shape, image):
    """Black canvas, or the image converted to grey and dimmed so the stars stand out."""
    if image is None:
        return np.zeros(shape, np.float32)
    image = images.to_grey(image)
    if image.shape != tuple(shape):
        raise ValueError(f"image of shape {image.shape} does not match image_shape {tuple(shape)}")
    return IMAGE_DIMMING * image


def render_dsift(descriptors, bin_size: int = 8, step: int = 8, image_shape=None, image=None) -> np.ndarray:
    """(H, W) float32 picture in [0, 255] of (ny, nx, 128) descriptors, optionally over `image`."""
    descriptors = np.asarray(descriptors, np.float32)
    if descriptors.ndim != 3 or descriptors.shape[-1] != DESCRIPTOR_SIZE:
        raise ValueError(f"descriptors must have shape (ny, nx, {DESCRIPTOR_SIZE}); got {descriptors.shape}")
    ny, nx = descriptors.shape[:2]
    if image_shape is None:
        image_shape = np.shape(image)[:2] if image is not None else default_canvas_shape(ny, nx, bin_size, step)
    canvas = Image.fromarray(_background(tuple(image_shape[:2]), image), mode="F")
    draw = ImageDraw.Draw(canvas)
    histograms = descriptors.reshape(ny, nx, NUM_SPATIAL_BINS, NUM_SPATIAL_BINS, NUM_ORIENTATIONS)
    scales = 0.5 * bin_size / np.maximum(descriptors.max(axis=-1), 1e-12)
    angles = 2 * math.pi * np.arange(NUM_ORIENTATIONS) / NUM_ORIENTATIONS
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    for i, j, by, bx in np.ndindex(*histograms.shape[:4]):
        cy, cx = i * step + by * bin_size, j * step + bx * bin_size
        scale = scales[i, j]
        for (dx, dy), value in zip(directions, histograms[i, j, by, bx]):
            if value > 0:
                draw.line([(cx, cy), (cx + scale * value * dx, cy + scale * value * dy)], fill=255.0)
    return np.clip(np.asarray(canvas, np.float32), 0, 255)
