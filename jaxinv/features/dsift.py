"""Dense SIFT as a differentiable layer table, matching VLFeat's `vl_dsift` with the flat window.

Units and conventions:
  * input: an (H, W) grey or (H, W, 3) RGB image, float, pixel values in [0, 255]; colour is
    converted to grey with ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B, as
    `jaxinv.io.images.to_grey` and PIL's convert('L') without rounding). An (H, W, 1) image is grey.
  * coordinates: x is the column index, y the row index (pointing down), both in pixels; angles
    are measured from +x towards +y, as VLFeat does on a C-order (row-major) image.
  * `bin_size` is the spacing of the 4x4 spatial bin centres and `step` the spacing of the
    frames, both in pixels. Frame (i, j) has its top-left bin centre at (y, x) = (i*step, j*step)
    and its centre at (i*step + 1.5*bin_size, j*step + 1.5*bin_size); frames are laid out where
    all 16 bin centres fall inside the image (VLFeat's default bounds), in VLFeat's y-major order.
  * descriptor component `t + 8*(bx + 4*by)`: orientation bin t (angle 2*pi*t/8), spatial bin
    column bx and row by, exactly as VLFeat stores it for a row-major image.

Stages (layer names): grey -> gradients (gx, gy in grey levels per pixel) -> orientations
(gradient magnitude split over 8 orientation channels) -> bins (orientation maps pooled by a
unit-height triangular kernel of half-width bin_size, evaluated on the lattice of bin centres,
spacing gcd(bin_size, step) pixels, starting at pixel (0, 0)) -> descriptors (raw 128-vectors) ->
dsift (L2-normalised, clamped at 0.2, L2-normalised again).

Numerics follow VLFeat: the orientation uses VLFeat's cubic atan2 approximation (its error,
up to 0.006 rad, moves up to ~1% of a gradient between orientation bins, far above the test
tolerance), gradient magnitudes below 1e-4 are zeroed as its fast square root does, and borders
are padded by continuity. Exact square roots replace VLFeat's two-Newton-step fast square root
(relative error under 5e-6, which largely cancels in the normalisation). The L2 norms are
sqrt(sum of squares + eps^2) with eps = 2^-23 instead of VLFeat's sqrt(...) + eps: the same
value to within eps, and a finite gradient (1/eps) for all-zero descriptors.

Agreement with VLFeat 0.9.21 is within a few 1e-6 for bin_size >= 8. With small bins on larger
images, low-contrast frames near the bottom and right borders can differ by ~1e-3: VLFeat
computes the triangular filter with float32 running sums over whole columns and rows, whose
rounding error grows with the distance from the top and left borders. dsift evaluates the same
linear filter directly (tests/test_dsift.py reproduces both results by emulating VLFeat's sums).
The smallest image holds one descriptor, (3*bin_size + 1) pixels a side, as in VLFeat.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinv.engine import graph
from jaxinv.io import images

NUM_ORIENTATIONS = 8
NUM_SPATIAL_BINS = 4
DESCRIPTOR_SIZE = NUM_ORIENTATIONS * NUM_SPATIAL_BINS * NUM_SPATIAL_BINS
CLAMP = 0.2
WINDOW_SIZE = 2.0  # VLFeat's default Gaussian window size, in bins
FLOAT32_EPSILON = 2.0 ** -23  # VL_EPSILON_F
FAST_SQRT_CUTOFF = 1e-8  # VLFeat's fast square root returns 0 below this argument
ATAN2_C1 = 0.9675  # coefficients of VLFeat's cubic atan2 approximation
ATAN2_C3 = 0.1821


def check_geometry(bin_size, step) -> None:
    """Raises ValueError unless bin_size and step are positive integers."""
    for name, value in (("bin_size", bin_size), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")


def min_image_side(bin_size: int) -> int:
    """Smallest height/width holding one descriptor: its 4 bin centres span 3*bin_size + 1 pixels."""
    return (NUM_SPATIAL_BINS - 1) * bin_size + 1


def num_frames_along(length: int, bin_size: int, step: int) -> int:
    """Frames along an axis of `length` pixels, as VLFeat's _vl_dsift_update_buffers counts them."""
    return (length - 1 - (NUM_SPATIAL_BINS - 1) * bin_size) // step + 1


def validate_input(image, bin_size: int) -> None:
    """Raises ValueError naming the problem unless `image` can hold one descriptor."""
    images.validate_image(image, channels=(1, 3), what="dsift input image")
    side = min_image_side(bin_size)
    if image.shape[0] < side or image.shape[1] < side:
        raise ValueError(
            f"dsift input image of shape {tuple(image.shape)} is smaller than one descriptor: "
            f"bin_size={bin_size} needs at least {side}x{side} pixels (3*bin_size + 1)")


