"""HOG (UoCTTI / DPM v5 variant, as VLFeat's `vl_hog`) and HOGb as differentiable JAX layer tables.

Input images are (H, W) grey or (H, W, C) with any C >= 1, pixel values in [0, 255] (the
1e-4 block-norm floor makes HOG depend on this range). The output is (hogH, hogW, 3n + 4) for
n orientations (31 for n = 9), in VLFeat's order: 2n directed orientations, n undirected
orientations, 4 texture components (27 dims without texture). hogH = (H + cell/2) // cell.

The graph reproduces `vl_hog_put_image` + `vl_hog_extract` step by step:

- `gradients`: central differences I[x+1] - I[x-1] (no 1/2) at interior pixels, zero on the
  one-pixel border; for colour images the channel with the largest gradient norm wins.
- `orientations`: 2n directed channels. HOG puts the gradient norm in the directed bin k*pi/n
  with largest |<g, (cos, sin)>| (bin k + n if the projection is negative; y points down).
  HOGb (`vl_hog_set_use_bilinear_orientation_assignments`) gives 1 - t of it to that bin and
  t to the second best, t = acos(cosine to the best bin) / (pi / n), as libvl 0.9.21 does.
- `cells`: bilinear spatial pooling, cell coordinate (x + 0.5) / cell - 0.5. Separable and
  banded: with cell // 2 pixels of padding, pixel x lies in group g = (x + cell // 2) // cell and
  feeds only cells g - 1 and g, so each axis is a reshape into groups of `cell` pixels and two
  weighted sums (VLFeat's per-pixel float weights kept), with its transpose written out.
- `block_norms`: every cell histogram divided by the L2 norms (+1e-4 under the root) of the
  undirected histograms of the four 2x2 blocks containing it; outside the cell grid the cell
  energies are edge-replicated, as VLFeat clamps indices.
- `hog`: components clamped at 0.2 and summed over the 4 blocks times 0.5 (directed, and the
  undirected sum of bins k and k + n); texture = per-block sum of the clamped undirected
  components over orientations, times 1/sqrt(18).

Bin assignments are piecewise constant (no gradient flows through them); gradients flow
through the gradient norms, HOGb's interpolation weights, pooling and normalisation.
`hog` matches VLFeat to ~1e-7 in float32 (tests allow 1e-5) and is jit-compiled per
configuration; `hog_layers` gives the table for tapping stages with `jaxinv.engine.graph.run`.
`hog` fuses `orientations` and `cells` (`_pooled_gate`: rows pooled straight from each pixel's
values and bins, so the (H, W, 2n) map is never written; equal to the table to ~1e-7, tested).
Written for XLA's CPU backend: measured choices (unrolled sums, materialised bins, custom
transposes) are explained where they are made.

`approximate_hog` swaps the orientation stage for the ReLU filter bank of the papers'
approximate HOG, max(0, <g, u_k> - cos(2 pi / 2n) ||g||): a smooth stand-in for inversion
experiments, not a reproduction of VLFeat.
"""
from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.engine.graph import Layer, run
from jaxinv.features.cell_pooling import _banded_pooling_weights, _pool_axis, _unpool_axis
from jaxinv.io.images import validate_image

CLAMP = 0.2
NORM_FLOOR = 1e-4
TEXTURE_SCALE = np.float32(1.0) / np.sqrt(np.float32(18.0))


def check_cell_size(cell_size) -> int:
    if isinstance(cell_size, bool) or not isinstance(cell_size, numbers.Integral) or cell_size <= 0:
        raise ValueError(f"cell_size must be a positive integer; got {cell_size!r}")
    return int(cell_size)


