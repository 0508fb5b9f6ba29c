import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.engine import graph
from jaxinv.io import images
from jaxinv.features import dsift, dsift_layers, render_dsift
from jaxinv.vlfeat.dsift import vlfeat_dsift

# jaxinv.features re-exports the function `dsift`, which shadows the submodule's attribute name.
dsift_module = importlib.import_module("jaxinv.features.dsift")

LOW_CONTRAST_NORM = 1e-3


def _compare_with_vlfeat(image, bin_size, step):
    """(max diff on frames with VLFeat norm > 1e-3, mean diff on all frames) vs VLFeat."""
    frames, reference, norms = vlfeat_dsift(images.to_grey(image), bin_size, step)
    ours = np.asarray(dsift(jnp.asarray(image), bin_size=bin_size, step=step))
    ny, nx = ours.shape[:2]
    assert ny * nx == len(reference), f"frame count {ny}x{nx} vs VLFeat {len(reference)}"
    centres = np.stack(np.meshgrid(np.arange(nx) * step, np.arange(ny) * step)[::-1], -1).reshape(-1, 2)
    np.testing.assert_array_equal(frames[:, ::-1], centres + 1.5 * bin_size)
    diff = np.abs(ours.reshape(-1, 128) - reference)
    return diff[norms > LOW_CONTRAST_NORM].max(), diff.mean()


@pytest.mark.parametrize("bin_size, step", [(8, 8), (10, 5)])
def test_matches_vlfeat_on_natural_images(vl, natural_images, bin_size, step):
    assert len(natural_images) >= 10
    for image in natural_images:
        if min(image.shape[:2]) < dsift_module.min_image_side(bin_size):
            continue
        max_diff, mean_diff = _compare_with_vlfeat(image, bin_size, step)
        assert max_diff <= 1e-4, (image.shape, max_diff)
        assert mean_diff <= 1e-4, (image.shape, mean_diff)


def _emulate_vlfeat_bins(grey, bin_size, dtype):
    """VLFeat's flat-window bins computed its way: fast sqrt, running sums (vl_imconvcoltri)."""
    gradients = np.asarray(dsift_module.image_gradients(jnp.asarray(grey, jnp.float32)))
    gx, gy = gradients[..., 0], gradients[..., 1]
    squared = (gx * gx + gy * gy).astype(np.float32)
    guess = (np.int32(0x5F3759DF) - (squared.view(np.int32) >> 1)).view(np.float32)
    for _ in range(2):
        guess = guess * (np.float32(1.5) - np.float32(0.5) * squared * guess * guess)
    magnitude = np.where(squared < 1e-8, 0, squared * guess).astype(dtype)
    angle = np.asarray(dsift_module.fast_atan2(gy, gx))
    angle = np.where(angle < 0, angle + np.float32(2 * math.pi), angle)
    position = (angle.astype(np.float64) * (8 / (2 * math.pi))).astype(np.float32)
    lower = np.floor(position).astype(int)
    fraction = (position - lower).astype(dtype)
    planes = np.zeros((8,) + grey.shape, dtype)
    rows, cols = np.indices(grey.shape)
    planes[lower % 8, rows, cols] = (1 - fraction) * magnitude
    planes[(lower + 1) % 8, rows, cols] = fraction * magnitude
    planes = _running_sum_triangle(np.moveaxis(planes, 0, -1), bin_size)
    planes = np.swapaxes(_running_sum_triangle(np.swapaxes(planes, 0, 1), bin_size), 0, 1)
    return planes * dtype(bin_size * bin_size)


def _running_sum_triangle(signal, size):
    """Triangular filter along axis 0 in vl_imconvcoltri's order of float operations: a backward
    integral (top padded by continuity), box differences (bottom padded by continuity), a
    forward integral and box differences again."""
    n = signal.shape[0]
    top_padded = np.concatenate([np.repeat(signal[:1], size, 0), signal])
    backward = np.cumsum(top_padded[::-1], axis=0)[::-1]  # index i is position i - size
    overhang = (np.arange(n - size, n) - (n - size))[:, None, None].astype(signal.dtype)
    boxes = np.concatenate([backward[:n] - backward[size:n + size],
                            backward[n:] + signal[-1:] * overhang])
    forward = np.cumsum(boxes, axis=0)
    return signal.dtype.type(1.0 / (size * size)) * (forward[size:] - forward[:n])


def test_residual_at_small_bins_is_vlfeat_float32_rounding(vl):
    """Small bins on a 256x256 image leave low-contrast frames ~1e-3 off VLFeat: the running
    sums of its float32 integral signals round. Its algorithm emulated in float32 reproduces
    VLFeat, and the same emulation in float64 reproduces dsift."""
    bin_size, step = 4, 2
    grey = images.to_grey(images.load_sample_image())
    _, reference, _ = vlfeat_dsift(grey, bin_size, step)
    ours = np.asarray(dsift(grey, bin_size=bin_size, step=step)).reshape(-1, 128)
    spacing = dsift_module.centre_spacing(bin_size, step)  # dsift pools only on the bin-centre lattice
    descriptors_from_bins = jax.jit(lambda bins: dsift_module.normalise_descriptors(
        dsift_module.sample_descriptors(bins, bin_size, step)))
    for dtype, target in ((np.float32, reference), (np.float64, ours)):
        bins = _emulate_vlfeat_bins(grey, bin_size, dtype)[::spacing, ::spacing]
        emulated = descriptors_from_bins(jnp.asarray(bins, jnp.float32))
        assert np.abs(np.asarray(emulated).reshape(-1, 128) - target).max() <= 1e-4, dtype


