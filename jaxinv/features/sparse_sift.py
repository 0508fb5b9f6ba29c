"""Sparse SIFT keypoints arranged on a grid (the sparse SIFT input of Dosovitskiy & Brox, CVPR 2016).

Keypoints come from VLFeat's `vl_sift` (`jaxinv.vlfeat.sift.vlfeat_sift`: 3 levels per octave,
first octave 0, as many octaves as fit, peak threshold 0, edge threshold 10; an optional
dependency, VLFeatUnavailable when libvl is missing). The grid encoding is jaxinv's and pure
numpy (`sift_grid`), so it can be used on any keypoints.

The image plane is cut into cells of s x s pixels (s = `cell`, 4 by default); the grid has
(H // s, W // s) cells, cell (i, j) covering rows [i s, (i + 1) s) and columns [j s, (j + 1) s).
A keypoint at (x, y) (x the column, y the row, in pixels, 0-based) falls in cell
(floor(y / s), floor(x / s)); keypoints outside the grid (negative coordinates, or in the
partial cells beyond the last whole cell) are dropped. Each cell holds D + 5 channels
(133 for SIFT's D = 128):

- channels 0 .. D - 1: the keypoint's descriptor as given (for `sparse_sift`, vl_sift's
  default descriptor floor(min(512 d, 255)), integers in [0, 255], d the unit-norm descriptor);
- channel D: x mod s and channel D + 1: y mod s, the position within the cell in pixels, [0, s);
- channels D + 2, D + 3: sin and cos of the keypoint's angle (radians, from +x towards +y);
- channel D + 4: the natural log of the keypoint's scale (sigma, in pixels).

A cell without keypoints is all zero. When several keypoints fall in one cell (VLFeat returns
one frame per orientation, so a keypoint with several orientations counts several times), one
is chosen uniformly at random: the in-grid keypoints are shuffled by
`numpy.random.default_rng(seed).permutation` and each cell keeps the first of its keypoints in
that order. The choice is deterministic for a given seed and keypoint list and independent
from cell to cell. For a 256x256 image and s = 4 the grid is (64, 64, 133).
"""
from __future__ import annotations

import numbers

import numpy as np

from jaxinv.io import images

FRAME_CHANNELS = 5  # x mod s, y mod s, sin angle, cos angle, log scale


def check_cell(cell) -> int:
    if isinstance(cell, bool) or not isinstance(cell, numbers.Integral) or cell <= 0:
        raise ValueError(f"cell must be a positive integer; got {cell!r}")
    return int(cell)


def grid_shape(image_shape, cell: int) -> tuple[int, int]:
    """(H // cell, W // cell) for an image of shape (H, W[, C]); ValueError below one cell."""
    cell = check_cell(cell)
    shape = tuple(int(n) for n in image_shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"image_shape must be (H, W) or (H, W, C); got {shape}")
    if shape[0] < cell or shape[1] < cell:
        raise ValueError(f"image of shape {shape} is smaller than one {cell}x{cell} cell")
    return shape[0] // cell, shape[1] // cell


def sift_grid(frames, descriptors, image_shape, cell: int = 4, seed: int = 0) -> np.ndarray:
    """Keypoints (frames (N, 4) as x, y, scale, angle; descriptors (N, D)) on a (H // cell, W // cell, D + 5) grid.

    float32; see the module docstring for the channel order, units and the random choice rule.
    """
    rows, columns = grid_shape(image_shape, cell)
    frames = np.asarray(frames, np.float64)
    descriptors = np.asarray(descriptors, np.float32)
    if frames.ndim != 2 or frames.shape[1] != 4:
        raise ValueError(f"frames must have shape (N, 4) (x, y, scale, angle); got {frames.shape}")
    if descriptors.ndim != 2 or descriptors.shape[0] != frames.shape[0]:
        raise ValueError(
            f"descriptors must have shape (N, D) with N = {frames.shape[0]} frames; got {descriptors.shape}")
    if not (np.all(np.isfinite(frames)) and np.all(np.isfinite(descriptors))):
        raise ValueError("frames and descriptors must be finite")
    if np.any(frames[:, 2] <= 0):
        raise ValueError("keypoint scales (frames[:, 2]) must be positive")

    grid = np.zeros((rows, columns, descriptors.shape[1] + FRAME_CHANNELS), np.float32)
    x, y = frames[:, 0], frames[:, 1]
    row, column = np.floor(y / cell), np.floor(x / cell)
    inside = np.flatnonzero((row >= 0) & (row < rows) & (column >= 0) & (column < columns))
    # Shuffle the in-grid keypoints; each cell keeps its first keypoint in the shuffled order.
    order = inside[np.random.default_rng(seed).permutation(len(inside))]
    cell_index = (row[order] * columns + column[order]).astype(np.int64)
    _, first = np.unique(cell_index, return_index=True)
    chosen = order[first]
    r, c = row[chosen].astype(np.int64), column[chosen].astype(np.int64)
    angle = frames[chosen, 3]
    grid[r, c, :descriptors.shape[1]] = descriptors[chosen]
    grid[r, c, -FRAME_CHANNELS:] = np.stack([
        x[chosen] - cell * c, y[chosen] - cell * r, np.sin(angle), np.cos(angle), np.log(frames[chosen, 2])], axis=1)
    return grid


def sparse_sift(image, cell: int = 4, seed: int = 0) -> np.ndarray:
    """VLFeat SIFT keypoints of an (H, W), (H, W, 1) or RGB image in [0, 255] on the sparse grid.

    Colour is converted to grey with ITU-R 601 luma (`jaxinv.io.images.to_grey`). Returns
    (H // cell, W // cell, 133) float32; raises VLFeatUnavailable when libvl is missing.
    """
    from jaxinv.vlfeat.sift import vlfeat_sift

    image = np.asarray(image, np.float32)
    images.validate_image(image, channels=(1, 3), what="sparse SIFT input image")
    grid_shape(image.shape, cell)
    grey = images.to_grey(image) if image.ndim == 3 and image.shape[2] == 3 else image
    frames, descriptors = vlfeat_sift(grey)
    return sift_grid(frames, descriptors, image.shape, cell, seed)