def hog_shape(height: int, width: int, cell_size: int) -> tuple[int, int]:
    """Number of cells (hogH, hogW): the last cell is at least half inside the image."""
    return (height + cell_size // 2) // cell_size, (width + cell_size // 2) // cell_size


def _as_float_image(image):
    image = jnp.asarray(image)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        image = image.astype(jnp.float32)
    return image if image.ndim == 3 else image[:, :, None]


def _sum_over(x, axis: int):
    """Sum over a short `axis` as a chain of adds of slices, in index order.

    XLA's CPU backend hands small reductions to YNNPACK, which is slow on these shapes (several
    times so under vmap, as in the solver); adds of slices stay in one elementwise loop.
    """
    terms = [jax.lax.index_in_dim(x, i, axis, keepdims=False) for i in range(x.shape[axis])]
    return functools.reduce(jnp.add, terms)


def _safe_sqrt(x):
    """sqrt with a zero (not NaN) derivative at 0, where the gradient vanishes."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def image_gradients(image):
    """(H, W[, C]) -> (H, W, 2) central-difference gradient (gx, gy) of the strongest channel."""
    image = _as_float_image(image)
    # The [-1, 0, 1] filters as shifted differences (much faster than a depthwise conv on CPU).
    gx = image[1:-1, 2:] - image[1:-1, :-2]
    gy = image[2:, 1:-1] - image[:-2, 1:-1]
    # Border pixels have no central difference: VLFeat leaves them out.
    # The first channel of largest energy wins (strict >, as VLFeat), unrolled over channels.
    best_gx, best_gy = gx[..., 0], gy[..., 0]
    best_energy = jax.lax.stop_gradient(best_gx * best_gx + best_gy * best_gy)
    for c in range(1, image.shape[2]):
        energy = jax.lax.stop_gradient(gx[..., c] * gx[..., c] + gy[..., c] * gy[..., c])
        stronger = energy > best_energy
        best_gx, best_gy = jnp.where(stronger, gx[..., c], best_gx), jnp.where(stronger, gy[..., c], best_gy)
        best_energy = jnp.where(stronger, energy, best_energy)
    return jnp.pad(jnp.stack([best_gx, best_gy], axis=-1), ((1, 1), (1, 1), (0, 0)))


def _bin_directions(num_orientations: int, dtype):
    """Unit vectors of the undirected bins k*pi/n in the working precision (VLFeat stores floats)."""
    angles = np.arange(num_orientations) * np.pi / num_orientations
    return jnp.asarray(np.cos(angles), dtype), jnp.asarray(np.sin(angles), dtype)


def _rounded(product):
    """`product`, kept from being fused into an FMA by the compiler.

    XLA's CPU backend contracts a*b + c*d into fma(a, b, c*d), which rounds differently from
    VLFeat; acos amplifies that last bit near alignment (HOGb weights off by 1e-3). LLVM
    cannot fuse through a select, and this one never changes a finite value. Also used for the
    block-normalisation products, whose contraction would otherwise depend on how XLA fuses
    each graph (HOG with and without texture must agree bit for bit).
    """
    return jnp.where(jnp.isnan(product), 0.0, product)


def _directed_assignment(gradients, num_orientations):
    """Gradient norm, angle to and unit vector of the best directed bin, best and second best bins.

    Bins are ranked by |<g, (cos, sin)>| over the n undirected bins, keeping the first of equal
    scores, exactly as VLFeat's insertion loop (unrolled over the n bins: elementwise planes,
    which XLA fuses far better than reductions over a short channel axis). A negative
    projection selects the opposite directed bin k + n. Bin -1 means none (zero gradient).
    """
    gx, gy = gradients[..., 0], gradients[..., 1]
    norm = _safe_sqrt(_rounded(gx * gx) + _rounded(gy * gy))
    cos, sin = _bin_directions(num_orientations, gradients.dtype)
    fixed_gx, fixed_gy = jax.lax.stop_gradient(gx), jax.lax.stop_gradient(gy)
    best_score = second_score = jnp.zeros_like(gx)
    best_bin = second_bin = jnp.full(gx.shape, -1, jnp.int32)
    best_x = best_y = jnp.zeros_like(gx)
    for k in range(num_orientations):
        # VLFeat projects the unnormalised gradient; rounding must match for HOGb.
        projection = _rounded(fixed_gx * cos[k]) + _rounded(fixed_gy * sin[k])
        negative = projection < 0
        score, directed_bin = jnp.abs(projection), jnp.where(negative, k + num_orientations, k)
        sign = jnp.where(negative, -1.0, 1.0).astype(gx.dtype)
        is_best = score > best_score
        is_second = ~is_best & (score > second_score)
        second_score = jnp.where(is_best, best_score, jnp.where(is_second, score, second_score))
        second_bin = jnp.where(is_best, best_bin, jnp.where(is_second, directed_bin, second_bin))
        best_score = jnp.where(is_best, score, best_score)
        best_bin = jnp.where(is_best, directed_bin, best_bin)
        best_x, best_y = jnp.where(is_best, sign * cos[k], best_x), jnp.where(is_best, sign * sin[k], best_y)
    # VLFeat's angle to the best bin: acos of the float cosine (which rounding must match).
    best_angle = jnp.arccos(jnp.minimum(best_score / jnp.maximum(jax.lax.stop_gradient(norm), 1e-10), 1.0))
    return norm, best_angle, (best_x, best_y), best_bin, second_bin


def _angle_to_bin(gradients, bin_direction, best_angle):
    """Angle between the gradient and the best bin's unit vector `bin_direction`.

    The value is VLFeat's `best_angle` (acos of the float projection). acos' is infinite where
    a gradient is aligned with a bin, so the derivative is taken from the exact angle
    atan2(|g x b|, <g, b>) instead, through its linearisation (no transcendental to evaluate).
    """
    gx, gy = gradients[..., 0], gradients[..., 1]
    bx, by = bin_direction
    cross, dot = jnp.abs(gx * by - gy * bx), gx * bx + gy * by
    fixed_cross, fixed_dot = jax.lax.stop_gradient(cross), jax.lax.stop_gradient(dot)
    squared_norm = jnp.maximum(fixed_cross * fixed_cross + fixed_dot * fixed_dot, 1e-30)
    # d atan2(c, d) = (d dc - c dd) / (c^2 + d^2)
    linear = (fixed_dot * cross - fixed_cross * dot) / squared_norm
    return jax.lax.stop_gradient(best_angle) + (linear - jax.lax.stop_gradient(linear))


def _materialised(bins, num_bins: int):
    """`bins` (in [-1, num_bins)) unchanged, through an integer remainder.

    XLA's CPU fusion deems a remainder expensive and will not copy it into consumers, so the
    bins are computed once and stored; otherwise the n-bin search is fused into every channel
    of every consumer and repeated 2n times.
    """
    return jax.lax.rem(bins, jnp.int32(num_bins + 1))


def _gate_forward(values, bins, num_bins):
    """Sum over the (value, bin) pairs of value * one_hot(bin): (H, W) planes -> (H, W, num_bins)."""
    channels = jnp.arange(num_bins)
    return sum(jnp.where(b[..., None] == channels, v[..., None], 0) for v, b in zip(values, bins))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _gate(values, bins, num_bins):
    """Each pixel's values put into its bins (bin -1: nowhere); linear in `values`.

    The backward pass reads one channel per value instead of differentiating the one-hot
    products, and materialises the integer bins once (XLA would otherwise fuse the bin search
    into every channel of every consumer and repeat it 2n times).
    """
    return _gate_forward(values, bins, num_bins)


def _gate_fwd(values, bins, num_bins):
    bins = tuple(_materialised(b, num_bins) for b in bins)
    return _gate_forward(values, bins, num_bins), bins


def _gate_bwd(num_bins, bins, cotangent):
    bins = tuple(_materialised(b, num_bins) for b in bins)
    channels = jnp.arange(num_bins)
    picked = tuple(_sum_over(jnp.where(b[..., None] == channels, cotangent, 0), -1) for b in bins)
    return picked, tuple(np.zeros(b.shape, jax.dtypes.float0) for b in bins)


_gate.defvjp(_gate_fwd, _gate_bwd)


def _gate_inputs(gradients, num_orientations: int, bilinear: bool):
    """Per-pixel values and their directed bins: (norm,), (best,) for HOG; HOGb gives 1 - t of
    the norm to the best bin and t to the second, t = angle to the best bin / (pi / n)."""
    norm, best_angle, best_direction, best_bin, second_bin = _directed_assignment(gradients, num_orientations)
    if not bilinear:
        return (norm,), (best_bin,)
    second_weight = _angle_to_bin(gradients, best_direction, best_angle) / (np.pi / num_orientations)
    return (norm * (1 - second_weight), norm * second_weight), (best_bin, second_bin)


def oriented_channels(gradients, *, num_orientations: int, bilinear: bool):
    """(H, W, 2) gradients -> (H, W, 2n) gradient norms gated into directed orientation bins."""
    return _gate(*_gate_inputs(gradients, num_orientations, bilinear), 2 * num_orientations)


def cell_histograms(channels, *, cell_size: int):
    """(H, W, 2n) oriented channels -> (hogH, hogW, 2n) bilinearly pooled cell histograms."""
    num_rows, num_cols = hog_shape(channels.shape[0], channels.shape[1], cell_size)
    return _pool_axis(_pool_axis(channels, 0, cell_size, num_rows), 1, cell_size, num_cols)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _pooled_gate(values, bins, num_bins: int, cell_size: int, num_rows: int, num_cols: int):
    """`cell_histograms(_gate(values, bins))` without the (H, W, 2n) map: the rows are pooled
    straight from the per-pixel values and bins (padded, which is cheap for (H, W) planes), so
    XLA fuses the gate into the row sums and never writes the map (`hog` uses this; the layer
    table keeps the map for tapping)."""
    length, groups, offset = values[0].shape[0], num_rows + 1, cell_size // 2
    padding = ((offset, groups * cell_size - offset - length), (0, 0))
    values = [jnp.pad(v, padding) for v in values]
    bins = [jnp.pad(b, padding, constant_values=-1) for b in bins]
    weights = _banded_pooling_weights(length, cell_size, num_rows)
    channels = jnp.arange(num_bins)

    def side(k):  # sum over the pixels r of each group, weighted for side k (0: left, 1: right)
        total = 0
        for r in range(cell_size):
            w = jnp.asarray(weights[k, :, r, None], values[0].dtype)
            for v, b in zip(values, bins):
                pick = lambda x: jax.lax.slice_in_dim(x, r, r + (groups - 1) * cell_size + 1, cell_size, 0)
                # Gated, then weighted, as the table's map * weight: both then round alike.
                total = total + jnp.where(pick(b)[..., None] == channels, pick(v)[..., None], 0) * w[..., None]
        return total

    rows = side(0)[1:] + side(1)[:-1]
    return _pool_axis(rows, 1, cell_size, num_cols)


def _pooled_gate_fwd(values, bins, num_bins, cell_size, num_rows, num_cols):
    bins = tuple(_materialised(b, num_bins) for b in bins)
    return _pooled_gate(values, bins, num_bins, cell_size, num_rows, num_cols), bins


def _pooled_gate_bwd(num_bins, cell_size, num_rows, num_cols, bins, cotangent):
    """Each value gets the cotangents of its bin in the 2 x 2 cells around it, bilinearly: the
    columns are unpooled (small), then every pixel gathers its bin from its two cell rows."""
    bins = tuple(_materialised(b, num_bins) for b in bins)
    height, width = bins[0].shape
    rows = jnp.pad(_unpool_axis(cotangent, 1, cell_size, width), ((1, 1), (0, 0), (0, 0)))
    weights = _banded_pooling_weights(height, cell_size, num_rows)
    offset = cell_size // 2
    # Row y of group g = (y + offset) // cell meets cells g - 1 (padded row g) and g (row g + 1).
    group = (np.arange(height) + offset) // cell_size
    start = jnp.asarray(((group[:, None] * width + np.arange(width)) * num_bins).astype(np.int32))
    pixel_weights = [jnp.asarray(weights[k].reshape(-1)[offset:offset + height, None], rows.dtype) for k in (0, 1)]
    flat = rows.reshape(-1)

    def picked(b):
        index = start + jnp.maximum(b, 0)
        left, right = (jnp.take(flat, index + k * width * num_bins, mode="clip") for k in (0, 1))
        return jnp.where(b >= 0, pixel_weights[0] * left + pixel_weights[1] * right, 0)

    return tuple(picked(b) for b in bins), tuple(np.zeros(b.shape, jax.dtypes.float0) for b in bins)


_pooled_gate.defvjp(_pooled_gate_fwd, _pooled_gate_bwd)


def _hog_graph(image, cell_size: int, bilinear: bool, texture: bool, num_orientations: int = 9):
    """The layer table's composition with the orientation and cell stages fused (`_pooled_gate`)."""
    gradients = image_gradients(image)
    num_rows, num_cols = hog_shape(gradients.shape[0], gradients.shape[1], cell_size)
    values, bins = _gate_inputs(gradients, num_orientations, bilinear)
    cells = _pooled_gate(values, bins, 2 * num_orientations, cell_size, num_rows, num_cols)
    normalised = block_normalised(cells, num_orientations=num_orientations)
    return uoctti_components(normalised, num_orientations=num_orientations, texture=texture)


