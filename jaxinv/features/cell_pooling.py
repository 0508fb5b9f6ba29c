"""Bilinear spatial binning of HOG (VLFeat's cell histograms): each pixel's value is shared between
the two nearest cells along each axis with triangular weights (cell j centred on pixel
(j + 1/2) cell - 1/2). The weights are banded, so pooling is written as two weighted sums per axis
over groups of `cell_size` rows rather than a dense (cells x pixels) matrix, with the transpose
(the backward pass) written out. `_pooling_matrix` is the dense definition the banded weights are
read off (and LBP's cell sums, `_pool_leading_axis`, use directly).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def _pooling_matrix(length: int, cell_size: int, num_cells: int) -> np.ndarray:
    """(num_cells, length) bilinear weights of pixels into cells, rounded as VLFeat rounds them.

    VLFeat's float cell coordinate (x + 0.5) / cell - 0.5 makes the weights differ slightly
    from cell to cell, so they are stored per pixel rather than as one convolution kernel.
    """
    x = np.arange(length)
    coordinate = ((x + 0.5) / cell_size - 0.5).astype(np.float32)
    left = np.floor(coordinate).astype(np.int64)
    right_weight = (coordinate - left.astype(np.float32)).astype(np.float32)
    left_weight = (1.0 - right_weight.astype(np.float64)).astype(np.float32)
    matrix = np.zeros((num_cells, length), np.float32)
    for cell, weight in ((left, left_weight), (left + 1, right_weight)):
        inside = (cell >= 0) & (cell < num_cells)
        matrix[cell[inside], x[inside]] = weight[inside]
    return matrix


def _pool_leading_axis(x, cell_size: int, num_cells: int):
    """Bilinear pooling of axis 0 into cells as one small matrix product (LBP's cells)."""
    weights = jnp.asarray(_pooling_matrix(x.shape[0], cell_size, num_cells), x.dtype)
    return jnp.einsum("cl,l...->c...", weights, x)


@functools.lru_cache(maxsize=None)
def _banded_pooling_weights(length: int, cell_size: int, num_cells: int) -> np.ndarray:
    """(2, num_cells + 1, cell) per-pixel weights of `_pooling_matrix` in banded form.

    Pixel x lies in group g = (x + cell // 2) // cell (with cell // 2 pixels of front padding)
    and goes to cells g - 1 (weight [0, g]) and g (weight [1, g]): each cell gathers two groups
    of `cell` pixels, so pooling is a reshape and two weighted sums, not a dense product.
    """
    dense = _pooling_matrix(length, cell_size, num_cells)
    offset, groups = cell_size // 2, num_cells + 1
    padded = np.zeros((num_cells + 2, groups * cell_size), np.float32)
    padded[1:-1, offset:offset + length] = dense
    x = np.arange(groups * cell_size).reshape(groups, cell_size)
    g = np.arange(groups)[:, None]
    return np.stack([padded[g, x], padded[g + 1, x]])


def _moved(x, axis):
    """Index tuple helper: `slice` objects placed at `axis` of an array with x.ndim dims."""
    def at(item):
        index = [slice(None)] * x.ndim
        index[axis] = item
        return tuple(index)
    return at


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _pool_axis(x, axis: int, cell_size: int, num_cells: int):
    """Bilinear pooling of `axis` into cells: pad, split into groups of `cell`, two weighted sums.

    Linear, with the transpose written out (`_unpool_axis`): autodiff of the unrolled slices
    would materialise one full-size padded array per pixel of a group.
    """
    length = x.shape[axis]
    weights = jnp.asarray(_banded_pooling_weights(length, cell_size, num_cells), x.dtype)
    groups, offset = num_cells + 1, cell_size // 2
    padding = [(0, 0)] * x.ndim
    padding[axis] = (offset, groups * cell_size - offset - length)
    padded = jnp.pad(x, padding)
    shape = (2,) + (1,) * axis + (groups,) + (1,) * (x.ndim - axis - 1)
    # Pixel r of every group as a strided slice, summed unrolled: XLA's CPU reduce over a
    # non-minor axis is slow and a reshape into groups stops it fusing the producer in.
    pixels = [jax.lax.slice_in_dim(padded, r, r + (groups - 1) * cell_size + 1, cell_size, axis)
              for r in range(cell_size)]
    sides = sum(p[None] * weights[:, :, r].reshape(shape) for r, p in enumerate(pixels))
    at = _moved(x, axis)
    return sides[0][at(slice(1, None))] + sides[1][at(slice(None, -1))]


def _unpool_axis(cells, axis: int, cell_size: int, length: int):
    """Transpose of `_pool_axis`: pixel x of group g receives its weights times cells g - 1 and g."""
    num_cells = cells.shape[axis]
    weights = jnp.asarray(_banded_pooling_weights(length, cell_size, num_cells), cells.dtype)
    groups, offset = num_cells + 1, cell_size // 2
    padding = [(0, 0)] * cells.ndim
    padding[axis] = (1, 1)
    padded, at = jnp.pad(cells, padding), _moved(cells, axis)
    shape = (groups, cell_size) + (1,) * (cells.ndim - axis - 1)
    grouped = (jnp.expand_dims(padded[at(slice(None, -1))], axis + 1) * weights[0].reshape(shape)
               + jnp.expand_dims(padded[at(slice(1, None))], axis + 1) * weights[1].reshape(shape))
    pixels = grouped.reshape(cells.shape[:axis] + (groups * cell_size,) + cells.shape[axis + 1:])
    return pixels[_moved(pixels, axis)(slice(offset, offset + length))]


def _pool_axis_fwd(x, axis, cell_size, num_cells):
    return _pool_axis(x, axis, cell_size, num_cells), x.shape[axis]


def _pool_axis_bwd(axis, cell_size, num_cells, length, cotangent):
    return (_unpool_axis(cotangent, axis, cell_size, length),)


_pool_axis.defvjp(_pool_axis_fwd, _pool_axis_bwd)
