"""Uniform LBP against VLFeat's vl_lbp, the 58-pattern mapping, hand-built patterns, jit/vmap, errors."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.features import lbp, lbp_layers
from jaxinv.features.lbp import NEIGHBOURS, uniform_pattern_table
from jaxinv.engine.graph import run
from jaxinv.io.images import to_grey

TOLERANCE = 1e-6


def vlfeat_reference(image, cell_size):
    from jaxinv.vlfeat.lbp import vlfeat_lbp
    return vlfeat_lbp(image, cell_size)


def max_difference_to_vlfeat(images, cell_size):
    worst = 0.0
    for image in images:
        ours, reference = np.asarray(lbp(image, cell_size)), vlfeat_reference(image, cell_size)
        assert ours.shape == reference.shape == (image.shape[0] // cell_size, image.shape[1] // cell_size, 58)
        worst = max(worst, float(np.abs(ours - reference).max()))
    return worst


def test_matches_vlfeat_on_natural_images(vl, natural_images):
    greys = [to_grey(image) for image in natural_images]
    assert len(greys) >= 10 and any(image.shape[0] % 16 or image.shape[1] % 16 for image in greys)
    worst = max_difference_to_vlfeat(greys, 16)
    print(f"max |ours - VLFeat| over {len(greys)} images: {worst:.3g}")
    assert worst <= TOLERANCE


@pytest.mark.parametrize("cell_size, index", [(7, 1), (10, 2)])
def test_matches_vlfeat_other_cell_sizes(vl, natural_images, cell_size, index):
    assert max_difference_to_vlfeat([to_grey(natural_images[index])], cell_size) <= TOLERANCE


def test_vlfeat_binding_is_row_major_and_agrees_with_matlabs_transposed_call(vl):
    """MATLAB hands libvl the transposed image with transposed patterns: the same histograms."""
    from jaxinv.vlfeat import float_pointer
    from jaxinv.vlfeat.lbp import VL_LBP_UNIFORM, _lbp_library, vlfeat_lbp
    image = np.random.default_rng(0).integers(0, 4, size=(50, 70)).astype(np.float32) * 60
    lib = _lbp_library()
    handle = lib.vl_lbp_new(VL_LBP_UNIFORM, 1)
    try:
        features = np.zeros((58, 70 // 16, 50 // 16), np.float32)
        transposed = np.ascontiguousarray(image.T)
        lib.vl_lbp_process(handle, float_pointer(features), float_pointer(transposed), 50, 70, 16)
    finally:
        lib.vl_lbp_delete(handle)
    np.testing.assert_array_equal(np.moveaxis(features, 0, 2).transpose(1, 0, 2), vlfeat_lbp(image, 16))


def test_uniform_pattern_table_has_58_patterns():
    table = uniform_pattern_table()
    counts = np.bincount(table, minlength=58)
    assert len(counts) == 58
    assert np.all(counts[:56] == 1)  # 8 starting bits x 7 run lengths
    assert counts[56] == 2 and table[0x00] == table[0xFF] == 56
    assert counts[57] == 256 - 58
    # One run of j ones starting at bit i is pattern 7 i + j - 1; runs may wrap around bit 7.
    assert table[0b00000001] == 0 and table[0b01111111] == 6
    assert table[0b00000110] == 7 + 1 and table[0b11111110] == 13
    assert table[0b10000001] == 7 * 7 + 1 and table[0b10000011] == 7 * 7 + 2
    assert table[0b00000101] == table[0b01010101] == 57


def test_uniform_pattern_table_is_libvls(vl):
    from jaxinv.vlfeat.lbp import uniform_mapping
    np.testing.assert_array_equal(uniform_pattern_table(), uniform_mapping())


@functools.lru_cache(maxsize=None)
def tapped(cell_size, upto="lbp"):
    """The LBP table up to `upto`, compiled once per configuration (eager dispatch is slow)."""
    layers = lbp_layers(cell_size)
    return jax.jit(lambda image: run(layers, None, image, upto=upto))


def _neighbourhood(code, centre=100.0):
    """A 3x3 image whose centre pixel has the given 8-bit code (brighter = 200, darker = 50)."""
    patch = np.full((3, 3), centre, np.float32)
    for bit, (dy, dx) in enumerate(NEIGHBOURS):
        patch[1 + dy, 1 + dx] = 200.0 if code >> bit & 1 else 50.0
    return patch


@pytest.mark.parametrize("code", [0x00, 0xFF, 0x01, 0x02, 0x80, 0x83, 0x7F, 0x05, 0xAA])
def test_codes_of_hand_built_neighbourhoods(code):
    image = np.pad(_neighbourhood(code), 7, mode="edge")  # 17x17: one 16-pixel cell
    outputs = tapped(16, "patterns")(image)
    codes, patterns = np.asarray(outputs["codes"]), np.asarray(outputs["patterns"])
    assert codes[8, 8] == code
    assert patterns[8, 8].argmax() == uniform_pattern_table()[code] and patterns[8, 8].sum() == 1
    # The one-pixel border has no code and no pattern.
    assert np.all(codes[0] == -1) and np.all(codes[:, -1] == -1)
    assert np.all(patterns[0] == 0) and np.all(patterns[:, -1] == 0)


def test_ties_are_not_brighter():
    codes = np.asarray(tapped(4, "codes")(np.full((8, 8), 7.0))["codes"])
    assert np.all(codes[1:-1, 1:-1] == 0)


def test_vertical_step_edge_histograms():
    """Dark left, bright right: the column left of the step sees E, SE, NE brighter (a run of 3
    starting at bit 7, pattern 51); every other interior pixel is constant (pattern 56)."""
    image = np.zeros((32, 48), np.float32)
    image[:, 24:] = 255.0
    outputs = tapped(16)(image)
    patterns = np.asarray(outputs["patterns"])
    assert np.all(patterns[1:-1, 23, 51] == 1)
    assert np.all(patterns[1:-1, 1:23, 56] == 1) and np.all(patterns[1:-1, 24:-1, 56] == 1)
    cells = np.asarray(outputs["cells"])
    assert cells.shape == (2, 3, 58)
    assert set(np.flatnonzero(cells.sum(axis=(0, 1)))) == {51, 56}
    # Column 23 has cell coordinate 23.5 / 16 - 0.5 = 0.96875: mostly in cell 1, a little in cell 0.
    # Rows 1..30 lose the weight that falls above cell row 0 or below cell row 1.
    coordinate = (np.arange(1, 31) + 0.5) / 16 - 0.5
    lower, fraction = np.floor(coordinate), coordinate - np.floor(coordinate)
    row_mass = np.sum((1 - fraction) * ((lower >= 0) & (lower < 2)) + fraction * ((lower + 1 >= 0) & (lower + 1 < 2)))
    np.testing.assert_allclose(cells[:, :, 51].sum(0), [row_mass * 0.03125, row_mass * 0.96875, 0], rtol=1e-6)
    features = np.asarray(outputs["lbp"])
    np.testing.assert_allclose(np.sum(features ** 2, axis=-1), 1, rtol=1e-6)
    np.testing.assert_allclose(features[..., 51], np.sqrt(cells[..., 51] / cells.sum(-1)), rtol=1e-6)


def test_constant_image_is_all_pattern_56():
    features = np.asarray(lbp(np.full((40, 56), 128.0), 16))
    assert features.shape == (2, 3, 58)
    np.testing.assert_allclose(features[..., 56], 1, rtol=1e-6)
    assert np.all(np.delete(features, 56, axis=-1) == 0)


def test_invariant_to_monotone_rescaling(natural_images):
    image = to_grey(natural_images[1])[:40, :56]
    np.testing.assert_array_equal(np.asarray(lbp(image / 255.0)), np.asarray(lbp(image)))


def test_grey_channel_axis_and_integer_input(natural_images):
    image = natural_images[0][:40, :56]  # grey
    expected = np.asarray(lbp(image))
    np.testing.assert_array_equal(np.asarray(lbp(image[..., None])), expected)
    np.testing.assert_array_equal(np.asarray(lbp(image.astype(np.uint8))), np.asarray(lbp(np.floor(image))))


def test_jit_vmap_and_zero_gradient(natural_images):
    batch = np.stack([to_grey(image)[:40, :56] for image in natural_images[1:6:2]])
    expected = np.stack([np.asarray(lbp(image)) for image in batch])
    batched = jax.jit(jax.vmap(lbp))(batch)
    np.testing.assert_allclose(np.asarray(batched), expected, rtol=1e-6, atol=1e-7)
    single = jax.jit(lbp, static_argnames="cell_size")(batch[0], cell_size=8)
    np.testing.assert_allclose(np.asarray(single), np.asarray(lbp(batch[0], 8)), rtol=1e-6, atol=1e-7)
    # Piecewise constant: no gradient flows to the image.
    gradient = jax.grad(lambda x: jnp.sum(lbp(x) ** 2))(jnp.asarray(batch[0]))
    assert np.all(np.asarray(gradient) == 0)


def test_layers_can_be_tapped():
    image = np.random.default_rng(0).uniform(0, 255, (36, 44)).astype(np.float32)
    outputs = tapped(8, "cells")(image)
    assert set(outputs) == {"grey", "codes", "patterns", "cells"}
    assert outputs["codes"].shape == (36, 44) and outputs["codes"].dtype == jnp.int32
    assert outputs["patterns"].shape == (36, 44, 58)
    assert outputs["cells"].shape == (4, 5, 58)
    # Every interior pixel carries weight 1 unless part of it falls outside the whole cells.
    assert float(outputs["cells"].sum()) <= 34 * 42 * (1 + 1e-6)


@pytest.mark.parametrize("image, message", [
    (np.zeros(40), "must have shape"),
    (np.zeros((40, 40, 3, 1)), "must have shape"),
    (np.zeros((40, 40, 3)), "must have 1 channels"),
    (np.zeros((15, 40)), "too small"),
    (np.zeros((40, 15, 1)), "too small"),
    (np.full((40, 40), np.nan), "non-finite"),
])
def test_bad_images_raise(image, message):
    with pytest.raises(ValueError, match=message):
        lbp(image, 16)


@pytest.mark.parametrize("cell_size", [0, -16, 2.5, True, "16"])
def test_bad_cell_size_raises(cell_size):
    with pytest.raises(ValueError, match="cell_size must be a positive integer"):
        lbp(np.zeros((40, 40)), cell_size)


def test_shape_checks_work_under_jit():
    with pytest.raises(ValueError, match="too small"):
        jax.jit(lbp)(jnp.zeros((10, 40)))


@pytest.mark.parametrize("image, cell_size, message", [
    (np.zeros((40, 40, 3)), 16, "grey"),
    (np.zeros(40), 16, "grey"),
    (np.zeros((15, 40)), 16, "smaller than one LBP cell"),
    (np.zeros((40, 40)), 0, "cell_size"),
])
def test_vlfeat_binding_refuses_bad_input(vl, image, cell_size, message):
    from jaxinv.vlfeat.lbp import vlfeat_lbp
    with pytest.raises(ValueError, match=message):
        vlfeat_lbp(image, cell_size)


def test_missing_vlfeat_raises_unavailable(monkeypatch):
    from jaxinv import vlfeat
    from jaxinv.vlfeat import lbp as vlfeat_lbp_module

    def missing():
        raise vlfeat.VLFeatUnavailable("libvl.so not found")

    monkeypatch.setattr(vlfeat, "library", missing)
    vlfeat_lbp_module._lbp_library.cache_clear()
    try:
        with pytest.raises(vlfeat.VLFeatUnavailable):
            vlfeat_lbp_module.vlfeat_lbp(np.zeros((32, 32)), 16)
    finally:
        monkeypatch.undo()
        vlfeat_lbp_module._lbp_library.cache_clear()