def grey_image(image, bin_size: int):
    """Validated image as an (H, W) grey array (ITU-R 601 luma for RGB)."""
    validate_input(image, bin_size)
    image = jnp.asarray(image)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        image = image.astype(jnp.float32)
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[..., 0]
    return image @ jnp.asarray(images.LUMA, image.dtype)


def _derivative(image, axis: int):
    """Halved central differences inside, one-sided differences on the first and last sample."""
    first = lax.slice_in_dim(image, 1, 2, axis=axis) - lax.slice_in_dim(image, 0, 1, axis=axis)
    n = image.shape[axis]
    inner = 0.5 * (lax.slice_in_dim(image, 2, n, axis=axis) - lax.slice_in_dim(image, 0, n - 2, axis=axis))
    last = lax.slice_in_dim(image, n - 1, n, axis=axis) - lax.slice_in_dim(image, n - 2, n - 1, axis=axis)
    return jnp.concatenate([first, inner, last], axis=axis)


def image_gradients(grey):
    """(H, W, 2) image gradient (gx, gy) as in VLFeat's vl_dsift_process / vl_imgradient_polar_f."""
    return jnp.stack([_derivative(grey, axis=1), _derivative(grey, axis=0)], axis=-1)


def fast_atan2(y, x):
    """VLFeat's vl_fast_atan2_f: a cubic in r = (|x| - |y|) / (|x| + |y|), in (-pi, pi]."""
    abs_y = jnp.abs(y) + FLOAT32_EPSILON
    abs_x = jnp.abs(x)
    # The x < 0 branch of VLFeat uses r' = -r, so both branches share one always-positive denominator.
    r = (abs_x - abs_y) / (abs_x + abs_y)
    cubic = (ATAN2_C3 * r * r - ATAN2_C1) * r
    angle = jnp.where(x >= 0, math.pi / 4 + cubic, 3 * math.pi / 4 - cubic)
    return jnp.where(y < 0, -angle, angle)


def gradient_magnitude(gradients):
    """sqrt(gx^2 + gy^2), zero below VLFeat's fast-sqrt cutoff (and with a zero gradient there)."""
    squared = jnp.sum(gradients * gradients, axis=-1)
    small = squared < FAST_SQRT_CUTOFF
    return jnp.where(small, 0.0, jnp.sqrt(jnp.where(small, 1.0, squared)))


def orientation_maps(gradients):
    """(H, W, 8) gradient magnitude shared linearly between the two nearest orientation bins."""
    gx, gy = gradients[..., 0], gradients[..., 1]
    angle = fast_atan2(gy, gx)
    angle = jnp.where(angle < 0, angle + 2 * math.pi, angle)  # vl_mod_2pi_f
    position = angle * (NUM_ORIENTATIONS / (2 * math.pi))
    lower = jnp.floor(position)
    fraction = position - lower
    magnitude = gradient_magnitude(gradients)
    bins = jnp.arange(NUM_ORIENTATIONS, dtype=position.dtype)
    # Orientation is circular: the bin above 7 is 0. Selecting by masks (rather than a
    # triangular function of the distance to every bin) keeps XLA's backward pass small.
    is_lower = jnp.mod(lower, NUM_ORIENTATIONS)[..., None] == bins
    is_upper = jnp.mod(lower + 1, NUM_ORIENTATIONS)[..., None] == bins
    return (jnp.where(is_lower, (magnitude * (1 - fraction))[..., None], 0.0)
            + jnp.where(is_upper, (magnitude * fraction)[..., None], 0.0))


def triangular_kernel(bin_size: int) -> np.ndarray:
    """Unit-height triangle 1 - |d|/bin_size for |d| < bin_size (VLFeat's kernel times bin_size)."""
    d = np.arange(-bin_size + 1, bin_size)
    return 1.0 - np.abs(d) / bin_size


def centre_spacing(bin_size: int, step: int) -> int:
    """Spacing of the lattice holding every frame's bin centres: gcd(bin_size, step) pixels."""
    return math.gcd(bin_size, step)


def pooling_matrix(length: int, bin_size: int, step: int) -> np.ndarray:
    """(centres, length) matrix: triangular pooling at lattice points 0, g, 2g, ... along one axis.

    Samples beyond the border are replaced by the border sample (VLFeat pads by continuity), so
    their weights fold onto the first or last column.
    """
    spacing = centre_spacing(bin_size, step)
    last_centre = (num_frames_along(length, bin_size, step) - 1) * step + (NUM_SPATIAL_BINS - 1) * bin_size
    centres = np.arange(0, last_centre + 1, spacing)
    offsets = np.arange(-bin_size + 1, bin_size)
    matrix = np.zeros((len(centres), length))
    rows = np.repeat(np.arange(len(centres)), len(offsets))
    columns = np.clip(centres[:, None] + offsets, 0, length - 1).ravel()
    np.add.at(matrix, (rows, columns), np.tile(triangular_kernel(bin_size), len(centres)))
    return matrix