def block_normalised(cells, *, num_orientations: int):
    """(hogH, hogW, 2n) -> (hogH, hogW, 4, 2n): each cell divided by the norms of its 4 blocks."""
    undirected = cells[..., :num_orientations] + cells[..., num_orientations:]
    energy = jnp.pad(_sum_over(_rounded(undirected * undirected), -1), 1, mode="edge")
    block_energy = energy[:-1, :-1] + energy[:-1, 1:] + energy[1:, :-1] + energy[1:, 1:]
    inverse_norm = jax.lax.rsqrt(block_energy + NORM_FLOOR)
    # Block order as VLFeat: upper-left, upper-right, lower-left, lower-right.
    factors = jnp.stack([inverse_norm[:-1, :-1], inverse_norm[:-1, 1:],
                         inverse_norm[1:, :-1], inverse_norm[1:, 1:]], axis=-1)
    return _outer(factors, cells)


@jax.custom_vjp
def _outer(a, b):
    """(..., m), (..., n) -> (..., m, n) products, with the reductions of the backward pass
    unrolled (`_sum_over`) instead of left to XLA."""
    return _rounded(a[..., :, None] * b[..., None, :])


def _outer_fwd(a, b):
    return _outer(a, b), (a, b)


def _outer_bwd(residuals, cotangent):
    a, b = residuals
    return _sum_over(cotangent * b[..., None, :], -1), _sum_over(cotangent * a[..., :, None], -2)


