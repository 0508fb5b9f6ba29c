"""Feature perturbations and random feature vectors of Dosovitskiy & Brox, *Inverting visual
representations with convolutional networks* (CVPR 2016), Sects. 5.4-5.5.

Every function is batched over a leading axis: `features` has shape (N, ...) and holds N feature
vectors; a "feature vector" is one item's whole layer output, flattened (all H x W x C values of a
convolutional map, all units of a fully connected layer), and norms are Euclidean norms of it.
Outputs have the input's shape and dtype float32. Randomness comes from an explicit
`jax.random` key, so every perturbation is reproducible from its seed.

Zeros and negative values. The paper perturbs AlexNet's post-ReLU features (non-negative). These
functions are defined for any real features, through the sign: a positive entry counts as
"active" with value +1, a negative one as -1 and an exact zero stays 0. On post-ReLU features this
is the paper's definition (positive -> 1, zero -> 0); on pre-ReLU features (conv1, fc8 logits) the
negative entries keep their sign instead of being treated as inactive. "Smallest activations"
means smallest magnitude |x|. A vector whose perturbation leaves no non-zero entry becomes the zero
vector (its norm cannot be preserved).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _check_batch(features, what: str = "features"):
    """The features as float32 (N, D) (flattened per item) and the original shape."""
    shape = getattr(features, "shape", None)
    if shape is None:
        raise TypeError(f"{what} must be an array, got {type(features).__name__}")
    if len(shape) < 2:
        raise ValueError(f"{what} must have a leading batch axis and at least one feature axis, "
                         f"shape (N, ...); got shape {tuple(shape)}")
    if shape[0] < 1 or int(np.prod(shape[1:])) < 1:
        raise ValueError(f"{what} of shape {tuple(shape)} is empty")
    if not isinstance(features, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(features))):
        raise ValueError(f"{what} contains non-finite values (NaN or inf)")
    return jnp.asarray(features, jnp.float32).reshape(shape[0], -1), tuple(shape)


def _numpy_batch(features, what: str = "features"):
    """As `_check_batch`, as a float32 numpy array (statistics are fitted with numpy)."""
    shape = getattr(features, "shape", None)
    if shape is None or isinstance(features, jax.core.Tracer):
        raise TypeError(f"{what} must be a concrete array")
    _check_batch(features[:1], what)  # shape checks without converting everything to jnp
    x = np.asarray(features, np.float32).reshape(shape[0], -1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains non-finite values (NaN or inf)")
    return x, tuple(shape)


def _check_fraction(value: float, name: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
    return float(value)


def _rescale(vectors, target_norms):
    """Scales each row of `vectors` (N, D) to the norm in `target_norms` (N,); zero rows stay zero."""
    norms = jnp.linalg.norm(vectors, axis=1)
    scale = jnp.where(norms > 0, target_norms / jnp.where(norms > 0, norms, 1.0), 0.0)
    return vectors * scale[:, None]


def binarise(features):
    """Binarisation (Sect. 5.4): every entry is replaced by its sign (+1 active, -1 negative, 0 for
    an exact zero), then each feature vector is scaled to the Euclidean norm of the original:
    the output is sign(phi) * ||phi|| / sqrt(#non-zeros). On post-ReLU features every active unit
    gets the same value and the inactive ones stay 0: only the pattern of active units is kept."""
    flat, shape = _check_batch(features)
    return _rescale(jnp.sign(flat), jnp.linalg.norm(flat, axis=1)).reshape(shape)


def dropout(features, key, rate: float = 0.5):
    """Dropout (Sect. 5.4): in each feature vector of D entries exactly round(rate * D) entries,
    chosen uniformly at random without replacement (independently per vector, from `key`), are
    set to zero; the vector is then scaled back to its original Euclidean norm."""
    rate = _check_fraction(rate, "rate")
    flat, shape = _check_batch(features)
    n, d = flat.shape
    num_dropped = int(round(rate * d))
    # The rank of an entry in a uniformly random permutation: drop the first num_dropped.
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(key, (n, d)), axis=1), axis=1)
    kept = jnp.where(ranks >= num_dropped, flat, 0.0)
    return _rescale(kept, jnp.linalg.norm(flat, axis=1)).reshape(shape)


def drop_smallest(features, fraction: float = 0.5):
    """Dropout of the least active units (Sect. 5.4): in each feature vector with K non-zero
    entries, the floor(fraction * K) non-zero entries of smallest magnitude |phi| are set to zero
    (ties broken by position, earlier first); the vector is then scaled back to its original
    Euclidean norm."""
    fraction = _check_fraction(fraction, "fraction")
    flat, shape = _check_batch(features)
    magnitude = jnp.where(flat != 0, jnp.abs(flat), jnp.inf)  # zeros rank after every non-zero
    ranks = jnp.argsort(jnp.argsort(magnitude, axis=1, stable=True), axis=1, stable=True)
    num_dropped = jnp.floor(fraction * jnp.sum(flat != 0, axis=1))
    kept = jnp.where(ranks >= num_dropped[:, None], flat, 0.0)
    return _rescale(kept, jnp.linalg.norm(flat, axis=1)).reshape(shape)


def drop_smallest_then_binarise(features, fraction: float = 0.5):
    """`drop_smallest` followed by `binarise` (Sect. 5.4): keeps only the positions (and signs) of
    the largest-magnitude (1 - fraction) of the non-zero entries, all with one value, at the
    original vector's Euclidean norm (both steps preserve it)."""
    return binarise(drop_smallest(features, fraction))


def _top_k_mask(flat, k: int):
    """Boolean (N, D): the k largest values of each row (ties broken by position, earlier first)."""
    order = jnp.argsort(-flat, axis=1, stable=True)
    ranks = jnp.argsort(order, axis=1, stable=True)
    return ranks < k


def _check_k(k: int, d: int) -> int:
    if int(k) != k or not 0 <= k <= d:
        raise ValueError(f"k must be an integer in [0, {d}] (the feature dimension); got {k}")
    return int(k)


def keep_top_k(features, k: int = 5):
    """fc8 with only the top-k activations (Sect. 5.4, k = 5): the k largest values of each vector
    (largest value, not magnitude: the most active classes) are kept, all others set to zero.
    No rescaling."""
    flat, shape = _check_batch(features)
    k = _check_k(k, flat.shape[1])
    return jnp.where(_top_k_mask(flat, k), flat, 0.0).reshape(shape)


def drop_top_k(features, k: int = 5):
    """fc8 with all but the top-k activations (Sect. 5.4, k = 5): the k largest values of each
    vector are set to zero, all others kept. No rescaling. Complement of `keep_top_k`:
    keep_top_k(phi, k) + drop_top_k(phi, k) == phi."""
    flat, shape = _check_batch(features)
    k = _check_k(k, flat.shape[1])
    return jnp.where(_top_k_mask(flat, k), 0.0, flat).reshape(shape)


def interpolate(features_a, features_b, ts: Sequence[float]):
    """Linear interpolation between two images' features (Sect. 5.5): (1 - t) phi_a + t phi_b for
    each t in `ts`. Batched: features_a and features_b of shape (N, ...) give (N, len(ts), ...)."""
    a, shape_a = _check_batch(features_a, "features_a")
    b, shape_b = _check_batch(features_b, "features_b")
    if shape_a != shape_b:
        raise ValueError(f"features_a and features_b must have the same shape; got {shape_a} and {shape_b}")
    ts = np.asarray(ts, np.float32)
    if ts.ndim != 1 or ts.size < 1 or not np.all(np.isfinite(ts)):
        raise ValueError(f"ts must be a non-empty 1-D sequence of finite numbers; got {ts!r}")
    t = jnp.asarray(ts)[None, :, None]
    out = (1.0 - t) * a[:, None, :] + t * b[:, None, :]
    return out.reshape((shape_a[0], ts.size) + shape_a[1:])


@dataclasses.dataclass(frozen=True)
class Histograms:
    """Per-dimension histograms of M feature vectors (`fit_histograms`). Arrays over the D
    flattened dimensions: `zero_fraction` (D,) the fraction of exact zeros (the real sparsity),
    `low`/`high` (D,) the range of the non-zero values, `counts` (D, bins) the non-zero values in
    `bins` equal-width bins of [low, high]; `shape` one vector's shape."""
    zero_fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray
    counts: np.ndarray
    shape: tuple
    num_vectors: int


def fit_histograms(features, bins: int = 64, block: int = 4096) -> Histograms:
    """The empirical distribution of each feature dimension over M vectors (Sect. 5.5: M = 4096
    training images), as a point mass at zero (weight: the fraction of the M values that are
    exactly 0) plus a `bins`-bin equal-width histogram of the non-zero values over their range.
    Computed in blocks of `block` dimensions (memory ~ M x block)."""
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins}")
    x, shape = _numpy_batch(features)
    m, d = x.shape
    zero_fraction, low, high = np.empty(d, np.float32), np.empty(d, np.float32), np.empty(d, np.float32)
    counts = np.empty((d, bins), np.int32)
    for start in range(0, d, block):
        xb = x[:, start:start + block].astype(np.float64)
        nonzero = xb != 0
        lo = np.where(nonzero, xb, np.inf).min(axis=0)
        hi = np.where(nonzero, xb, -np.inf).max(axis=0)
        empty = ~np.isfinite(lo)  # dimensions that are zero for every vector
        lo, hi = np.where(empty, 0.0, lo), np.where(empty, 0.0, hi)
        width = np.where(hi > lo, hi - lo, 1.0)
        index = np.clip(np.floor((xb - lo) / width * bins), 0, bins - 1).astype(np.int64)
        columns = xb.shape[1]
        flat_index = (np.arange(columns)[None, :] * bins + index)[nonzero]
        counts[start:start + columns] = np.bincount(flat_index, minlength=columns * bins).reshape(columns, bins)
        zero_fraction[start:start + columns] = (~nonzero).mean(axis=0)
        low[start:start + columns], high[start:start + columns] = lo, hi
    return Histograms(zero_fraction=zero_fraction, low=low, high=high, counts=counts, shape=shape[1:],
                      num_vectors=m)


