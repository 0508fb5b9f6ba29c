"""Visualising deep networks with natural pre-images (IJCV 2016 Sects. 5.3-7).

- inversion from any layer with the papers' per-layer settings and K vmapped restarts (Fig. 12);
- inversion from selected components with the mask loss (Eq. 3): a central window of a layer's
  map with its receptive field box (Fig. 13), or a group of channels (Fig. 14);
- activation maximisation (Sect. 6) is `jaxinv.methods.activation_max`;
- caricatures (Sect. 7): Phi0 = max(0, Phi(x0)), Z = ||Phi0||^2, starting from x0.

Images given and returned are RGB in [0, 255], (H, W, 3); the engine optimises null-mean images
(the image minus the model's mean colour), which the results also carry. Every function takes any
model (`jaxinv.models`): a layer-table network or your own adapted one.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.engine import preimage
from jaxinv.io import datasets, images
from jaxinv.io import progress as bars
from jaxinv import models
from jaxinv.methods import inversion, metrics, windows
from jaxinv.nets import cifar10
from jaxinv.engine.preimage import Problem, Representation, Stage, Target

# ---------------------------------------------------------------------------------------------
# Images a network is shown by default


def default_images(model, num_images: int = 1, *, data_dir: str | None = None) -> tuple[np.ndarray, list[str]]:
    """The images a visualisation of `model` (any model, `jaxinv.models`) uses unless told otherwise,
    at the model's input size, RGB [0, 255] float32 (N, S, S, 3), with a name for each: the first
    CIFAR-10 test images (one per class in turn) for CIFAR networks; the built-in sample then the
    ImageNet samples otherwise."""
    if datasets.is_cifar10_network(model):
        data = cifar10.load(data_dir)
        labels = data["test_labels"]
        # The first test image of class 0, of class 1, ..., of class 9, then the second of each, ...
        picked = [int(np.flatnonzero(labels == i % 10)[i // 10]) for i in range(num_images)]
        names = [f"cifar10 test {i} ({cifar10.CLASS_NAMES[labels[i]]})" for i in picked]
        return data["test_images"][picked].astype(np.float32), names
    paths = [images.sample_image_path()]
    if num_images > 1:
        paths += images.imagenet_sample_paths(images.imagenet_samples_dir(data_dir), num_images - 1)
    return load_images(model, paths), [os.path.basename(p) for p in paths]


def load_images(model, paths: Sequence[str]) -> np.ndarray:
    """Image files -> RGB [0, 255] (N, S, S, 3) centre crops at the model's input size S ((N, S, S, 1)
    grey for one-channel models)."""
    grey = models.channels(model) == 1
    loaded = np.stack([images.load_image(p, size=models.input_side(model), grey=grey) for p in paths])
    return loaded[..., None] if grey else loaded


# ---------------------------------------------------------------------------------------------
# Running the engine on several targets at once


def solve_targets(representation: Representation, problem: Problem, targets: Sequence[Target], *,
                  image_shape: Sequence[int], restarts: int = 1, seed: int = 0,
                  stages: Sequence[Stage] = preimage.default_stages(), x_init=None,
                  progress: Callable | None = None, progress_every: int = 50, prior=None) -> preimage.PreimageResult:
    """Solves G problems that differ only in their target, K restarts each, as one vmapped run
    (with `prior`, the engine's prior path: `jaxinv.engine.image_prior`).

    Returns the engine's result with images reshaped to (G, K, H + T - 1, W + T - 1, D) (null-mean)
    and history arrays of shape (iterations, G * K). `x_init` is (G * K, ...) if given.
    """
    if not targets:
        raise ValueError("no targets to solve for")
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.repeat(jnp.stack(leaves), restarts, axis=0), *targets)
    result = preimage.solve(representation, problem, stacked, image_shape=image_shape, key=jax.random.key(seed),
                            restarts=len(targets) * restarts, stages=stages, x_init=x_init, batched_target=True,
                            progress=bars.solver_progress(progress, stages), progress_every=progress_every,
                            prior=prior)
    shaped = result.images.reshape((len(targets), restarts) + result.images.shape[1:])
    return preimage.PreimageResult(shaped, result.history, result.seconds)


# ---------------------------------------------------------------------------------------------
# Inversion from any layer, with restarts (IJCV Sect. 5.3, Figs. 10-12)


def invertible_layers(model) -> list[str]:
    """Every layer except the final softmax (the layers of IJCV Fig. 12)."""
    return models.invertible_layers(model)


def invert_layers(model, rgb_images, layers: Sequence[str], *, restarts: int = 1, seed: int = 0,
                  stages: Sequence[Stage] = preimage.default_stages(), C: float | None = None, jitter: bool = True,
                  progress: Callable | None = None, log: Callable[[str], None] = print) -> dict:
    """Inverts each layer's code of every image (RGB [0, 255], (N, S, S, 3) at the model's input size)
    from `restarts` random starts, with the per-layer C and jitter rules (`models.inversion_problem`;
    `C` overrides). `model` is any model (`jaxinv.models`).

    Returns {layer: inversion.Inversion} (images (N, K, S, S, 3) in [0, 255], errors (N, K) of Eq. 3).
    `progress`: a bar of the layers done and one of each layer's iterations (`jaxinv.io.progress`)."""
    for layer in layers:
        models.check_layer(model, layer)
    results = {}
    for layer in bars.each(layers, "layers", progress):
        representation = models.representation(model, layer)
        problem = models.inversion_problem(model, layer, C=C, jitter=jitter)
        results[layer] = inversion.invert_images(representation, list(rgb_images), problem=problem,
                                                 restarts=restarts, seed=seed, stages=stages, progress=progress)
        log(f"  {layer}: C={problem.C:g} T={problem.jitter} error {results[layer].errors.mean():.3f} "
            f"({results[layer].seconds:.1f} s)")
    return results