_outer.defvjp(_outer_fwd, _outer_bwd)


def uoctti_components(normalised, *, num_orientations: int, texture: bool):
    """(hogH, hogW, 4, 2n) -> (hogH, hogW, 3n [+ 4]): clamp, average over blocks, texture."""
    directed = jnp.minimum(normalised, CLAMP)
    undirected = jnp.minimum(normalised[..., :num_orientations] + normalised[..., num_orientations:], CLAMP)
    parts = [0.5 * _sum_over(directed, -2), 0.5 * _sum_over(undirected, -2)]
    if texture:
        parts.append(TEXTURE_SCALE.astype(normalised.dtype) * _sum_over(undirected, -1))
    return jnp.concatenate(parts, axis=-1)


def hog_layers(cell_size: int = 8, bilinear: bool = False, texture: bool = True, num_orientations: int = 9):
    """The HOG (HOGb if `bilinear`) layer table: gradients, orientations, cells, block_norms, hog."""
    cell_size = check_cell_size(cell_size)
    if isinstance(num_orientations, bool) or not isinstance(num_orientations, numbers.Integral) or num_orientations < 1:
        raise ValueError(f"num_orientations must be a positive integer; got {num_orientations!r}")
    n = int(num_orientations)
    return (
        Layer("gradients", image_gradients),
        Layer("orientations", oriented_channels, {"num_orientations": n, "bilinear": bool(bilinear)}),
        Layer("cells", cell_histograms, {"cell_size": cell_size}),
        Layer("block_norms", block_normalised, {"num_orientations": n}),
        Layer("hog", uoctti_components, {"num_orientations": n, "texture": bool(texture)}),
    )


