"""Glyph pictures of HOG arrays, in the style of `vl_hog('render', ...)` (display code, numpy).

Each cell becomes a glyph_size x glyph_size tile made of one bar per orientation, drawn along
the edge (perpendicular to the gradient direction k*pi/n) with brightness proportional to the
cell's undirected component k. The picture is scaled to [0, 255] by its largest value.
"""
from __future__ import annotations

import functools

import numpy as np


def orientations_of_dimension(dimension: int) -> int:
    """n from a UoCTTI cell dimension: 3n + 4 with texture, 3n without."""
    if dimension % 3 == 1 and dimension >= 7:
        return (dimension - 4) // 3
    if dimension % 3 == 0 and dimension >= 3:
        return dimension // 3
    raise ValueError(f"HOG cells must have 3n or 3n + 4 components (31 or 27 for 9 orientations); got {dimension}")


@functools.lru_cache(maxsize=None)
def orientation_glyphs(num_orientations: int, glyph_size: int) -> np.ndarray:
    """(n, glyph_size, glyph_size) binary bars through the tile centre, one per orientation.

    Image axes: x to the right, y down, so a gradient at angle t has edges along (-sin t, cos t).
    """
    glyphs = np.zeros((num_orientations, glyph_size, glyph_size), np.float32)
    centre = (glyph_size - 1) / 2
    # Sample the segment densely enough that consecutive samples never skip a pixel.
    t = np.linspace(-centre, centre, 4 * glyph_size)
    for k in range(num_orientations):
        angle = k * np.pi / num_orientations
        cols = np.clip(np.round(centre - t * np.sin(angle)).astype(int), 0, glyph_size - 1)
        rows = np.clip(np.round(centre + t * np.cos(angle)).astype(int), 0, glyph_size - 1)
        glyphs[k, rows, cols] = 1
    return glyphs


def render_hog(hog_array, glyph_size: int = 21) -> np.ndarray:
    """(hogH, hogW, 3n[+4]) HOG -> (hogH * glyph_size, hogW * glyph_size) grey picture in [0, 255]."""
    hog_array = np.asarray(hog_array, np.float32)
    if hog_array.ndim != 3:
        raise ValueError(f"HOG array must have shape (hogH, hogW, D); got shape {hog_array.shape}")
    if isinstance(glyph_size, bool) or not isinstance(glyph_size, (int, np.integer)) or glyph_size < 3:
        raise ValueError(f"glyph_size must be an integer >= 3; got {glyph_size!r}")
    n = orientations_of_dimension(hog_array.shape[2])
    weights = hog_array[..., 2 * n:3 * n]
    tiles = np.einsum("yxk,kij->yxij", weights, orientation_glyphs(n, int(glyph_size)))
    # Bars cross at the centre: clamp each tile to its weights' range, as VLFeat does.
    low = np.minimum(weights.min(axis=-1), 0)[..., None, None]
    high = np.maximum(weights.max(axis=-1), 0)[..., None, None]
    tiles = np.clip(tiles, low, high)
    picture = tiles.transpose(0, 2, 1, 3).reshape(hog_array.shape[0] * glyph_size, hog_array.shape[1] * glyph_size)
    picture = np.maximum(picture, 0)
    peak = picture.max()
    return picture * (255.0 / peak) if peak > 0 else picture
