"""A fixed pool of training crops and their host-computed features, the features stored by cell.

Host representations (LBP, SIFT) can train from a pool of random crops whose features are computed once
(`training`, `pool_size`). A feature map phi of shape (H, W, C) is kept as the list of its occupied cells:
the flat indices h * W + w of the cells with any non-zero channel, and their C values. Sparse SIFT places
each keypoint's descriptor in one cell of a 64x64 grid at 256 px: 4.9% of the cells of 6400 training crops, so
a crop's features take 0.09 MB instead of 2.2 MB dense, and that pool 1.81 GiB with its crops instead of 14 GiB.
Dense maps (LBP) cost 4 bytes more per cell (the index: under 1% at 58 channels).

Memory: the crops (uint8), 4 * (C + 1) bytes per occupied cell, and one int64 per crop. A batch is densified
on the host (`batch`): for 32 crops of SIFT at 256 px, 70 MB of zeros and a scatter, milliseconds.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class FeaturePool(NamedTuple):
    images: np.ndarray  # (N, S, S, 3) uint8 crops
    starts: np.ndarray  # (N + 1,) int64: crop i's cells are cells[starts[i]:starts[i + 1]]
    cells: np.ndarray  # (M,) int32 flat cell indices h * W + w
    values: np.ndarray  # (M, C) float32 feature values of those cells
    feature_shape: tuple  # (H, W, C)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.starts.nbytes + self.cells.nbytes + self.values.nbytes

    @property
    def num_cells(self) -> int:
        """All cells, occupied or not: crops x H x W."""
        return len(self) * self.feature_shape[0] * self.feature_shape[1]

    @property
    def cell_fraction(self) -> float:
        """Occupied cells over all cells (1.0: dense features)."""
        return len(self.cells) / max(self.num_cells, 1)

    def batch(self, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(images float32 (B, S, S, 3), features float32 (B, H, W, C)) of the crops `which`."""
        height, width, channels = self.feature_shape
        phi = np.zeros((len(which), height * width, channels), np.float32)
        for row, i in enumerate(which):
            lo, hi = self.starts[i], self.starts[i + 1]
            phi[row, self.cells[lo:hi]] = self.values[lo:hi]
        return self.images[which].astype(np.float32), phi.reshape(len(which), height, width, channels)


def occupied_cells(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cells per crop (N,), flat indices (M,) int32, values (M, C) float32) of the occupied cells of `phi`
    (N, H, W, C)."""
    n, height, width, channels = phi.shape
    flat = np.asarray(phi, np.float32).reshape(n, height * width, channels)
    occupied = np.any(flat != 0, axis=-1)
    return occupied.sum(axis=1), np.nonzero(occupied)[1].astype(np.int32), flat[occupied]


def assemble(images: np.ndarray, chunks: list[tuple], feature_shape: tuple) -> FeaturePool:
    """The pool of `images` (uint8, kept as given: no copy) whose features are `chunks` of `occupied_cells`, in
    order."""
    counts = np.concatenate([chunk[0] for chunk in chunks])
    if len(counts) != len(images):
        raise ValueError(f"{len(images)} crops but features of {len(counts)}")
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return FeaturePool(images, starts, np.concatenate([chunk[1] for chunk in chunks]),
                       np.concatenate([chunk[2] for chunk in chunks]), tuple(feature_shape))


def from_features(images: np.ndarray, phi: np.ndarray) -> FeaturePool:
    """The pool of `images` (N, S, S, 3) with their dense features `phi` (N, H, W, C)."""
    return assemble(np.asarray(images).astype(np.uint8), [occupied_cells(phi)], phi.shape[1:])


def save(path: str, pool: FeaturePool) -> None:
    """Writes `pool` to the .npz file (or open file) `path`."""
    np.savez(path, images=pool.images, starts=pool.starts, cells=pool.cells, values=pool.values,
             feature_shape=np.asarray(pool.feature_shape, np.int64))


def load(path: str) -> FeaturePool:
    """The pool saved at `path`; also reads the dense pool.npz of earlier versions (images, features)."""
    with np.load(path) as saved:
        if "features" in saved.files:
            return from_features(saved["images"], saved["features"])
        return FeaturePool(saved["images"], saved["starts"], saved["cells"], saved["values"],
                           tuple(int(d) for d in saved["feature_shape"]))