def sample_histograms(histograms: Histograms, key, num_samples: int):
    """Random feature vectors (Sect. 5.5), each dimension drawn independently from its histogram:
    0 with probability `zero_fraction`, otherwise a bin chosen in proportion to its count and a
    value uniform within the bin. Dimensions keep their real sparsity; correlations between
    dimensions are not modelled. Returns (num_samples,) + histograms.shape, float32."""
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer; got {num_samples}")
    h = histograms
    d, bins = h.counts.shape
    k_zero, k_bin, k_within = jax.random.split(key, 3)
    is_zero = jax.random.uniform(k_zero, (num_samples, d)) < jnp.asarray(h.zero_fraction)
    counts = jnp.asarray(h.counts, jnp.float32)
    cdf = jnp.cumsum(counts, axis=1) / jnp.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    u = jax.random.uniform(k_bin, (num_samples, d))
    # Inverse CDF per dimension: the first bin whose cumulative share exceeds u.
    search = jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"), in_axes=(0, 1), out_axes=1)
    chosen = jnp.minimum(search(cdf, u), bins - 1)
    width = (jnp.asarray(h.high) - jnp.asarray(h.low)) / bins
    value = jnp.asarray(h.low) + (chosen + jax.random.uniform(k_within, (num_samples, d))) * width
    return jnp.where(is_zero, 0.0, value).reshape((num_samples,) + tuple(h.shape))


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """A Gaussian fit of M feature vectors (`fit_gaussian`): `mean` (D,); for covariance="diagonal"
    `scale` (D,) the per-dimension standard deviations, for "full" `scale` (M, D) the centred
    vectors divided by sqrt(M - 1) (so the covariance is scale.T @ scale); `nonnegative` whether
    samples are clipped at zero; `shape` one vector's shape."""
    mean: np.ndarray
    scale: np.ndarray
    covariance: str
    nonnegative: bool
    shape: tuple


