"""HOGgles (Vondrick et al., ICCV 2013): inverting HOG with a paired dictionary.

A paired dictionary holds K grey-patch atoms and K HOG atoms learned together by sparse coding,
so that the sparse code of a HOG window in the HOG atoms, applied to the patch atoms, gives a
patch that may have produced it. It is the HOG^-1 competitor ("HOGgle") of Dosovitskiy & Brox,
*Inverting visual representations with convolutional networks* (CVPR 2016), Table 2.

Units and shapes. Images are (H, W) grey in [0, 255]; HOG is VLFeat's UoCTTI HOG of
`jaxinv.features.hog`, (hogH, hogW, 31). A window is `window_cells` x `window_cells` cells
(5 x 5 in the original) and its pixel patch is P x P grey pixels, P = window_cells * cell_size
(40 for the defaults); `image_atoms` is (K, P*P) and `hog_atoms` (K, window_cells^2 * 31), both
flattened in C order from (P, P) and (window_cells, window_cells, 31).

Alignment. Cells r .. r+w-1 of a HOG map tile pixel rows r*cell .. (r+w)*cell - 1 (VLFeat
centres cell j on pixel (j + 1/2) cell - 1/2), and that block is the window's patch. Training
takes the cells from the HOG of the whole image, not the HOG of the patch alone, because that is
what inversion sees: the border cells and the block normalisation across neighbouring cells are
those of the full image. The HOG of the cells also depends on a ring one cell wide around the
block (normalisation blocks, bilinear pooling) which the patch leaves out. The original's patches
include that ring, (w + 2) cells square, because DPM's HOG drops the border cells; VLFeat's HOG
keeps them, so such a margin would leave the image at every border window.

Normalisation. Each half of a training pair is made zero-mean and unit-norm
(`zero_mean_unit_norm`); the concatenation [patch; HOG] (norm sqrt 2) is coded with non-negative
codes a minimising 0.5 ||x - D^T a||^2 + lam ||a||_1 (lam = 0.02 in the original; SPAMS, which
the original used, and scikit-learn share this objective), and the learned atoms (unit norm over
the concatenation) are split into the two halves.

Inversion (`invert_hog`; `invert_hogs` for a batch). Every window of the HOG map at a stride of one cell is normalised as in
training and coded against `hog_atoms` by the same non-negative lasso (`nonnegative_lasso`,
FISTA batched over windows in JAX); its patch `a @ image_atoms` is placed on the window's pixel
block; the patches are blended with a Gaussian weight (sigma 9 px, centred on the patch) and
every pixel divided by its summed weight (`blend_patches`). Pixel units: the reconstructed
patches are in the zero-mean unit-norm units of training, and `pixel_mapping` chooses how they
become grey levels:

- "training" (default): grey = patch_mean + patch_contrast * value, with the training patches'
  mean grey level and their mean L2 norm after removing each patch's mean. Nothing about the
  inverted image is used, and a code shrunk by the lasso (an uncertain window) stays near grey.
- "stretch": the blended image's range is stretched to [0, 255], as the original code does
  (to [0, 1]); higher contrast (on the held-out 64x64 ImageNet samples its image-space error
  was slightly lower, 0.567 against 0.581; see docs/shallow_inversion.md).

Both are clipped to [0, 255]. Pixels past the last cell's block (H not a multiple of the cell
size) are covered by no window and repeat the nearest covered row or column.

Sampling training pairs and learning a dictionary are `jaxinv.inverters.hoggle_learning`
(scikit-learn's MiniBatchDictionaryLearning, the optional extra `jaxinv[hoggle]`); saving and
inversion need only numpy and JAX.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import features
from jaxinv.io import cache, outputs, paths
from jaxinv.features.hog import check_cell_size

HOG_DIMS = 31
GAUSSIAN_SIGMA = 9.0
PIXEL_MAPPINGS = ("training", "stretch")
FORMAT = "jaxinv-hoggle-1"
PAPER_ERROR = 0.61  # Dosovitskiy & Brox, CVPR 2016, Table 2, HOGgles (256x256 images)


def default_dictionary_path(image_size: int = 64) -> str:
    """Where the dictionary trained on image_size x image_size images lives by default:
    <cache root>/hoggle/dictionary.npz for 64 (the evaluation size of docs/shallow_inversion.md), dictionary-<size>.npz
    otherwise (`jaxinv.io.cache.cache_root`: ~/.cache/jaxinv unless $XDG_CACHE_HOME says otherwise)."""
    name = "dictionary.npz" if int(image_size) == 64 else f"dictionary-{int(image_size)}.npz"
    return os.path.join(cache.cache_root(), "hoggle", name)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True, eq=False)
class PairedDictionary:
    """K paired atoms: grey patches `image_atoms` (K, P*P) and HOG windows `hog_atoms` (K, w*w*31).

    P = window_cells * cell_size pixels. `lam` is the lasso weight the atoms were learned with
    (and inversion uses). `patch_mean` and `patch_contrast` (grey levels) are the training
    patches' mean and mean L2 norm after removing each patch's mean: the "training" pixel mapping.
    `training_info` is a JSON-serialisable record of how the dictionary was made.
    """
    image_atoms: np.ndarray
    hog_atoms: np.ndarray
    cell_size: int
    window_cells: int
    lam: float
    patch_mean: float
    patch_contrast: float
    training_info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        cell_size = check_cell_size(self.cell_size)
        window_cells = _positive_int(self.window_cells, "window_cells")
        image_atoms = np.asarray(self.image_atoms, np.float32)
        hog_atoms = np.asarray(self.hog_atoms, np.float32)
        patch_pixels = (window_cells * cell_size) ** 2
        hog_dims = window_cells * window_cells * HOG_DIMS
        if image_atoms.ndim != 2 or image_atoms.shape[1] != patch_pixels:
            raise ValueError(f"image_atoms must have shape (K, {patch_pixels}) for {window_cells}x{window_cells} "
                             f"cells of {cell_size} px; got {image_atoms.shape}")
        if hog_atoms.ndim != 2 or hog_atoms.shape[1] != hog_dims:
            raise ValueError(f"hog_atoms must have shape (K, {hog_dims}) for {window_cells}x{window_cells} "
                             f"cells of {HOG_DIMS} dims; got {hog_atoms.shape}")
        if image_atoms.shape[0] != hog_atoms.shape[0] or image_atoms.shape[0] == 0:
            raise ValueError(f"image_atoms and hog_atoms must hold the same number K > 0 of atoms; got "
                             f"{image_atoms.shape[0]} and {hog_atoms.shape[0]}")
        if not (np.all(np.isfinite(image_atoms)) and np.all(np.isfinite(hog_atoms))):
            raise ValueError("dictionary atoms contain non-finite values")
        for name in ("lam", "patch_mean", "patch_contrast"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or (name != "patch_mean" and value <= 0):
                raise ValueError(f"{name} must be a {'finite' if name == 'patch_mean' else 'positive'} number; "
                                 f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "image_atoms", image_atoms)
        object.__setattr__(self, "hog_atoms", hog_atoms)
        object.__setattr__(self, "cell_size", cell_size)
        object.__setattr__(self, "window_cells", window_cells)

    @property
    def num_atoms(self) -> int:
        return self.image_atoms.shape[0]

    @property
    def patch_size(self) -> int:
        """P: the side of a window's pixel patch."""
        return self.window_cells * self.cell_size

    def save(self, path: str) -> str:
        """Writes the dictionary to `path` as .npz, atomically (temporary file + rename)."""
        arrays = {
            "format": np.array(FORMAT), "image_atoms": self.image_atoms, "hog_atoms": self.hog_atoms,
            "cell_size": np.array(self.cell_size), "window_cells": np.array(self.window_cells),
            "lam": np.array(self.lam), "patch_mean": np.array(self.patch_mean),
            "patch_contrast": np.array(self.patch_contrast),
            "training_info": np.array(json.dumps(self.training_info)),
        }

        def write(tmp):
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
                np.savez(f, **arrays)
        return outputs.atomic_write(path, write, ".npz")

    @classmethod
    def load(cls, path: str) -> "PairedDictionary":
        """Reads a dictionary written by `save`; FileNotFoundError if missing, ValueError if malformed."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"HOGgle dictionary not found: {path} (train one with "
                                    f"`jaxinv-train-hoggle --output={path}`)")
        paths.input_file(path, "HOGgle dictionary")  # a pipe or a folder: ValueError
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = {key: data[key] for key in data.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path} is not a HOGgle dictionary (.npz): {e}") from None
        if str(stored.get("format", "")) != FORMAT:
            raise ValueError(f"{path} is not a HOGgle dictionary: no format marker {FORMAT!r}")
        fields = ("image_atoms", "hog_atoms", "cell_size", "window_cells", "lam", "patch_mean",
                  "patch_contrast", "training_info")
        missing = [key for key in fields if key not in stored]
        if missing:
            raise ValueError(f"{path} is not a complete HOGgle dictionary: missing {', '.join(missing)}")
        try:
            info = json.loads(str(stored["training_info"]))
            return cls(image_atoms=stored["image_atoms"], hog_atoms=stored["hog_atoms"],
                       cell_size=int(stored["cell_size"]), window_cells=int(stored["window_cells"]),
                       lam=float(stored["lam"]), patch_mean=float(stored["patch_mean"]),
                       patch_contrast=float(stored["patch_contrast"]), training_info=info)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path} holds a malformed HOGgle dictionary: {e}") from None


def zero_mean_unit_norm(vectors, eps: float = 1e-8) -> np.ndarray:
    """Each row of (N, D) minus its mean, divided by its L2 norm (a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float32)
    centred = vectors - vectors.mean(axis=-1, keepdims=True)
    return centred / (np.linalg.norm(centred, axis=-1, keepdims=True) + eps)


