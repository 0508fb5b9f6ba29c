"""Visualising deep networks: activation maximisation's normalisation and size rule, inversion from
selected components, caricatures (the binaries: tests/test_visualise_binaries.py)."""
import os

import numpy as np
import pytest

from jaxinv import nets
from jaxinv.engine import preimage
from jaxinv.io import checkpoints, datasets
from jaxinv.methods import activation_max, visualise
from jaxinv.nets import taps
from jaxinv.nets import tables
from jaxinv.nets.model import CAFFE_CONVENTION, Model

QUICK = preimage.default_stages(40, 10)


def geometry_only(arch, input_size=None):
    return Model(arch, tables.build(arch), None, input_size or tables.INPUT_SIZES[arch], dict(CAFFE_CONVENTION))


@pytest.fixture(scope="module")
def cifar_ref():
    return nets.load("cifar-ref")


@pytest.mark.parametrize("arch,layer,cells,size", [
    # rf 5, stride 1: 1.1 * 5 = 5.5 -> 5 cells; conv1 pads by 2, so a 5-pixel image has a 5-cell map.
    ("cifar-ref", "conv1", 5, 5),
    ("cifar-ref", "pool1", 3, 6),     # 1.1 * 7 / 2 = 3.85 -> 3
    ("cifar-ref", "relu3", 7, 28),    # 1.1 * 23 / 4 = 6.3 -> 7
    ("cifar-ref", "pool3", 5, 40),    # 1.1 * 31 / 8 = 4.3 -> 5: larger than the network's 32
    ("cifar-ref", "fc6", 7, 32),      # fully connected: the network's input size
    ("caffe-ref", "conv1", 3, 19),    # 1.1 * 11 / 4 = 3.0 -> 3; (19 - 11) / 4 + 1 = 3
    ("caffe-ref", "conv5", 11, 183),  # 1.1 * 163 / 16 = 11.2 -> 11
    ("caffe-ref", "fc8", 13, 227),
])
def test_activation_max_size_rule(arch, layer, cells, size):
    model = geometry_only(arch)
    assert activation_max.activation_max_cells(model, layer) == cells
    assert activation_max.activation_max_input_size(model, layer) == size
    if layer in taps.spatial_trunk(model):
        assert taps.layer_output_shape(model, layer, size)[0] == cells
        assert taps.layer_output_shape(model, layer, size - 1)[0] < cells  # the smallest such size


def test_one_hot_code_at_the_centre_and_normaliser():
    model = geometry_only("caffe-ref")
    code = activation_max.unit_code(model, "conv5", 7, 183)
    assert code.shape == (11, 11, 256) and code.sum() == 1 and code[5, 5, 7] == 1
    even = activation_max.unit_code(model, "pool5", 3)  # 6x6 map: the upper-left of the four central cells
    assert even.shape == (6, 6, 256) and even[2, 2, 3] == 1
    fc = activation_max.unit_code(model, "fc8", 981)
    assert fc.shape == (1000,) and fc[981] == 1 and fc.sum() == 1
    assert activation_max.activation_max_normaliser(model, "conv5", 2.5) == pytest.approx(2.5 * 163 ** 2)
    assert activation_max.activation_max_normaliser(model, "fc8", 2.0) == pytest.approx(2.0 * 355 ** 2)
    with pytest.raises(ValueError, match="unit index 1000 out of range for layer 'fc8'.*0..999"):
        activation_max.unit_code(model, "fc8", 1000)
    problem = activation_max.activation_max_problem(model, "conv5")
    assert problem.loss == "inner_product" and problem.jitter == 4 and problem.bound == activation_max.AM_BOUND
    assert problem.C == activation_max.AM_C_PER_RHO2 * 163 ** 2
    assert activation_max.activation_max_problem(model, "conv5", C=1, bound=80).C == 1
    assert activation_max.class_score_layer(model) == "fc8"
    assert activation_max.is_class_layer(model, "prob") and not activation_max.is_class_layer(model, "relu7")