def fit_gaussian(features, covariance: str = "diagonal", nonnegative: bool | None = None) -> Gaussian:
    """Fits a Gaussian to M feature vectors (rows): the sample mean and either the per-dimension
    standard deviations (covariance="diagonal") or the full sample covariance (covariance="full",
    stored as its M x D square-root factor, never as a D x D matrix). `nonnegative` (default: whether
    every fitted value is >= 0, i.e. post-ReLU features) makes `sample_gaussian` clip at zero."""
    if covariance not in ("diagonal", "full"):
        raise ValueError(f"covariance must be 'diagonal' or 'full'; got {covariance!r}")
    x, shape = _numpy_batch(features)
    if len(x) < 2:
        raise ValueError(f"a Gaussian fit needs at least 2 feature vectors; got {len(x)}")
    mean = x.mean(axis=0, dtype=np.float64)
    if covariance == "diagonal":
        scale = x.std(axis=0, ddof=1, dtype=np.float64)
    else:
        scale = (x - mean.astype(np.float32)) / np.float32(np.sqrt(len(x) - 1))
    if nonnegative is None:
        nonnegative = bool(np.all(x >= 0))
    return Gaussian(mean=mean.astype(np.float32), scale=scale.astype(np.float32), covariance=covariance,
                    nonnegative=bool(nonnegative), shape=shape[1:])


