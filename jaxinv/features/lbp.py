"""Uniform local binary patterns (LBP) as a JAX layer table, matching VLFeat's `vl_lbp`.

Definition (VLFeat 0.9.21, `VlLbpUniform`, checked against libvl by tests/test_lbp.py):

- input: an (H, W) or (H, W, 1) grey image, pixel values in [0, 255] (LBP only compares pixels,
  so any strictly increasing rescaling gives the same output); x is the column index, y the row index
  (pointing down).
- `codes`: the 8-bit code of each pixel of the 3x3 neighbourhood: bit b is set when neighbour b
  is strictly brighter than the centre, neighbours in the order E, SE, S, SW, W, NW, N, NE
  (bit 0 = (y, x + 1), bit 1 = (y + 1, x + 1), ..., bit 7 = (y - 1, x + 1)). The one-pixel
  border has no full neighbourhood; VLFeat leaves it out and its code here is -1.
- `patterns`: one-hot over 58 uniform patterns. A code whose bits, read circularly, hold one
  run of j ones (1 <= j <= 7) starting at bit i (bit i set, bit i - 1 clear) is pattern
  7 i + j - 1 (patterns 0..55); all-zero and all-one codes are pattern 56; every other code
  (more than one run) is pattern 57. The border rows and columns are all zero.
- `cells`: per-cell histograms, (H // cell, W // cell, 58). Each pixel's pattern is spread
  bilinearly over the four nearest cells, with cell coordinate (x + 0.5) / cell - 0.5 (cell c
  is centred on pixel coordinate (c + 0.5) cell - 0.5); weights falling outside the cell grid,
  including the rows and columns beyond the last whole cell, are dropped.
- `lbp`: each cell histogram h becomes sqrt(h) / (sqrt(sum h) + 1e-10), so every non-empty cell
  has unit L2 norm (a Hellinger / square-root normalisation).

LBP is non-differentiable by nature: the output is piecewise constant in the pixel values
(it only changes when two neighbouring pixels swap order), so its gradient with respect to the
image is zero almost everywhere. It is meant as a target for learned inverters, not for
gradient-based pre-images. `lbp` matches VLFeat to ~1e-7 in float32 (tests allow 1e-6).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.features.cell_pooling import _pool_leading_axis
from jaxinv.features.hog import check_cell_size
from jaxinv.engine.graph import Layer, run
from jaxinv.io.images import validate_image

NUM_PATTERNS = 58
CONSTANT_PATTERN = 56  # all-zero and all-one codes
OTHER_PATTERN = 57  # codes with more than one run of ones
NORM_OFFSET = 1e-10
# (dy, dx) of neighbour b for bit b: E, SE, S, SW, W, NW, N, NE.
NEIGHBOURS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


@functools.lru_cache(maxsize=None)
def uniform_pattern_table() -> np.ndarray:
    """(256,) int32: the uniform pattern index (0..57) of every 8-bit code."""
    table = np.full(256, OTHER_PATTERN, np.int32)
    for code in range(256):
        bits = [(code >> b) & 1 for b in range(8)]
        # Starts of runs of ones, reading the bits circularly (bits[-1] is bit 7).
        run_starts = [b for b in range(8) if bits[b] and not bits[b - 1]]
        if code in (0, 255):
            table[code] = CONSTANT_PATTERN
        elif len(run_starts) == 1:
            table[code] = 7 * run_starts[0] + sum(bits) - 1
    return table


def grey_image(image, *, cell_size: int):
    """Validated (H, W) or (H, W, 1) image as an (H, W) float array."""
    validate_lbp_input(image, cell_size)
    image = jnp.asarray(image)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        image = image.astype(jnp.float32)
    return image if image.ndim == 2 else image[..., 0]


def binary_codes(grey):
    """(H, W) -> (H, W) int32 8-bit codes (bit b: neighbour b brighter than the centre); -1 on the border."""
    height, width = grey.shape
    centre = grey[1:-1, 1:-1]
    code = jnp.zeros(centre.shape, jnp.int32)
    for bit, (dy, dx) in enumerate(NEIGHBOURS):
        neighbour = grey[1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx]
        code = code | (neighbour > centre).astype(jnp.int32) << bit
    return jnp.pad(code, 1, constant_values=-1)


def uniform_patterns(codes):
    """(H, W) codes -> (H, W, 58) one-hot uniform patterns; all zero where the code is -1."""
    table = jnp.asarray(uniform_pattern_table())
    patterns = jnp.where(codes >= 0, table[jnp.maximum(codes, 0)], -1)
    # one_hot of -1 is the zero vector.
    return jax.nn.one_hot(patterns, NUM_PATTERNS, dtype=jnp.float32)


def cell_histograms(patterns, *, cell_size: int):
    """(H, W, 58) -> (H // cell, W // cell, 58): bilinear pooling into whole cells.

    The same pooling as HOG's cells (VLFeat uses the same cell coordinate for both), with only
    the cells that lie wholly inside the image.
    """
    rows = _pool_leading_axis(patterns, cell_size, patterns.shape[0] // cell_size)
    return jnp.swapaxes(_pool_leading_axis(jnp.swapaxes(rows, 0, 1), cell_size, patterns.shape[1] // cell_size), 0, 1)


def normalised_histograms(cells):
    """sqrt(h) / (sqrt(sum h) + 1e-10) per cell."""
    return jnp.sqrt(cells) / (jnp.sqrt(jnp.sum(cells, axis=-1, keepdims=True)) + NORM_OFFSET)


def lbp_layers(cell_size: int = 16):
    """The LBP layer table: grey, codes, patterns, cells, lbp."""
    cell_size = check_cell_size(cell_size)
    return (
        Layer("grey", grey_image, {"cell_size": cell_size}),
        Layer("codes", binary_codes),
        Layer("patterns", uniform_patterns),
        Layer("cells", cell_histograms, {"cell_size": cell_size}),
        Layer("lbp", normalised_histograms),
    )


def validate_lbp_input(image, cell_size: int) -> None:
    """Shape checks (also under jit) plus finiteness for concrete arrays; needs one whole cell."""
    validate_image(image, min_height=cell_size, min_width=cell_size, channels=(1,), what="LBP input image")


def lbp(image, cell_size: int = 16):
    """VLFeat's uniform LBP (H // cell, W // cell, 58) of an (H, W) or (H, W, 1) grey image in [0, 255]."""
    cell_size = check_cell_size(cell_size)
    validate_lbp_input(image, cell_size)
    return _compiled_lbp(cell_size)(image)


@functools.lru_cache(maxsize=None)
def _compiled_lbp(cell_size: int):
    layers = lbp_layers(cell_size)
    return jax.jit(lambda image: run(layers, None, image)["lbp"])
