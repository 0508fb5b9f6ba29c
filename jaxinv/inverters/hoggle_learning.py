"""Learning a HOGgle paired dictionary (Vondrick et al., ICCV 2013): sampling pairs of grey patches
and the HOG of their cells from images, and learning the atoms by non-negative sparse coding of the
concatenated, normalised pairs (scikit-learn's MiniBatchDictionaryLearning, `pip install
'jaxinv[hoggle]'`). Units, alignment and normalisation are those of `jaxinv.inverters.hoggle`.
"""
from __future__ import annotations

import dataclasses
import numbers
import time
import warnings
from typing import Callable, Sequence

import numpy as np

from jaxinv.features.hog import check_cell_size
from jaxinv.features.hog import batched_hog
from jaxinv.inverters.hoggle import PairedDictionary, _positive_int, zero_mean_unit_norm
from jaxinv.io import images
from jaxinv.io import progress as bars


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingPairs:
    """N windows: grey `patches` (N, P, P) in [0, 255] and the HOG of their cells `hogs` (N, w, w, 31)."""
    patches: np.ndarray
    hogs: np.ndarray
    cell_size: int
    window_cells: int

    def __len__(self) -> int:
        return len(self.patches)


def _window_contrast(grey_images: np.ndarray, cell_size: int, window_cells: int, rows: int, cols: int):
    """(N, rows, cols) pixel standard deviation of every window's patch (box sums over cells)."""
    n = len(grey_images)
    cell_rows, cell_cols = rows + window_cells - 1, cols + window_cells - 1
    covered = grey_images[:, :cell_rows * cell_size, :cell_cols * cell_size]
    cells = covered.astype(np.float64).reshape(n, cell_rows, cell_size, cell_cols, cell_size)
    sums, squares = cells.sum(axis=(2, 4)), (cells ** 2).sum(axis=(2, 4))

    def window_sum(x):
        windows = np.lib.stride_tricks.sliding_window_view(x, (window_cells, window_cells), axis=(1, 2))
        return windows.sum(axis=(-2, -1))
    pixels = (window_cells * cell_size) ** 2
    mean = window_sum(sums) / pixels
    return np.sqrt(np.maximum(window_sum(squares) / pixels - mean ** 2, 0.0))


