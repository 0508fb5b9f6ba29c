"""The Sect. 5.4-5.5 studies on a toy inverter whose answers are known: identity codes."""
import jax
import numpy as np
import pytest

from jaxinv.studies import inverter_features as S
from jaxinv.studies import perturbations as P


def identity_pair(shape=(4, 4, 3)):
    """encode: image -> flat vector of its pixels; decode: the inverse (an exact inverter)."""
    return (lambda x: np.asarray(x, np.float32).reshape(len(x), -1),
            lambda phi: np.asarray(phi, np.float32).reshape((len(phi),) + shape))


def toy_images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 4, 4, 3)) * 255 * (rng.random((n, 4, 4, 3)) < 0.5)).astype(np.float32)


def test_normalised_error_by_hand():
    images = np.zeros((3, 2, 2, 3), np.float32)
    images[1] += 1.0  # distances: |0-1| = sqrt(12), |0-2| = 2 sqrt(12), |1-2| = sqrt(12)
    images[2] += 2.0
    reconstructions = images.copy()
    reconstructions[0] += 0.5  # distance sqrt(12) / 2, the others exact
    expected = (np.sqrt(12) / 2 / 3) / (4 * np.sqrt(12) / 3)
    assert S.normalised_image_error(images, reconstructions) == pytest.approx(expected)
    with pytest.raises(ValueError, match="do not match"):
        S.normalised_image_error(images, reconstructions[:2])


def test_perturbation_study_with_an_exact_inverter():
    encode, decode = identity_pair()
    images = toy_images()
    study = S.perturbation_study(encode, decode, images, P.PERTURBATIONS, jax.random.key(0), batch_size=4)
    assert list(study) == ["unperturbed"] + list(P.PERTURBATIONS)
    assert study["unperturbed"]["error"] == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(study["binarised"]["reconstructions"],
                               np.asarray(P.binarise(images)), rtol=1e-6)
    for name in P.PERTURBATIONS:
        error = study[name]["error"]
        manual = S.normalised_image_error(images, study[name]["reconstructions"])
        assert 0 < error == pytest.approx(manual)
    top = S.perturbation_study(encode, decode, images, S.top_k_perturbations(3), jax.random.key(0))
    np.testing.assert_allclose(top["top3"]["reconstructions"] + top["all-but-top3"]["reconstructions"], images)


def test_interpolation_frames_and_even_steps():
    encode, decode = identity_pair()
    a, b = toy_images(2, 1), toy_images(2, 2)
    frames = S.interpolation_images(encode, decode, a, b, np.linspace(0, 1, 5))
    assert frames.shape == (2, 5, 4, 4, 3)
    np.testing.assert_allclose(frames[:, 0], a, atol=1e-4)
    np.testing.assert_allclose(frames[:, -1], b, atol=1e-4)
    steps = S.interpolation_steps(frames)
    assert steps.shape == (2, 4)
    np.testing.assert_allclose(steps, steps[:, :1] * np.ones((1, 4)), rtol=1e-4)  # linear decoder: equal steps


def test_random_feature_study_reports_sparsity():
    rng = np.random.default_rng(3)
    real = (rng.exponential(1.0, (2000, 48)) * (rng.random((2000, 48)) < 0.2)).astype(np.float32)  # 80% zeros
    _, decode = identity_pair()
    study = S.random_feature_study(decode, real, jax.random.key(0), 400, bins=16)
    assert set(study) == {"histogram", "gaussian-diagonal", "gaussian-full"}
    assert study["histogram"]["images"].shape == (400, 4, 4, 3)
    assert study["histogram"]["real_zero_fraction"] == pytest.approx(np.mean(real == 0))
    assert abs(study["histogram"]["zero_fraction"] - np.mean(real == 0)) < 0.02
    # Mean 0.2, std ~0.49 per dimension: the rectified Gaussian is zero about 35% of the time, not 80%.
    assert study["gaussian-diagonal"]["zero_fraction"] < 0.5
    assert study["histogram"]["contrast"] == pytest.approx(S.contrast(study["histogram"]["images"]))


def test_contrast_is_the_mean_pixel_std():
    flat = np.full((2, 4, 4, 3), 100.0)
    checker = np.zeros((1, 4, 4, 3))
    checker[:, ::2] = 200.0  # half 0, half 200: std 100
    assert S.contrast(flat) == 0.0
    assert S.contrast(np.concatenate([checker, flat[:1]])) == pytest.approx(50.0)


def test_error_plot_skips_missing_layers(tmp_path):
    from PIL import Image
    path = S.plot_error_vs_layer(str(tmp_path / "e.png"), {"a": {"pool1": 0.2, "fc8": 0.6}, "b": {"fc8": 0.7}},
                                 ["pool1", "pool2", "fc8"], "title")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 200