def _smooth_image(key, shape, dtype):
    """A random image in [0, 255] with soft edges (few pixels sit exactly on a binning kink)."""
    noise = jax.random.uniform(key, (shape[0] // 4 + 2, shape[1] // 4 + 2), dtype)
    return 255 * jax.image.resize(noise, shape, "cubic")


def test_gradient_matches_finite_differences():
    """Smooth random image: the odds that a +-h step crosses an orientation-bin boundary, the 0.2
    clamp or an atan2 branch at one of the probed pixels are negligible (h = 1e-4 grey levels)."""
    with jax.enable_x64(True):
        image = _smooth_image(jax.random.PRNGKey(0), (40, 44), jnp.float64)
        weights = jax.random.normal(jax.random.PRNGKey(1), dsift(image, bin_size=6, step=3).shape, jnp.float64)

        def objective(x):
            return jnp.sum(dsift(x, bin_size=6, step=3) * weights)

        gradient = jax.grad(objective)(image)
        assert np.all(np.isfinite(gradient))
        rng = np.random.default_rng(2)
        pixels = [tuple(p) for p in rng.integers(0, image.shape, size=(12, 2))]
        h = 1e-4
        numeric = np.array([(objective(image.at[p].add(h)) - objective(image.at[p].add(-h))) / (2 * h)
                            for p in pixels])
        analytic = np.array([gradient[p] for p in pixels])
        error = np.linalg.norm(numeric - analytic) / np.linalg.norm(analytic)
        assert error < 1e-6, (error, numeric, analytic)


def test_gradient_is_finite_on_flat_image():
    gradient = jax.grad(lambda x: jnp.sum(dsift(x)))(jnp.full((40, 40), 128.0))
    assert np.all(np.isfinite(gradient))


def test_jit_vmap_and_tapping(natural_images):
    image = jnp.asarray(images.to_grey(natural_images[0])[:40, :48])
    expected = dsift(image, bin_size=8, step=4)
    jitted = jax.jit(dsift, static_argnames=("bin_size", "step"))(image, bin_size=8, step=4)
    np.testing.assert_allclose(jitted, expected, atol=1e-6)
    batch = jnp.stack([image, 255 - image, 0.5 * image])
    batched = jax.vmap(lambda x: dsift(x, bin_size=8, step=4))(batch)
    assert batched.shape == (3,) + expected.shape
    np.testing.assert_allclose(batched[0], expected, atol=1e-6)
    layers = dsift_layers(bin_size=8, step=4)
    outputs = jax.jit(lambda x: graph.run(layers, None, x, upto="bins"))(image)
    assert set(outputs) == {"grey", "gradients", "orientations", "bins"}
    assert outputs["gradients"].shape == image.shape + (2,)
    assert outputs["orientations"].shape == image.shape + (8,)
    # bins are pooled on the lattice of bin centres, spaced gcd(8, 4) = 4 pixels.
    lattice = ((expected.shape[0] - 1) * 4 + 24) // 4 + 1, ((expected.shape[1] - 1) * 4 + 24) // 4 + 1
    assert outputs["bins"].shape == lattice + (8,)
    # Orientation splitting conserves the gradient magnitude.
    magnitude = jnp.linalg.norm(outputs["gradients"], axis=-1)
    np.testing.assert_allclose(outputs["orientations"].sum(-1), magnitude, rtol=1e-5, atol=1e-3)
    raw = jax.jit(lambda x: graph.run(layers, None, x)["descriptors"])(image)
    assert raw.shape == expected.shape


def test_colour_uses_itu_r_601_luma(natural_images):
    colour = natural_images[1]
    np.testing.assert_allclose(dsift(colour), dsift(images.to_grey(colour)), atol=1e-5)
    np.testing.assert_allclose(dsift(colour[..., :1]), dsift(colour[..., 0]), atol=0)


@pytest.mark.parametrize("image, kwargs, message", [
    (np.zeros((40, 40, 3, 1)), {}, "must have shape"),
    (np.zeros((40, 40, 2)), {}, "must have 1 or 3 channels"),
    (np.zeros((24, 60)), {}, "smaller than one descriptor"),
    (np.zeros((60, 12)), {"bin_size": 4}, "smaller than one descriptor"),
    (np.full((40, 40), np.nan), {}, "non-finite"),
    (np.zeros((40, 40)), {"bin_size": 0}, "bin_size must be a positive integer"),
    (np.zeros((40, 40)), {"step": 2.5}, "step must be a positive integer"),
])
def test_errors(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        dsift(image, **kwargs)


def test_smallest_image_has_one_frame():
    assert dsift(np.zeros((25, 25)), bin_size=8).shape == (1, 1, 128)


def test_render_dsift(natural_images):
    image = natural_images[0]
    descriptors = dsift(image, bin_size=8, step=8)
    picture = render_dsift(descriptors, bin_size=8, step=8)
    assert picture.shape == ((descriptors.shape[0] - 1) * 8 + 25, (descriptors.shape[1] - 1) * 8 + 25)
    assert picture.min() >= 0 and picture.max() == 255
    over = render_dsift(descriptors, image=image)
    assert over.shape == image.shape[:2] and 0 <= over.min() and over.max() <= 255
    sized = render_dsift(descriptors, image_shape=(100, 90))
    assert sized.shape == (100, 90)