# ---------------------------------------------------------------------------------------------
# Inversion from selected components (IJCV Sect. 5.4, Figs. 13-14)


@dataclasses.dataclass
class ComponentInversion:
    """Reconstructions from the components selected by G masks of one layer, K restarts each."""
    layer: str
    images: np.ndarray  # (G, K, S, S, 3) in [0, 255]
    null_mean: np.ndarray  # (G, K, S, S, 3) as optimised, seen part
    errors: np.ndarray  # (G, K) masked normalised error (Eq. 3) of Phi(x*) against Phi(x0)
    masks: np.ndarray  # (G, ...) shaped like the layer's output
    seconds: float


def invert_components(model, rgb_image, layer: str, masks: Sequence[np.ndarray], *, restarts: int = 1,
                      seed: int = 0, stages: Sequence[Stage] = preimage.default_stages(), C: float | None = None,
                      jitter: bool = True, progress: Callable | None = None) -> ComponentInversion:
    """Inverts the components of `layer`'s code of one image (RGB [0, 255] at the network's input size)
    selected by each mask with the masked loss (IJCV Eq. 3), all masks and restarts in one run."""
    representation = models.representation(model, layer)
    problem = dataclasses.replace(models.inversion_problem(model, layer, C=C, jitter=jitter), loss="masked_inversion")
    phi0 = representation(representation.to_null_mean(rgb_image))
    targets = [preimage.make_target(representation, problem, phi0=phi0, mask=mask) for mask in masks]
    size = models.input_side(model)
    result = solve_targets(representation, problem, targets, image_shape=(size, size), restarts=restarts, seed=seed,
                           stages=stages, progress=progress)
    seen = preimage.crop_seen(problem, result.images)
    codes = inversion.codes_of(representation, seen.reshape((-1,) + seen.shape[2:]))
    codes = codes.reshape(seen.shape[:2] + codes.shape[1:])
    phi0 = np.asarray(phi0)
    errors = np.array([[metrics.normalised_error(code * mask, phi0 * mask) for code in per_mask]
                       for per_mask, mask in zip(codes, masks)])
    return ComponentInversion(layer, representation.to_display(seen), seen, errors, np.stack(masks), result.seconds)


def invert_window(model, rgb_image, layer: str, *, size: int = 5, **kwargs) -> tuple[ComponentInversion, tuple]:
    """Inverts the central size x size window of `layer`'s map (all channels) (IJCV Fig. 13).
    Returns the inversion and the window's receptive field box (top, left, bottom, right) in pixels."""
    mask = windows.window_mask(model, layer, size)
    window = windows.central_window(mask.shape, size)
    return invert_components(model, rgb_image, layer, [mask], **kwargs), models.window_box(model, layer, window)


