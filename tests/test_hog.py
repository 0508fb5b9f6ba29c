"""HOG / HOGb against VLFeat's vl_hog, derivatives, transformations, errors and rendering."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.features import approximate_hog, approximate_hog_layers, hog, hog_layers, hog_shape, render_hog
from jaxinv.engine.graph import run

TOLERANCE = 1e-5


def vlfeat_reference(image, cell_size, bilinear):
    from jaxinv.vlfeat.hog import vlfeat_hog
    return vlfeat_hog(image, cell_size, bilinear=bilinear)


def hog_and_hogb(image, cell_size):
    """HOG and HOGb from one compiled graph (compilation dominates these small tests)."""
    compute = jax.jit(lambda x: (hog(x, cell_size), hog(x, cell_size, bilinear=True)))
    return [np.asarray(features) for features in compute(image)]


def max_differences_to_vlfeat(images, cell_size):
    """max |ours - VLFeat| over all cells and images, for HOG and for HOGb."""
    worst = {False: 0.0, True: 0.0}
    for image in images:
        for bilinear, ours in zip((False, True), hog_and_hogb(image, cell_size)):
            reference = vlfeat_reference(image, cell_size, bilinear)
            assert ours.shape == reference.shape == (*hog_shape(*image.shape[:2], cell_size), 31)
            worst[bilinear] = max(worst[bilinear], float(np.abs(ours - reference).max()))
    return worst


def test_matches_vlfeat_on_natural_images(vl, natural_images):
    assert len(natural_images) >= 10
    worst = max_differences_to_vlfeat(natural_images, 8)
    print(f"max |ours - VLFeat| over {len(natural_images)} images: HOG {worst[False]:.3g}, HOGb {worst[True]:.3g}")
    assert worst[False] <= TOLERANCE and worst[True] <= TOLERANCE


@pytest.mark.parametrize("cell_size", [4, 6])
def test_matches_vlfeat_other_cell_sizes(vl, natural_images, cell_size):
    worst = max_differences_to_vlfeat(natural_images[1:3], cell_size)
    assert worst[False] <= TOLERANCE and worst[True] <= TOLERANCE


def test_any_channel_count_matches_vlfeat(vl, natural_images):
    image = np.concatenate([natural_images[1], natural_images[1][..., :1][::-1]], axis=2)[:40, :48]
    worst = max_differences_to_vlfeat([image, image[..., :2]], 8)
    assert worst[False] <= TOLERANCE and worst[True] <= TOLERANCE


def test_vlfeat_binding_refuses_what_libvl_would_abort_on(vl):
    from jaxinv.vlfeat.hog import vlfeat_hog
    with pytest.raises(ValueError, match="too small"):
        vlfeat_hog(np.zeros((3, 40)), 8)
    with pytest.raises(ValueError, match="cell_size"):
        vlfeat_hog(np.zeros((40, 40)), 0)


def test_without_texture_is_first_27_components(natural_images):
    image = natural_images[1]
    np.testing.assert_array_equal(np.asarray(hog(image, texture=False)), np.asarray(hog(image))[..., :27])


def test_jit_and_vmap(natural_images):
    batch = np.stack([image[:40, :56] for image in natural_images[1:6:2]])
    expected = np.stack([np.asarray(hog(image, 8, bilinear=True)) for image in batch])
    batched = jax.jit(jax.vmap(lambda x: hog(x, 8, bilinear=True)))(batch)
    np.testing.assert_allclose(np.asarray(batched), expected, rtol=1e-6, atol=1e-6)
    single = jax.jit(hog, static_argnames=("cell_size", "bilinear", "texture"))(batch[0], 8)
    np.testing.assert_allclose(np.asarray(single), np.asarray(hog(batch[0], 8)), rtol=1e-6, atol=1e-6)


def test_layers_can_be_tapped(natural_images):
    image = natural_images[2][:36, :44]  # grey
    layers = hog_layers(8)
    outputs = jax.jit(lambda x: run(layers, None, x, upto="cells"))(image)
    assert set(outputs) == {"gradients", "orientations", "cells"}
    assert outputs["gradients"].shape == (36, 44, 2)
    assert outputs["orientations"].shape == (36, 44, 18)
    cells = outputs["cells"]
    assert cells.shape == (*hog_shape(36, 44, 8), 18)
    assert float(cells.min()) >= 0
    # Every gradient norm is pooled with total weight 1 unless it falls outside the cell grid.
    assert float(cells.sum()) <= float(outputs["orientations"].sum()) * (1 + 1e-6)


@pytest.mark.parametrize("bilinear", [False, True])
def test_hog_equals_its_layer_table(natural_images, bilinear):
    """`hog` fuses the orientation and cell stages; the tapped table must give the same values
    and gradients."""
    image = np.asarray(natural_images[1], np.float32)[:45, :53]
    layers = hog_layers(6, bilinear)
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(*hog_shape(45, 53, 6), 31)), jnp.float32)
    by_table = jax.jit(jax.value_and_grad(lambda x: jnp.sum(run(layers, None, x)["hog"] * weights)))(image)
    fused = jax.jit(jax.value_and_grad(lambda x: jnp.sum(hog(x, 6, bilinear=bilinear) * weights)))(image)
    np.testing.assert_allclose(np.asarray(hog(image, 6, bilinear=bilinear)),
                               np.asarray(jax.jit(lambda x: run(layers, None, x)["hog"])(image)), atol=1e-6)
    np.testing.assert_allclose(float(fused[0]), float(by_table[0]), rtol=1e-5)
    scale = float(jnp.abs(by_table[1]).max())
    np.testing.assert_allclose(np.asarray(fused[1]), np.asarray(by_table[1]), atol=1e-5 * scale)


def _discrete_state(layers, image):
    """Everything piecewise constant in HOG: bin and channel choices and which values are clamped."""
    outputs = run(layers, None, image)
    n = outputs["orientations"].shape[-1] // 2
    normalised = outputs["block_norms"]
    return jnp.concatenate([
        (outputs["orientations"] > 0).ravel(),
        (normalised > 0.2).ravel(),
        (normalised[..., :n] + normalised[..., n:] > 0.2).ravel()])


@pytest.mark.parametrize("bilinear", [False, True], ids=["hog", "hogb"])
def test_gradient_matches_finite_differences(natural_images, bilinear):
    eps, num_checked = 1e-3, 6
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        image = jnp.asarray(natural_images[3][:24, 40:72], jnp.float64)  # colour, 3x4 cells
        layers = hog_layers(8, bilinear=bilinear)
        weights = jnp.asarray(rng.normal(size=(*hog_shape(24, 32, 8), 31)))

        @jax.jit
        def objective(x):
            return jnp.sum(run(layers, None, x)["hog"] * weights)

        discrete_state = jax.jit(lambda x: _discrete_state(layers, x))
        gradient = np.asarray(jax.grad(objective)(image))
        assert np.all(np.isfinite(gradient))
        checked = 0
        for index in map(tuple, rng.permutation(np.argwhere(np.ones(image.shape, bool)))):
            step = jnp.zeros_like(image).at[index].set(eps)
            # A finite difference across an assignment change or clamp kink measures a jump.
            if not np.array_equal(discrete_state(image + step), discrete_state(image - step)):
                continue
            numeric = (objective(image + step) - objective(image - step)) / (2 * eps)
            scale = max(abs(float(numeric)), 1e-3)
            assert abs(gradient[index] - float(numeric)) <= 1e-5 * scale, (index, gradient[index], float(numeric))
            checked += gradient[index] != 0
            if checked == num_checked:
                break
        assert checked == num_checked


def test_approximate_hog_orients_like_hog(natural_images):
    image = natural_images[1][:40, :48]
    def orientations(layers):
        return np.asarray(jax.jit(lambda x: run(layers, None, x, upto="orientations")["orientations"])(image))

    hard, relu = orientations(hog_layers(8)), orientations(approximate_hog_layers(8))
    moving = hard.sum(-1) > 0
    agreement = np.mean(hard.argmax(-1)[moving] == relu.argmax(-1)[moving])
    assert agreement > 0.99
    features = approximate_hog(image)
    assert features.shape == hog(image).shape
    gradient = jax.grad(lambda x: jnp.sum(approximate_hog(x) ** 2))(jnp.asarray(image))
    assert np.all(np.isfinite(np.asarray(gradient)))


@pytest.mark.parametrize("image, message", [
    (np.zeros(40), "must have shape"),
    (np.zeros((40, 40, 3, 1)), "must have shape"),
    (np.zeros((40, 40, 0)), "at least 1 channel"),
    (np.zeros((15, 40)), "too small"),
    (np.zeros((40, 15, 3)), "too small"),
    (np.full((40, 40), np.nan), "non-finite"),
    (np.full((40, 40, 3), np.inf), "non-finite"),
])
def test_bad_images_raise(image, message):
    with pytest.raises(ValueError, match=message):
        hog(image, 8)


@pytest.mark.parametrize("cell_size", [0, -8, 2.5, True, "8"])
def test_bad_cell_size_raises(cell_size):
    with pytest.raises(ValueError, match="cell_size must be a positive integer"):
        hog(np.zeros((40, 40)), cell_size)


def test_shape_checks_work_under_jit():
    with pytest.raises(ValueError, match="too small"):
        jax.jit(hog)(jnp.zeros((10, 40)))


def test_render_shape_range_and_contrast():
    # Vertical stripes (horizontal gradients) on the left half, a flat right half.
    image = np.zeros((64, 64), np.float32)
    image[:, :32] = 255.0 * (np.arange(32) // 4 % 2)
    features = np.asarray(hog(image))
    picture = render_hog(features, glyph_size=15)
    assert picture.shape == (8 * 15, 8 * 15)
    assert picture.min() >= 0 and picture.max() == pytest.approx(255)
    textured, flat = picture[15:-15, 15:45], picture[15:-15, 75:]
    assert textured.mean() > 10 * max(flat.mean(), 1e-3)
    # Edges are vertical, so the glyphs' bright pixels sit in their centre columns.
    glyph = picture[30:45, 15:30]
    assert glyph[:, 7].mean() > 4 * np.delete(glyph, 7, axis=1).mean()
    np.testing.assert_allclose(render_hog(features[..., :27], glyph_size=15), picture)


def test_render_rejects_bad_shapes():
    with pytest.raises(ValueError, match="3n or 3n \\+ 4"):
        render_hog(np.zeros((4, 4, 29)))
    with pytest.raises(ValueError, match="shape"):
        render_hog(np.zeros((4, 31)))