@functools.partial(jax.jit, static_argnames=("iterations",))
def _fista_nonnegative(atoms, targets, lam, iterations: int):
    gram = atoms @ atoms.T
    correlation = targets @ atoms.T
    # The gradient of 0.5 ||y - a D||^2 is Lipschitz with the largest eigenvalue of D D^T.
    step = 1.0 / jnp.maximum(jnp.linalg.eigvalsh(gram)[-1], 1e-12)

    def body(_, state):
        codes, momentum_point, t = state
        gradient = momentum_point @ gram - correlation
        new_codes = jnp.maximum(momentum_point - step * (gradient + lam), 0.0)
        new_t = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum_point = new_codes + ((t - 1.0) / new_t) * (new_codes - codes)
        return new_codes, momentum_point, new_t

    zeros = jnp.zeros((targets.shape[0], atoms.shape[0]), targets.dtype)
    codes, _, _ = jax.lax.fori_loop(0, iterations, body, (zeros, zeros, jnp.asarray(1.0, targets.dtype)))
    return codes


def nonnegative_lasso(atoms, targets, lam: float, *, iterations: int = 500) -> np.ndarray:
    """Codes a >= 0 minimising 0.5 ||y - a @ atoms||^2 + lam * sum(a) for every row y of `targets`.

    atoms (K, D), targets (N, D) -> codes (N, K): FISTA (Beck & Teboulle 2009) with a projection
    on a >= 0, `iterations` steps of 1 / L for all rows at once (one jit-compiled loop).
    """
    atoms = np.asarray(atoms, np.float32)
    targets = np.asarray(targets, np.float32)
    if atoms.ndim != 2 or targets.ndim != 2 or atoms.shape[1] != targets.shape[1]:
        raise ValueError(f"atoms (K, D) and targets (N, D) must share D; got {atoms.shape} and {targets.shape}")
    return np.asarray(_fista_nonnegative(atoms, targets, np.float32(lam), _positive_int(iterations, "iterations")))