def invert_channel_groups(model, rgb_image, layer: str, groups: Sequence[Sequence[int]] | None = None,
                          **kwargs) -> tuple[ComponentInversion, list[np.ndarray]]:
    """Inverts each group of channels of `layer` (default `windows.channel_groups`: the filter groups of
    grouped convolutions, IJCV Fig. 14). Returns the inversion (one mask per group) and the groups."""
    groups = [np.asarray(g) for g in (windows.channel_groups(model, layer) if groups is None else groups)]
    masks = [windows.channel_mask(model, layer, g) for g in groups]
    return invert_components(model, rgb_image, layer, masks, **kwargs), groups


def equal_channel_split(model, layer: str, parts: int) -> list[np.ndarray]:
    """The channels of `layer` in `parts` contiguous blocks of (nearly) equal size."""
    channels = models.layer_shape(model, layer)[-1]
    if not 1 <= parts <= channels:
        raise ValueError(f"cannot split the {channels} channels of layer {layer!r} into {parts} parts")
    return [np.arange(g * channels // parts, (g + 1) * channels // parts) for g in range(parts)]


# ---------------------------------------------------------------------------------------------
# Caricatures (IJCV Sect. 7)

CARICATURE_C = 100.0
"""C of caricatures: at C = 1 the regularisers of a natural image (R_alpha + R_TV about 80 for CIFAR-10
images at B = 80) outweigh the data term (-1 at x0) and the result fades to a flat image (docs/deep_visualisation.md)."""


def caricature_target(representation: Representation, rgb_image) -> Target:
    """Phi0 = max(0, Phi(x0)) and Z = ||Phi0||^2 for the inner-product loss (IJCV Sect. 7)."""
    phi0 = jnp.maximum(representation(representation.to_null_mean(rgb_image)), 0)
    z = float(jnp.sum(jnp.square(phi0)))
    if not z > 0:
        raise ValueError(f"the image's code at {representation.name} has no positive component: nothing to exaggerate")
    return Target(phi0, None, jnp.float32(z))


@dataclasses.dataclass
class Caricature:
    layer: str
    images: np.ndarray  # (N, K, S, S, 3) in [0, 255]
    null_mean: np.ndarray  # (N, K, S, S, 3) as optimised (seen part)
    gain: np.ndarray  # (N, K) <Phi(x*), Phi0> / ||Phi0||^2 (1 at x0): how much the image's own pattern grew
    problem: Problem
    history: dict  # term -> (iterations, N * K)
    seconds: float


def caricature(model, rgb_images, layer: str, *, restarts: int = 1, seed: int = 0,
               stages: Sequence[Stage] = preimage.default_stages(), C: float = CARICATURE_C, bound: float = 80.0,
               jitter: bool = True, progress: Callable | None = None) -> Caricature:
    """Caricatures of images (RGB [0, 255], (N, S, S, 3) at the network's input size) at `layer`: each
    maximises <Phi(x), max(0, Phi(x0))> / ||max(0, Phi(x0))||^2 starting from its x0 (IJCV Sect. 7);
    all images x restarts in one vmapped run (restarts differ by their jitter draws)."""
    rgb_images = np.asarray(rgb_images, np.float32)
    if rgb_images.ndim == 3:
        rgb_images = rgb_images[None]
    representation = models.representation(model, layer)
    problem = Problem(loss="inner_product", C=float(C), bound=float(bound),
                      jitter=models.layer_jitter(model, layer) if jitter else 1)
    targets = [caricature_target(representation, image) for image in rgb_images]
    size = models.input_side(model)
    x_init = np.concatenate([preimage.start_from(representation.to_null_mean(image), problem, restarts)
                             for image in rgb_images])
    result = solve_targets(representation, problem, targets, image_shape=(size, size), restarts=restarts, seed=seed,
                           stages=stages, x_init=x_init, progress=progress)
    seen = preimage.crop_seen(problem, result.images)
    codes = inversion.codes_of(representation, seen.reshape((-1,) + seen.shape[2:])).reshape(seen.shape[:2] + (-1,))
    gain = np.stack([codes[i] @ np.asarray(t.phi0).ravel() / float(t.z) for i, t in enumerate(targets)])
    return Caricature(layer, representation.to_display(seen), seen, gain, problem, result.history, result.seconds)