def test_maxima_over_a_small_reference_set_are_computed_once_and_cached(cifar_ref, tmp_path):
    reference = (np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3))).astype(np.uint8)
    maxima = activation_max.activation_maxima(cifar_ref, "conv2", reference, directory=str(tmp_path), log=lambda s: None)
    direct = cifar_ref.apply(cifar_ref.params, cifar_ref.preprocess(reference.astype(np.float32)), upto="conv2")["conv2"]
    np.testing.assert_allclose(maxima, np.asarray(direct).max(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
    path = activation_max.activation_maxima_path(cifar_ref, "conv2", reference, str(tmp_path))
    assert os.path.isfile(path) and os.path.basename(path).startswith(f"cifar-ref-{checkpoints.weights_fingerprint(cifar_ref.params)[:16]}-conv2-")
    np.save(path, np.full_like(maxima, 7.0))  # the second call reads the cache
    assert np.all(activation_max.activation_maxima(cifar_ref, "conv2", reference, directory=str(tmp_path)) == 7.0)
    assert activation_max.activation_maxima_path(cifar_ref, "conv2", reference[:5], str(tmp_path)) != path
    with pytest.raises(ValueError, match=r"reference images must be \(N, 32, 32, 3\)"):
        activation_max.activation_maxima(cifar_ref, "conv2", reference[:, :16], directory=str(tmp_path))


def test_a_unit_never_active_on_the_reference_set_is_refused_by_name(cifar_ref):
    maxima = np.ones(10, np.float32)
    maxima[4] = -2.5
    with pytest.raises(ValueError, match=r"unit 4 of layer 'fc8' never activates .*M = -2\.5"):
        activation_max.maximise_activation(cifar_ref, "fc8", [1, 4], restarts=1, maxima=maxima)


def test_activation_maximisation_beats_natural_images(cifar_ref, tmp_path):
    reference = datasets.reference_images(cifar_ref, 200)[0]
    maxima = activation_max.activation_maxima(cifar_ref, "relu2", reference, directory=str(tmp_path), log=lambda s: None)
    # Unit 40 of relu2 is inactive at the random starts: optimised through conv2, it still moves.
    result = activation_max.maximise_activation(cifar_ref, "relu2", [3, 40], restarts=2, maxima=maxima,
                                           stages=preimage.default_stages(150, 20))
    assert activation_max.maximised_layer(cifar_ref, "relu2") == "conv2" and activation_max.maximised_layer(cifar_ref, "fc8") == "fc8"
    assert result.input_size == 14 and result.images.shape == (2, 2, 14, 14, 3)
    assert result.probabilities is None
    np.testing.assert_allclose(result.normalisers, result.maxima * 11 ** 2)
    natural = cifar_ref.apply(cifar_ref.params, cifar_ref.preprocess(reference.astype(np.float32)), upto="relu2")["relu2"]
    natural = np.asarray(natural)[..., [3, 40]].reshape(-1, 2)
    # Above 99.9% of the unit's responses over 200 images x 256 positions.
    assert np.all(result.values > np.percentile(natural, 99.9, axis=0)[:, None]), (result.values, natural.max(0))


@pytest.mark.slow
def test_activation_maximisation_of_every_class_is_classified_as_that_class(cifar_ref):
    """The AM setting of docs/deep_visualisation.md (C = 3 rho^2, B = 160): every class, every restart, p >= 0.9."""
    result = activation_max.maximise_activation(cifar_ref, "fc8", list(range(10)), restarts=2)
    assert result.probabilities.shape == (10, 2)
    assert result.probabilities.min() >= 0.9, result.probabilities


def test_window_inversion_matches_only_the_window(cifar_ref):
    image = visualise.default_images(cifar_ref, 1)[0][0]
    result, box = visualise.invert_window(cifar_ref, image, "conv2", size=5, restarts=1, stages=QUICK)
    assert box == (6, 6, 25, 25)
    assert result.images.shape == (1, 1, 32, 32, 3) and result.masks.shape == (1, 16, 16, 128)
    assert result.errors[0, 0] < 0.3, result.errors
    # Outside the receptive field nothing constrains the pixels: they stay near the (random) start's smooth remains.
    inside = result.null_mean[0, 0, 6:25, 6:25]
    outside = np.concatenate([result.null_mean[0, 0, :4].ravel(), result.null_mean[0, 0, -4:].ravel()])
    assert np.abs(inside).mean() > 2 * np.abs(outside).mean()


def test_channel_groups_are_inverted_together(cifar_ref):
    image = visualise.default_images(cifar_ref, 1)[0][0]
    groups = visualise.equal_channel_split(cifar_ref, "relu1", 2)
    result, used = visualise.invert_channel_groups(cifar_ref, image, "relu1", groups, restarts=1, stages=QUICK)
    assert [list(g) for g in used] == [list(range(32)), list(range(32, 64))]
    assert result.images.shape[:2] == (2, 1) and np.all(result.errors < 0.5), result.errors
    with pytest.raises(ValueError, match="cannot split the 64 channels"):
        visualise.equal_channel_split(cifar_ref, "relu1", 65)


def test_caricature_starts_from_the_image_and_exaggerates_it(cifar_ref):
    problem = preimage.Problem(jitter=3)
    start = preimage.start_from(np.arange(12, dtype=np.float32).reshape(2, 2, 3), problem, restarts=2)
    assert start.shape == (2, 4, 4, 3) and np.all(start[:, 3, 3] == start[:, 1, 1])
    images = visualise.default_images(cifar_ref, 2)[0]
    result = visualise.caricature(cifar_ref, images, "relu2", restarts=1, stages=QUICK)
    assert result.images.shape == (2, 1, 32, 32, 3)
    assert np.all(result.gain > 1.5), result.gain  # <Phi(x*), Phi0> / ||Phi0||^2 is 1 at x0