def sample_gaussian(gaussian: Gaussian, key, num_samples: int):
    """Random feature vectors from a Gaussian fit (Sect. 5.5's alternative to histograms): z ~
    N(mean, Sigma) with Sigma diagonal or the full sample covariance (drawn exactly as mean +
    w @ scale with w ~ N(0, I_M)); for non-negative (post-ReLU) features every negative value is
    then set to 0 (a rectified Gaussian: clipping, not rejection, so the fraction of zeros is
    P(z_d < 0) rather than the real sparsity). Returns (num_samples,) + gaussian.shape, float32."""
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer; got {num_samples}")
    g = gaussian
    mean, scale = jnp.asarray(g.mean), jnp.asarray(g.scale)
    if g.covariance == "diagonal":
        z = mean + scale * jax.random.normal(key, (num_samples, mean.shape[0]))
    else:
        z = mean + jax.random.normal(key, (num_samples, scale.shape[0])) @ scale
    if g.nonnegative:
        z = jnp.maximum(z, 0.0)
    return z.reshape((num_samples,) + tuple(g.shape))


def sparsity(features):
    """The fraction of exact zeros of each dimension over the vectors (N, ...) -> (...)."""
    flat, shape = _check_batch(features)
    return np.asarray(jnp.mean(flat == 0, axis=0)).reshape(shape[1:])


# The perturbations of Sect. 5.4 by name, as the studies use them: name -> (features, key) -> features.
PERTURBATIONS = {
    "binarised": lambda phi, key: binarise(phi),
    "dropout50": lambda phi, key: dropout(phi, key, 0.5),
    "drop50-smallest": lambda phi, key: drop_smallest(phi, 0.5),
    "drop50-smallest-binarised": lambda phi, key: drop_smallest_then_binarise(phi, 0.5),
}


def perturb(name: str, features, key):
    """Applies the Sect. 5.4 perturbation `name` (one of PERTURBATIONS) to (N, ...) features."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[name](features, key)