def sample_training_pairs(image_paths: Sequence[str], num_patches: int | None, *, cell_size: int = 8,
                          window_cells: int = 5, image_size: int = 64, min_contrast: float = 1.0,
                          seed: int = 0) -> TrainingPairs:
    """`num_patches` random distinct windows of the images (None: all of them, shuffled) and the HOG of their cells.

    Each image is read grey and centre-cropped to image_size x image_size
    (`jaxinv.io.images.load_image(path, grey=True, size=image_size)`, the preprocessing of the
    evaluation images); the HOG of every whole image is computed batched (`batched_hog`), and a
    window is `window_cells` x `window_cells` cells at any cell offset together with the pixel
    block they tile (see the module docstring), restricted to blocks inside the image. Windows
    whose patch has a pixel standard deviation under `min_contrast` grey levels (flat sky,
    borders) are left out: a flat patch has no zero-mean unit-norm version. Windows are drawn
    uniformly without replacement from all images (seeded by `seed`); ValueError if there are
    fewer than `num_patches`.
    """
    cell_size = check_cell_size(cell_size)
    window_cells = _positive_int(window_cells, "window_cells")
    num_patches = None if num_patches is None else _positive_int(num_patches, "num_patches")
    image_size = _positive_int(image_size, "image_size")
    patch_size = window_cells * cell_size
    if image_size < patch_size:
        raise ValueError(f"image_size {image_size} is smaller than a window ({window_cells} cells of {cell_size} px "
                         f"= {patch_size} px)")
    if len(image_paths) == 0:
        raise ValueError("no training images given")
    grey = np.stack([images.load_image(p, grey=True, size=image_size) for p in image_paths])
    hogs = batched_hog(grey, cell_size)
    hog_rows, hog_cols = hogs.shape[1:3]
    # Windows whose pixel block lies inside the image (the last cell may overhang by < cell / 2).
    rows = min(hog_rows - window_cells, (image_size - patch_size) // cell_size) + 1
    cols = min(hog_cols - window_cells, (image_size - patch_size) // cell_size) + 1
    contrast = _window_contrast(grey, cell_size, window_cells, rows, cols)
    candidates = np.flatnonzero(contrast.ravel() >= min_contrast)
    if num_patches is None:
        num_patches = len(candidates)
    if len(candidates) < num_patches or num_patches == 0:
        raise ValueError(f"{len(image_paths)} images of {image_size}x{image_size} hold only {len(candidates)} windows "
                         f"with contrast >= {min_contrast}; asked for {num_patches} patches (use fewer, more images "
                         f"or a larger image_size)")
    chosen = np.random.default_rng(seed).choice(candidates, num_patches, replace=False)
    image_index, row, col = np.unravel_index(chosen, contrast.shape)
    offsets = np.arange(patch_size)
    pixel_rows = (row * cell_size)[:, None] + offsets
    pixel_cols = (col * cell_size)[:, None] + offsets
    patches = grey[image_index[:, None, None], pixel_rows[:, :, None], pixel_cols[:, None, :]]
    cells = np.arange(window_cells)
    cell_rows, cell_cols = (row[:, None] + cells)[:, :, None], (col[:, None] + cells)[:, None, :]
    windows = hogs[image_index[:, None, None], cell_rows, cell_cols]
    return TrainingPairs(patches=patches.astype(np.float32), hogs=windows.astype(np.float32),
                         cell_size=cell_size, window_cells=window_cells)


def paired_vectors(pairs: TrainingPairs) -> np.ndarray:
    """(N, P*P + w*w*31) rows [patch; HOG], each half zero-mean and unit-norm (as HOGgles trains)."""
    n = len(pairs)
    return np.concatenate([zero_mean_unit_norm(pairs.patches.reshape(n, -1)),
                           zero_mean_unit_norm(pairs.hogs.reshape(n, -1))], axis=1)


def learn_paired_dictionary(pairs: TrainingPairs, num_atoms: int = 1024, lam: float = 0.02, *, batch_size: int = 512,
                            epochs: int = 1, coding_sweeps: int = 100, seed: int = 0,
                            log: Callable[[str], None] = print) -> PairedDictionary:
    """Sparse coding of the normalised pairs with non-negative codes: a `PairedDictionary`.

    scikit-learn's MiniBatchDictionaryLearning (online dictionary learning, Mairal et al. 2009,
    the algorithm of the SPAMS solver the original used) with alpha = `lam`, coordinate-descent
    codes constrained to be non-negative, `epochs` passes over the pairs in minibatches of
    `batch_size`, starting from `num_atoms` distinct training pairs (scaled to unit norm) rather
    than an SVD of the first minibatch. `epochs=0` keeps those random pairs as the atoms (the
    original's fast "pickrandom" mode; no scikit-learn needed). Each minibatch's codes get at most
    `coding_sweeps` coordinate-descent sweeps (sklearn's transform_max_iter; its default 1000 took
    3.7x the time of 100 for the same mean objective to 1e-6, measured with 1024 atoms). Every
    minibatch also updates all atoms (a cost independent of its size, about num_atoms^2 x dims),
    hence the large default batch. The measured times are in docs/shallow_inversion.md.
    """
    num_atoms = _positive_int(num_atoms, "num_atoms")
    coding_sweeps = _positive_int(coding_sweeps, "coding_sweeps")
    batch_size = _positive_int(batch_size, "batch_size")
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer; got {epochs!r}")
    if not (isinstance(lam, numbers.Real) and lam > 0):
        raise ValueError(f"lam must be a positive number; got {lam!r}")
    if len(pairs) < num_atoms:
        raise ValueError(f"{len(pairs)} training pairs cannot initialise {num_atoms} atoms; sample at least as many")
    data = paired_vectors(pairs)
    rng = np.random.default_rng(seed)
    atoms = data[rng.choice(len(data), num_atoms, replace=False)] / np.float32(np.sqrt(2.0))
    start = time.time()
    if epochs:
        atoms = _online_dictionary_learning(data, atoms, float(lam), batch_size, int(epochs), coding_sweeps, rng,
                                            seed, log)
    seconds = round(time.time() - start, 1)
    patch_pixels = pairs.patches.shape[1] * pairs.patches.shape[2]
    flat = pairs.patches.reshape(len(pairs), -1).astype(np.float64)
    centred_norms = np.linalg.norm(flat - flat.mean(axis=1, keepdims=True), axis=1)
    info = {"num_pairs": len(pairs), "epochs": int(epochs), "batch_size": batch_size, "coding_sweeps": coding_sweeps,
            "seed": seed, "seconds": seconds,
            "solver": "sklearn MiniBatchDictionaryLearning (cd, positive codes)" if epochs else "random training pairs"}
    return PairedDictionary(image_atoms=atoms[:, :patch_pixels], hog_atoms=atoms[:, patch_pixels:],
                            cell_size=pairs.cell_size, window_cells=pairs.window_cells, lam=float(lam),
                            patch_mean=float(flat.mean()), patch_contrast=float(centred_norms.mean()),
                            training_info=info)


def require_scikit_learn() -> None:
    """An ImportError saying how to install scikit-learn when it is missing (dictionary learning needs it):
    callers check before any computation starts."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError("learning a HOGgle dictionary needs scikit-learn: pip install 'jaxinv[hoggle]'") from None


def _online_dictionary_learning(data, initial_atoms, lam, batch_size, epochs, coding_sweeps, rng, seed, log):
    """`epochs` passes of scikit-learn's minibatch dictionary learning from `initial_atoms`: (K, D) atoms."""
    require_scikit_learn()
    from sklearn.decomposition import MiniBatchDictionaryLearning
    from sklearn.exceptions import ConvergenceWarning
    model = MiniBatchDictionaryLearning(n_components=len(initial_atoms), alpha=lam, batch_size=batch_size,
                                        fit_algorithm="cd", positive_code=True, dict_init=initial_atoms,
                                        transform_max_iter=coding_sweeps, random_state=seed)
    steps_per_epoch = -(-len(data) // batch_size)
    total = epochs * steps_per_epoch
    log(f"hoggle: {len(data)} pairs of {data.shape[1]} dims, {len(initial_atoms)} atoms, lambda {lam}, "
        f"{epochs} epoch(s) of {steps_per_epoch} minibatches of {batch_size}")
    start = time.time()
    step = 0
    with warnings.catch_warnings(), bars.bar(total, "minibatches", enabled=bars.wanted(None)) as shown:
        # Each minibatch's codes stop after `coding_sweeps`; a duality gap above sklearn's tight
        # tolerance is harmless for the dictionary update, so don't warn on every minibatch.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(epochs):
            order = rng.permutation(len(data))
            for first in range(0, len(data), batch_size):
                model.partial_fit(data[order[first:first + batch_size]])
                step += 1
                shown.update()
                if step == 1 or step == total or step % max(1, total // 20) == 0:
                    elapsed = time.time() - start
                    log(f"hoggle: minibatch {step}/{total} (epoch {epoch + 1}), {elapsed:.0f} s, "
                        f"about {elapsed / step * (total - step):.0f} s left")
    return model.components_.astype(np.float32)