def spatial_bins(orientations, bin_size: int, step: int):
    """(Gy, Gx, 8) orientation maps pooled by a separable triangular filter at the bin-centre lattice."""
    height, width, channels = orientations.shape
    rows = jnp.asarray(pooling_matrix(height, bin_size, step), orientations.dtype)
    columns = jnp.asarray(pooling_matrix(width, bin_size, step), orientations.dtype)
    # Two plain 2-D matrix products (pixels, channels folded into columns): XLA's CPU
    # convolutions are slow for one-channel filters, and plain products keep the backward pass fast.
    pooled = (rows @ orientations.reshape(height, width * channels)).reshape(-1, width, channels)
    pooled = jnp.swapaxes(pooled, 0, 1).reshape(width, -1)
    pooled = (columns @ pooled).reshape(len(columns), -1, channels)
    return jnp.swapaxes(pooled, 0, 1)


def bin_window_means(bin_size: int) -> np.ndarray:
    """Mean of VLFeat's Gaussian window (sigma = WINDOW_SIZE bins) over each of the 4 bins' support."""
    d = np.arange(-bin_size + 1, bin_size, dtype=np.float64)
    centres = bin_size * (np.arange(NUM_SPATIAL_BINS) - 0.5 * (NUM_SPATIAL_BINS - 1))
    sigma = bin_size * WINDOW_SIZE
    return np.exp(-0.5 * ((d[None, :] - centres[:, None]) / sigma) ** 2).mean(axis=1)


def sample_descriptors(bins, bin_size: int, step: int):
    """(ny, nx, 128) raw descriptors: the pooled maps read at each frame's 4x4 bin centres."""
    spacing = centre_spacing(bin_size, step)
    stride, bin_stride = step // spacing, bin_size // spacing
    ny = (bins.shape[0] - 1 - (NUM_SPATIAL_BINS - 1) * bin_stride) // stride + 1
    nx = (bins.shape[1] - 1 - (NUM_SPATIAL_BINS - 1) * bin_stride) // stride + 1
    rows = []
    for by in range(NUM_SPATIAL_BINS):
        row = []
        for bx in range(NUM_SPATIAL_BINS):
            y0, x0 = by * bin_stride, bx * bin_stride
            row.append(bins[y0:y0 + (ny - 1) * stride + 1:stride, x0:x0 + (nx - 1) * stride + 1:stride])
        rows.append(jnp.stack(row, axis=2))
    descriptors = jnp.stack(rows, axis=2)  # (ny, nx, by, bx, t)
    window = bin_window_means(bin_size)
    weights = jnp.asarray(np.outer(window, window), bins.dtype)[:, :, None]
    return (descriptors * weights).reshape(ny, nx, DESCRIPTOR_SIZE)


def l2_normalise(x):
    """x / ||x|| over the last axis; the norm is floored at eps so all-zero vectors stay finite."""
    return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + FLOAT32_EPSILON ** 2)


def normalise_descriptors(descriptors):
    """SIFT normalisation: L2-normalise, clamp components at 0.2, L2-normalise again."""
    return l2_normalise(jnp.minimum(l2_normalise(descriptors), CLAMP))


def dsift_layers(bin_size: int = 8, step: int = 8) -> tuple[graph.Layer, ...]:
    """The dense SIFT layer table: grey, gradients, orientations, bins, descriptors, dsift."""
    check_geometry(bin_size, step)
    return (
        graph.Layer("grey", grey_image, {"bin_size": bin_size}),
        graph.Layer("gradients", image_gradients),
        graph.Layer("orientations", orientation_maps),
        graph.Layer("bins", spatial_bins, {"bin_size": bin_size, "step": step}),
        graph.Layer("descriptors", sample_descriptors, {"bin_size": bin_size, "step": step}),
        graph.Layer("dsift", normalise_descriptors),
    )


@functools.partial(jax.jit, static_argnames=("bin_size", "step"))
def _compiled_dsift(image, bin_size: int, step: int):
    return graph.run(dsift_layers(bin_size, step), None, image)["dsift"]


def dsift(image, bin_size: int = 8, step: int = 8):
    """Dense SIFT descriptors (ny, nx, 128) of an (H, W) or (H, W, C) image in [0, 255]."""
    check_geometry(bin_size, step)
    # Checked here too because inside the compiled function pixel values are not visible.
    validate_input(image, bin_size)
    return _compiled_dsift(image, bin_size=int(bin_size), step=int(step))