def relu_oriented_channels(gradients, *, num_orientations: int):
    """(H, W, 2) -> (H, W, 2n) channels max(0, <g, u_k> - a ||g||), u_k at k*pi/n, a = cos(pi/n).

    The ReLU filter bank of the papers' approximate HOG (a = cos(2 pi / K), K = 2n directed
    orientations): the largest channel is HOG's hard bin, but the weights are soft and not
    normalised, so the result only approximates VLFeat's HOG.
    """
    num_bins = 2 * num_orientations
    angles = np.arange(num_bins) * np.pi / num_orientations
    bank = jnp.asarray(np.stack([np.cos(angles), np.sin(angles)]), gradients.dtype)
    gx, gy = gradients[..., 0], gradients[..., 1]
    norm = _safe_sqrt(gx * gx + gy * gy)
    return jax.nn.relu(gradients @ bank - np.cos(2 * np.pi / num_bins) * norm[..., None])


def approximate_hog_layers(cell_size: int = 8, texture: bool = True, num_orientations: int = 9):
    """HOG's table with the ReLU orientation channels of the papers' approximate HOG."""
    layers = list(hog_layers(cell_size, False, texture, num_orientations))
    layers[1] = Layer("orientations", relu_oriented_channels, {"num_orientations": layers[1].hyper["num_orientations"]})
    return tuple(layers)


