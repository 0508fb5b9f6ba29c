"""Feature perturbations and random feature vectors (Dosovitskiy & Brox, CVPR 2016, Sects. 5.4-5.5)."""
import jax
import numpy as np
import pytest

from jaxinv.studies import perturbations as P


def relu_features(seed=0, shape=(6, 4, 4, 8), density=0.4):
    """Post-ReLU-like features: non-negative, about (1 - density) exact zeros."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 1.0, shape).astype(np.float32)
    return np.where(rng.random(shape) < density, x, 0.0).astype(np.float32)


def norms(x):
    x = np.asarray(x, np.float64)
    return np.linalg.norm(x.reshape(len(x), -1), axis=1)


def test_binarise_keeps_pattern_and_norm():
    phi = relu_features()
    out = np.asarray(P.binarise(phi))
    assert out.shape == phi.shape and out.dtype == np.float32
    np.testing.assert_allclose(norms(out), norms(phi), rtol=1e-5)
    for o, p in zip(out.reshape(len(out), -1), phi.reshape(len(phi), -1)):
        np.testing.assert_array_equal(o == 0, p == 0)  # zeros stay zero, actives stay active
        active = o[p > 0]
        np.testing.assert_allclose(active, np.linalg.norm(p) / np.sqrt(active.size), rtol=1e-5)


def test_binarise_of_signed_features_uses_the_sign():
    phi = np.array([[3.0, -4.0, 0.0, 0.0]], np.float32)  # norm 5, two non-zeros
    np.testing.assert_allclose(P.binarise(phi), [[5 / np.sqrt(2), -5 / np.sqrt(2), 0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(P.binarise(np.zeros((2, 3), np.float32)), np.zeros((2, 3)))
    np.testing.assert_allclose(jax.jit(P.binarise)(phi), P.binarise(phi))


def test_dropout_zeroes_exactly_the_rate_and_keeps_the_norm():
    rng = np.random.default_rng(1)
    phi = rng.uniform(0.5, 2.0, (5, 10, 10)).astype(np.float32)  # no zeros: every drop is visible
    out = np.asarray(P.dropout(phi, jax.random.key(0), 0.5))
    flat_out, flat_phi = out.reshape(5, -1), phi.reshape(5, -1)
    assert np.all((flat_out == 0).sum(axis=1) == 50)
    np.testing.assert_allclose(norms(out), norms(phi), rtol=1e-5)
    for o, p in zip(flat_out, flat_phi):  # survivors are the originals times one factor
        ratio = o[o != 0] / p[o != 0]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
        assert ratio[0] > 1
    masks = flat_out != 0
    assert not np.array_equal(masks[0], masks[1])  # independent per vector
    np.testing.assert_array_equal(out, P.dropout(phi, jax.random.key(0), 0.5))  # seeded
    assert not np.array_equal(out, P.dropout(phi, jax.random.key(1), 0.5))
    assert np.all((np.asarray(P.dropout(phi, jax.random.key(0), 0.3)).reshape(5, -1) == 0).sum(1) == 30)


def test_drop_smallest_removes_the_least_active_half():
    phi = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 5.0],
                    [-6.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    out = np.asarray(P.drop_smallest(phi, 0.5))
    # Row 0: five non-zeros, floor(2.5) = 2 smallest (1, 2) dropped; row 1: one of two (0.5) dropped.
    kept0 = np.array([0, 0, 0, 3, 4, 0, 5], np.float64)
    np.testing.assert_allclose(out[0], kept0 * norms(phi)[0] / np.linalg.norm(kept0), rtol=1e-6)
    np.testing.assert_allclose(out[1], [-np.linalg.norm(phi[1]), 0, 0, 0, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(norms(out), norms(phi), rtol=1e-6)
    np.testing.assert_array_equal(P.drop_smallest(phi, 0.0), phi)


def test_drop_smallest_then_binarise():
    phi = relu_features(2)
    out = np.asarray(P.drop_smallest_then_binarise(phi, 0.5)).reshape(len(phi), -1)
    flat = phi.reshape(len(phi), -1)
    for o, p in zip(out, flat):
        k = np.count_nonzero(p)
        assert np.count_nonzero(o) == k - k // 2
        assert np.min(p[o != 0]) >= np.max(p[(o == 0) & (p != 0)])  # the largest ones survive
        assert np.unique(o[o != 0]).size == 1
    np.testing.assert_allclose(norms(out), norms(phi), rtol=1e-5)


def test_top_k_and_its_complement():
    phi = np.array([[0.5, 5.0, -3.0, 2.0, 7.0, 1.0, 6.0, -1.0, 4.0, 3.0]], np.float32)
    top = np.asarray(P.keep_top_k(phi, 5))
    np.testing.assert_array_equal(top, [[0, 5, 0, 0, 7, 0, 6, 0, 4, 3]])
    rest = np.asarray(P.drop_top_k(phi, 5))
    np.testing.assert_array_equal(rest, [[0.5, 0, -3, 2, 0, 1, 0, -1, 0, 0]])
    np.testing.assert_array_equal(top + rest, phi)
    ties = np.ones((2, 6), np.float32)
    assert np.count_nonzero(P.keep_top_k(ties, 5), axis=1).tolist() == [5, 5]
    with pytest.raises(ValueError, match="k must be"):
        P.keep_top_k(phi, 11)


def test_interpolation_endpoints_and_midpoint():
    a, b = relu_features(3, (2, 3, 3, 4)), relu_features(4, (2, 3, 3, 4))
    out = np.asarray(P.interpolate(a, b, [0.0, 0.25, 1.0]))
    assert out.shape == (2, 3, 3, 3, 4)
    np.testing.assert_allclose(out[:, 0], a, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], b, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], 0.75 * a + 0.25 * b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="same shape"):
        P.interpolate(a, b[:1], [0.5])


def test_histogram_sampling_preserves_sparsity_and_marginals():
    m, d = 4096, 6
    rng = np.random.default_rng(5)
    sparsity = np.array([0.0, 0.3, 0.6, 0.9, 1.0, 0.5])
    real = rng.exponential(1.0, (m, d)) * (rng.random((m, d)) >= sparsity)
    real[:, 5] = np.where(real[:, 5] != 0, 2.5, 0.0)  # a dimension with one non-zero value
    h = P.fit_histograms(real.astype(np.float32), bins=32, block=4)  # blocks of 4 dims: 2 blocks
    np.testing.assert_allclose(h.zero_fraction, (real == 0).mean(0), atol=1e-7)
    assert h.counts.sum(axis=1).tolist() == np.count_nonzero(real, axis=0).tolist()
    n = 20000
    samples = np.asarray(P.sample_histograms(h, jax.random.key(0), n))
    assert samples.shape == (n, d)
    # Zero fraction: within 5 binomial standard deviations of the real one.
    tolerance = 5 * np.sqrt(h.zero_fraction * (1 - h.zero_fraction) / n) + 1e-9
    assert np.all(np.abs((samples == 0).mean(0) - h.zero_fraction) <= tolerance)
    assert np.all(samples[:, 4] == 0) and set(np.unique(samples[:, 5])) <= {0.0, 2.5}
    nonzero_real, nonzero_sampled = real[:, 1][real[:, 1] != 0], samples[:, 1][samples[:, 1] != 0]
    assert nonzero_sampled.min() >= nonzero_real.min() and nonzero_sampled.max() <= nonzero_real.max()
    # Quartiles of the non-zero values agree to within a bin width (histograms are binned).
    width = (nonzero_real.max() - nonzero_real.min()) / 32
    np.testing.assert_allclose(np.quantile(nonzero_sampled, [0.25, 0.5, 0.75]),
                               np.quantile(nonzero_real, [0.25, 0.5, 0.75]), atol=width)


def test_gaussian_fits_and_clips():
    rng = np.random.default_rng(6)
    m = 1000
    z = rng.normal(size=(m, 3)) @ np.array([[1.0, 0.8, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 2.0]])
    real = (z + [0.5, 1.0, -3.0]).astype(np.float32)
    n = 20000
    for covariance in ("diagonal", "full"):
        g = P.fit_gaussian(real, covariance)
        assert not g.nonnegative  # real has negative values: no clipping
        s = np.asarray(P.sample_gaussian(g, jax.random.key(1), n), np.float64)
        np.testing.assert_allclose(s.mean(0), real.mean(0), atol=0.05)
        np.testing.assert_allclose(s.std(0), real.std(0), rtol=0.03)
        correlation = np.corrcoef(s.T)[0, 1]
        real_correlation = np.corrcoef(real.T)[0, 1]  # 0.8
        if covariance == "full":
            assert abs(correlation - real_correlation) < 0.03
        else:
            assert abs(correlation) < 0.03
    relu = relu_features(7, (500, 12))
    g = P.fit_gaussian(relu)
    assert g.nonnegative
    s = np.asarray(P.sample_gaussian(g, jax.random.key(2), 1000))
    assert s.shape == (1000, 12) and s.min() == 0.0 and np.mean(s == 0) > 0.05


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="leading batch axis"):
        P.binarise(np.ones(5, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        P.binarise(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="rate must be in"):
        P.dropout(np.ones((1, 4)), jax.random.key(0), 1.5)
    with pytest.raises(ValueError, match="covariance must be"):
        P.fit_gaussian(np.ones((3, 4)), "spherical")
    with pytest.raises(ValueError, match="unknown perturbation"):
        P.perturb("noise", np.ones((1, 4)), jax.random.key(0))
    with pytest.raises(ValueError, match="bins must be"):
        P.fit_histograms(np.ones((3, 4)), bins=0)
