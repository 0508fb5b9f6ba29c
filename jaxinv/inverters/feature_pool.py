"""A fixed pool of training crops and their host-computed features, the features stored by cell.

Host representations (LBP, SIFT) can train from a pool of random crops whose features are computed once
(`training`, `pool_size`): `build` makes it POOL_CHUNK crops at a time, within half the machine's memory
(`check_pool_fits`), and caches it in OUTPUT_DIR/pool.npz. A feature map phi of shape (H, W, C) is kept as
the list of its occupied cells: the flat indices h * W + w of the cells with any non-zero channel, and their C
values. Sparse SIFT places each keypoint's descriptor in one cell of a 64x64 grid at 256 px: 4.9% of the cells
of 6400 training crops, so a crop's features take 0.09 MB instead of 2.2 MB dense, and that pool 1.81 GiB
with its crops instead of 14 GiB.
Dense maps (LBP) cost 4 bytes more per cell (the index: under 1% at 58 channels).

Memory: the crops (uint8), 4 * (C + 1) bytes per occupied cell, and one int64 per crop. A batch is densified
on the host (`batch`): for 32 crops of SIFT at 256 px, 70 MB of zeros and a scatter, milliseconds.
"""
from __future__ import annotations

import os
import time
from typing import Callable, NamedTuple

import numpy as np

from jaxinv.io import outputs
from jaxinv.inverters import features
from jaxinv.inverters.run_config import TrainConfig

POOL_FILE = "pool.npz"
POOL_CHUNK = 64


def count_cells(num_crops: int, feature_shape: tuple) -> int:
    """All cells of `num_crops` crops' features, occupied or not: crops x H x W."""
    return num_crops * feature_shape[0] * feature_shape[1]


def fraction_occupied(occupied: int, num_crops: int, feature_shape: tuple) -> float:
    """`occupied` cells over all cells of `num_crops` crops (1.0: dense features)."""
    return occupied / max(count_cells(num_crops, feature_shape), 1)


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
        return count_cells(len(self), self.feature_shape)

    @property
    def cell_fraction(self) -> float:
        """Occupied cells over all cells (1.0: dense features)."""
        return fraction_occupied(len(self.cells), len(self), self.feature_shape)

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


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_pool_fits(config: TrainConfig, feature_shape: tuple, memory_bytes: int, cell_fraction: float = 1.0) -> None:
    """Raises ValueError when the pool (uint8 crops and float32 features, held in memory and written to pool.npz)
    would take more than half of `memory_bytes`, with features in `cell_fraction` of their spatial cells
    (1.0: dense, the bound; 0.0: the crops alone). `training` checks the crops alone before any training crop's
    features are computed; `build` checks the measured fraction after every chunk it computes.
    SIFT's 133-channel grid at 256 px is 2.2 MB per crop dense (a pool of 6400: 14 GB) and 4.9% occupied."""
    per_crop = config.image_size ** 2 * 3 + cell_fraction * 4 * int(np.prod(feature_shape))
    needed = config.pool_size * per_crop
    if needed > memory_bytes // 2:
        occupied = "" if cell_fraction == 1 else f", features in {cell_fraction:.1%} of the cells"
        raise ValueError(f"a pool of {config.pool_size} crops of {config.representation!r} at {config.image_size} px "
                         f"needs {needed / 2**30:.1f} GiB ({per_crop / 2**20:.2f} MiB per crop{occupied}), more than "
                         f"half of this machine's {memory_bytes / 2**30:.0f} GiB: set pool_size 0 (features of fresh "
                         f"crops every step) or at most {int(memory_bytes // 2 // per_crop)}")


def build(config: TrainConfig, feature, source, output_dir: str, log: Callable[[str], None]) -> FeaturePool | None:
    """The fixed pool of crops and features of `config` (cached in OUTPUT_DIR/pool.npz: read if there), or None
    (pool_size 0). Crops drawn from `source` (`data.ImageSource`), POOL_CHUNK at a time; refused
    (`check_pool_fits`) as soon as the occupied cells so far project past half the memory."""
    if config.pool_size == 0:
        return None
    path = os.path.join(output_dir, POOL_FILE)
    if os.path.isfile(path):
        return load(path)
    start = time.perf_counter()
    rng = np.random.default_rng([config.seed, 11])
    size = config.image_size
    images = np.empty((config.pool_size, size, size, 3), np.uint8)  # filled in place: the crops are most of it
    chunks, occupied, feature_shape = [], 0, None
    for begin in range(0, config.pool_size, POOL_CHUNK):
        crops = source.sample(rng, min(POOL_CHUNK, config.pool_size - begin))
        images[begin:begin + len(crops)] = crops.astype(np.uint8)
        phi = features.compute(feature, crops)
        feature_shape = phi.shape[1:]
        chunks.append(occupied_cells(phi))
        occupied += len(chunks[-1][1])
        check_pool_fits(config, feature_shape, physical_memory_bytes(),
                        fraction_occupied(occupied, begin + len(crops), feature_shape))
    pool = assemble(images, chunks, feature_shape)
    outputs.atomic_write(path, lambda tmp: save(tmp, pool), ".npz")
    log(f"pool of {config.pool_size} crops and their features ({pool.nbytes / 2**30:.2f} GiB, features in "
        f"{pool.cell_fraction:.1%} of the cells): {time.perf_counter() - start:.1f} s -> {path}")
    return pool