def gaussian_window(size: int, sigma: float = GAUSSIAN_SIGMA) -> np.ndarray:
    """(size, size) Gaussian weights exp(-r^2 / (2 sigma^2)) about the patch centre, peak 1."""
    axis = np.arange(size) - (size - 1) / 2.0
    profile = np.exp(-axis ** 2 / (2.0 * sigma ** 2))
    return np.outer(profile, profile).astype(np.float32)


def blend_patches(patches, cell_size: int, image_shape: tuple[int, int], sigma: float = GAUSSIAN_SIGMA) -> np.ndarray:
    """Gaussian-weighted average of the window patches (rows, cols, P, P) placed every cell: (H, W).

    Patch (r, c) covers pixels r*cell .. r*cell + P - 1 (and likewise for columns); each pixel is
    the sum of weight x patch over the patches covering it divided by the sum of their weights.
    Rows or columns past the covered block repeat the last covered one.
    """
    patches = np.asarray(patches, np.float32)
    rows, cols, size = patches.shape[0], patches.shape[1], patches.shape[2]
    if patches.ndim != 4 or patches.shape[3] != size or size % cell_size:
        raise ValueError(f"patches must have shape (rows, cols, P, P) with P a multiple of cell_size {cell_size}; "
                         f"got {patches.shape}")
    cells = size // cell_size
    weight = gaussian_window(size, sigma)
    # Split each patch into its cells x cells blocks and add block (i, j) to cell (r + i, c + j).
    weighted = (patches * weight).reshape(rows, cols, cells, cell_size, cells, cell_size)
    weights = np.broadcast_to(weight.reshape(cells, cell_size, cells, cell_size),
                              (rows, cols, cells, cell_size, cells, cell_size))
    numerator = np.zeros((rows + cells - 1, cols + cells - 1, cell_size, cell_size), np.float64)
    denominator = np.zeros_like(numerator)
    for i in range(cells):
        for j in range(cells):
            numerator[i:i + rows, j:j + cols] += weighted[:, :, i, :, j, :]
            denominator[i:i + rows, j:j + cols] += weights[:, :, i, :, j, :]
    blended = numerator / denominator
    blended = blended.transpose(0, 2, 1, 3).reshape((rows + cells - 1) * cell_size, (cols + cells - 1) * cell_size)
    height, width = image_shape
    blended = blended[:height, :width]
    blended = np.pad(blended, ((0, height - blended.shape[0]), (0, width - blended.shape[1])), mode="edge")
    return blended.astype(np.float32)