def validate_hog_input(image, cell_size: int) -> None:
    """Shape checks (also under jit) plus finiteness for concrete arrays; needs 2x2 cells."""
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) == 3 and shape[2] < 1:
        raise ValueError(f"image must have at least 1 channel; got shape {tuple(shape)}")
    validate_image(image, min_height=2 * cell_size, min_width=2 * cell_size)


def hog(image, cell_size: int = 8, *, bilinear: bool = False, texture: bool = True):
    """UoCTTI HOG (HOGb if `bilinear`) of an image in [0, 255]: (hogH, hogW, 31) or 27 dims without texture."""
    cell_size = check_cell_size(cell_size)
    validate_hog_input(image, cell_size)
    return _compiled_hog(cell_size, bool(bilinear), bool(texture))(image)


@functools.lru_cache(maxsize=None)
def _batched_hog(cell_size: int):
    """HOG of a batch (B, H, W) of same-size grey images, vmapped and compiled once per shape."""
    return jax.jit(jax.vmap(functools.partial(hog, cell_size=cell_size)))


def batched_hog(grey_images: np.ndarray, cell_size: int = 8, batch_size: int = 32) -> np.ndarray:
    """(N, H, W) grey images in [0, 255] -> (N, hogH, hogW, 31), `batch_size` images per vmapped call."""
    grey_images = np.asarray(grey_images, np.float32)
    if grey_images.ndim != 3:
        raise ValueError(f"grey images must be stacked as (N, H, W); got shape {grey_images.shape}")
    validate_hog_input(grey_images[0], cell_size)
    compute = _batched_hog(check_cell_size(cell_size))
    out = []
    for start in range(0, len(grey_images), batch_size):
        batch = grey_images[start:start + batch_size]
        pad = batch_size - len(batch)  # a full batch every call: one compiled shape
        padded = np.concatenate([batch, np.zeros((pad,) + batch.shape[1:], batch.dtype)]) if pad else batch
        out.append(np.asarray(compute(padded))[:len(batch)])
    return np.concatenate(out)


@functools.lru_cache(maxsize=None)
def _compiled_hog(cell_size: int, bilinear: bool, texture: bool):
    """One compiled graph per configuration (op-by-op dispatch is far slower on CPU)."""
    return jax.jit(functools.partial(_hog_graph, cell_size=cell_size, bilinear=bilinear, texture=texture))


def approximate_hog(image, cell_size: int = 8, *, texture: bool = True):
    """The papers' approximate HOG (a ReLU network, not compared with VLFeat): same layout as `hog`."""
    cell_size = check_cell_size(cell_size)
    validate_hog_input(image, cell_size)
    return _compiled_approximate_hog(cell_size, bool(texture))(image)


@functools.lru_cache(maxsize=None)
def _compiled_approximate_hog(cell_size: int, texture: bool):
    layers = approximate_hog_layers(cell_size, texture)
    return jax.jit(lambda image: run(layers, None, image)["hog"])
