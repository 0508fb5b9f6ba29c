"""The studies of Dosovitskiy & Brox (CVPR 2016) Sects. 5.4-5.5 on a trained inverter: what a
decoder f reconstructs from perturbed, interpolated and random feature vectors.

The functions take two callables on batches, so they work with any representation and inverter:
`encode(images) -> features` (N, ...) and `decode(features) -> images` (N, H, W, 3), RGB [0, 255].
The error is the paper's image-space normalised error (`jaxinv.inverters.image_error`).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import numpy as np

from jaxinv.inverters import metrics
from jaxinv.studies import perturbations as P


def normalised_image_error(images, reconstructions) -> float:
    """The paper's reconstruction error (Sect. 5.1): mean_i ||x_i - f(phi_i)|| / N, N the mean
    Euclidean distance between distinct images of the set (`jaxinv.inverters.image_error`, with the
    originals first as in the rest of this module)."""
    return metrics.image_error(reconstructions, images)


def in_batches(fn: Callable, x, batch_size: int = 256) -> np.ndarray:
    """fn applied to consecutive slices of x (leading axis), concatenated as numpy."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    return np.concatenate([np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def perturbation_study(encode: Callable, decode: Callable, images, perturbations: Mapping[str, Callable],
                       key, *, error=normalised_image_error, batch_size: int = 256) -> dict:
    """Sect. 5.4: the images' features, perturbed by each of `perturbations` (name -> fn(features,
    key) -> features, e.g. `perturbations.PERTURBATIONS`), decoded. Returns {name: {"error",
    "reconstructions"}} with "unperturbed" first; each perturbation gets its own key
    (fold_in(key, i)) for all images at once."""
    features = in_batches(encode, images, batch_size)
    results = {}
    for i, (name, perturb) in enumerate([("unperturbed", lambda phi, k: phi)] + list(perturbations.items())):
        changed = np.asarray(perturb(features, jax.random.fold_in(key, i)))
        reconstructions = in_batches(decode, changed, batch_size)
        results[name] = {"error": error(images, reconstructions), "reconstructions": reconstructions}
    return results


def interpolation_images(encode: Callable, decode: Callable, images_a, images_b, ts: Sequence[float]) -> np.ndarray:
    """Sect. 5.5: f((1 - t) phi(a) + t phi(b)) for each pair (a, b) and each t: (pairs, len(ts), H, W, 3)."""
    mixed = np.asarray(P.interpolate(np.asarray(encode(images_a)), np.asarray(encode(images_b)), ts))
    pairs, steps = mixed.shape[:2]
    frames = np.asarray(decode(mixed.reshape((pairs * steps,) + mixed.shape[2:])))
    return frames.reshape((pairs, steps) + frames.shape[1:])


def interpolation_steps(frames) -> np.ndarray:
    """Euclidean image distances between consecutive frames of interpolations (pairs, T, ...) ->
    (pairs, T - 1): equal steps mean the decoded path moves evenly (smoothly) between the images."""
    frames = np.asarray(frames, np.float64)
    flat = frames.reshape(frames.shape[:2] + (-1,))
    return np.linalg.norm(np.diff(flat, axis=1), axis=2)


def fit_samplers(real_features, *, bins: int = 64, covariances: Sequence[str] = ("diagonal", "full")) -> dict:
    """Sect. 5.5's distributions of random feature vectors fitted to real ones (M, ...):
    {"histogram": per-dimension histograms, "gaussian-<covariance>": rectified Gaussian fits}."""
    samplers = {"histogram": P.fit_histograms(real_features, bins)}
    for covariance in covariances:
        samplers[f"gaussian-{covariance}"] = P.fit_gaussian(real_features, covariance)
    return samplers


def sample(sampler, key, num_samples: int):
    """Draws `num_samples` random feature vectors from a `fit_samplers` entry."""
    if isinstance(sampler, P.Histograms):
        return P.sample_histograms(sampler, key, num_samples)
    if isinstance(sampler, P.Gaussian):
        return P.sample_gaussian(sampler, key, num_samples)
    raise TypeError(f"not a fitted sampler: {type(sampler).__name__}")


def random_feature_study(decode: Callable, real_features, key, num_samples: int, *, bins: int = 64,
                         covariances: Sequence[str] = ("diagonal", "full")) -> dict:
    """Sect. 5.5: images decoded from random feature vectors of each sampler fitted to
    `real_features`. Returns {sampler: {"images", "zero_fraction", "real_zero_fraction",
    "contrast"}}: the mean fraction of exact zeros of the sampled and of the real vectors (the
    sparsity) and the decoded images' `contrast`."""
    real_zero_fraction = float(np.mean(np.asarray(real_features) == 0))
    results = {}
    for i, (name, sampler) in enumerate(fit_samplers(real_features, bins=bins, covariances=covariances).items()):
        features = np.asarray(sample(sampler, jax.random.fold_in(key, i), num_samples))
        decoded = np.asarray(decode(features))
        results[name] = {"images": decoded, "zero_fraction": float(np.mean(features == 0)),
                         "real_zero_fraction": real_zero_fraction, "contrast": contrast(decoded)}
    return results


def contrast(images) -> float:
    """The mean over images of each image's pixel standard deviation (all pixels and channels, in
    grey levels): flat, washed-out decodings score low, structured natural images higher."""
    x = np.asarray(images, np.float64)
    return float(np.mean(x.reshape(len(x), -1).std(axis=1)))


def top_k_perturbations(k: int = 5) -> dict:
    """Sect. 5.4's fc8 study as perturbations: only the top-k activations vs all but the top-k."""
    return {f"top{k}": lambda phi, key: P.keep_top_k(phi, k),
            f"all-but-top{k}": lambda phi, key: P.drop_top_k(phi, k)}


def plot_error_vs_layer(path: str, errors: Mapping[str, Mapping[str, float]], layers: Sequence[str],
                        title: str = "") -> str:
    """Line plot of the normalised error per layer (x: layers in network order), one line per
    entry of `errors` ({line label: {layer: error}}; layers a line lacks are skipped), as the
    paper's Figs. 7 and 9. Written atomically as PNG."""
    from jaxinv.io import outputs

    plt = outputs.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    positions = {layer: i for i, layer in enumerate(layers)}
    for label, per_layer in errors.items():
        shown = [layer for layer in layers if layer in per_layer]
        ax.plot([positions[layer] for layer in shown], [per_layer[layer] for layer in shown], marker="o", label=label)
    ax.set_xticks(range(len(layers)), list(layers))
    ax.set_xlabel("layer")
    ax.set_ylabel("normalised image error")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return outputs.save_figure(path, fig)