def hog_windows(hog_code, window_cells: int) -> np.ndarray:
    """(hogH, hogW, 31) -> (rows, cols, w*w*31): every w x w window at a stride of one cell, flattened."""
    hog_code = np.asarray(hog_code, np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(hog_code, (window_cells, window_cells), axis=(0, 1))
    rows, cols = windows.shape[:2]
    # sliding_window_view puts the window axes last: (rows, cols, 31, w, w) -> (rows, cols, w, w, 31).
    return np.ascontiguousarray(windows.transpose(0, 1, 3, 4, 2)).reshape(rows, cols, -1)


def invert_hog(dictionary: PairedDictionary, hog_code, image_shape: tuple[int, int], *,
               pixel_mapping: str = "training", sigma: float = GAUSSIAN_SIGMA,
               lasso_iterations: int = 500) -> np.ndarray:
    """HOGgle pre-image: the (H, W) grey image in [0, 255] whose HOG is `hog_code` (hogH, hogW, 31).

    `image_shape` (H, W) is the size of the image the HOG was computed from (it must give the
    same number of cells); `pixel_mapping` is "training" or "stretch" (module docstring).
    """
    hog_code = np.asarray(hog_code, np.float32)
    if hog_code.ndim != 3:
        raise ValueError(f"hog_code must have shape (hogH, hogW, {HOG_DIMS}); got {hog_code.shape}")
    return invert_hogs(dictionary, hog_code[None], image_shape, pixel_mapping=pixel_mapping, sigma=sigma,
                       lasso_iterations=lasso_iterations)[0]


def invert_hogs(dictionary: PairedDictionary, hog_codes, image_shape: tuple[int, int], *,
                pixel_mapping: str = "training", sigma: float = GAUSSIAN_SIGMA,
                lasso_iterations: int = 500) -> np.ndarray:
    """`invert_hog` of a batch (B, hogH, hogW, 31) of HOG maps of (H, W) images: (B, H, W) in [0, 255].

    The windows of all B maps are coded in one lasso solve, which costs as much per window as
    one image's solve does in all (the dictionary's Gram matrix dominates): much faster than a
    loop over images.
    """
    if pixel_mapping not in PIXEL_MAPPINGS:
        raise ValueError(f"pixel_mapping must be one of {', '.join(PIXEL_MAPPINGS)}; got {pixel_mapping!r}")
    hog_codes = np.asarray(hog_codes, np.float32)
    if hog_codes.ndim != 4 or hog_codes.shape[3] != HOG_DIMS or len(hog_codes) == 0:
        raise ValueError(f"hog_code must have shape (hogH, hogW, {HOG_DIMS}) (a batch: (B, hogH, hogW, {HOG_DIMS})); "
                         f"got {hog_codes.shape[1:] if hog_codes.ndim == 4 else hog_codes.shape}")
    if not np.all(np.isfinite(hog_codes)):
        raise ValueError("hog_code contains non-finite values (NaN or inf)")
    if len(image_shape) != 2:
        raise ValueError(f"image_shape must be (H, W); got {image_shape!r}")
    height, width = (int(s) for s in image_shape)
    cells = hog_codes.shape[1:3]
    expected = features.hog_shape(height, width, dictionary.cell_size)
    if cells != expected:
        raise ValueError(f"hog_code has {cells[0]}x{cells[1]} cells but an image of {height}x{width} "
                         f"gives {expected[0]}x{expected[1]} cells of {dictionary.cell_size} px")
    w = dictionary.window_cells
    if min(cells) < w:
        raise ValueError(f"hog_code of {cells[0]}x{cells[1]} cells is smaller than the dictionary's {w}x{w}-cell window")
    windows = np.stack([hog_windows(code, w) for code in hog_codes])
    batch, rows, cols = windows.shape[:3]
    codes = nonnegative_lasso(dictionary.hog_atoms, zero_mean_unit_norm(windows.reshape(batch * rows * cols, -1)),
                              dictionary.lam, iterations=lasso_iterations)
    size = dictionary.patch_size
    out = np.empty((batch, height, width), np.float32)
    for i, image_codes in enumerate(codes.reshape(batch, rows * cols, -1)):
        patches = (image_codes @ dictionary.image_atoms).reshape(rows, cols, size, size)
        blended = blend_patches(patches, dictionary.cell_size, (height, width), sigma)
        if pixel_mapping == "training":
            grey = dictionary.patch_mean + dictionary.patch_contrast * blended
        else:
            low, high = blended.min(), blended.max()
            # Divided before scaling: the maximum maps to (high - low) / (high - low) * 255 = 255 exactly
            # (multiplying by 255 / (high - low) could round it to 254.99998).
            grey = (blended - low) / (high - low) * 255.0 if high > low else np.full_like(blended, 128.0)
        out[i] = np.clip(grey, 0.0, 255.0)
    return out
