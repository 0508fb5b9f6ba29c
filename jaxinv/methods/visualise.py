"""Visualising deep networks with natural pre-images (IJCV 2016 Sects. 5.3-7).

- inversion from any layer with the papers' per-layer settings and K vmapped restarts (Fig. 12);
- inversion from selected components with the mask loss (Eq. 3): a central window of a layer's
  map with its receptive field box (Fig. 13), or a group of channels (Fig. 14);
- activation maximisation (Sect. 6): the inner-product loss (Eq. 4) with a one-hot Phi0 at the
  centre of a channel's map (or an fc unit), Z = M rho^2;
- caricatures (Sect. 7): Phi0 = max(0, Phi(x0)), Z = ||Phi0||^2, starting from x0.

Images given and returned are RGB in [0, 255], (H, W, 3); the engine optimises null-mean images
(the image minus the network's RGB mean, `taps.rgb_mean`), which the results also carry.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.engine import preimage
from jaxinv.io import cache, checkpoints, datasets, images, outputs
from jaxinv.methods import inversion, layer_rules, metrics, windows
from jaxinv.nets import taps
from jaxinv.nets import cifar10
from jaxinv.nets import layers as L
from jaxinv.nets.model import Model
from jaxinv.engine.preimage import Problem, Representation, Stage, Target

# ---------------------------------------------------------------------------------------------
# Images a network is shown by default


def default_images(model: Model, num_images: int = 1, *, data_dir: str | None = None) -> tuple[np.ndarray, list[str]]:
    """The images a visualisation of `model` uses unless told otherwise, at the network's input size,
    RGB [0, 255] float32 (N, S, S, 3), with a name for each: the first CIFAR-10 test images (one per
    class in turn) for CIFAR networks; the built-in sample then the ImageNet samples otherwise."""
    size = model.input_size
    if datasets.is_cifar10_network(model):
        data = cifar10.load(data_dir)
        labels = data["test_labels"]
        # The first test image of class 0, of class 1, ..., of class 9, then the second of each, ...
        picked = [int(np.flatnonzero(labels == i % 10)[i // 10]) for i in range(num_images)]
        names = [f"cifar10 test {i} ({cifar10.CLASS_NAMES[labels[i]]})" for i in picked]
        return data["test_images"][picked].astype(np.float32), names
    paths = [images.sample_image_path()]
    if num_images > 1:
        paths += images.imagenet_sample_paths(None, num_images - 1)
    return np.stack([images.load_image(p, size=size) for p in paths]), [os.path.basename(p) for p in paths]


def load_images(model: Model, paths: Sequence[str]) -> np.ndarray:
    """Image files -> RGB [0, 255] (N, S, S, 3) centre crops at the network's input size S."""
    return np.stack([images.load_image(p, size=model.input_size) for p in paths])


# ---------------------------------------------------------------------------------------------
# Running the engine on several targets at once


def solve_targets(representation: Representation, problem: Problem, targets: Sequence[Target], *,
                  image_shape: Sequence[int], restarts: int = 1, seed: int = 0,
                  stages: Sequence[Stage] = preimage.default_stages(), x_init=None,
                  progress: Callable | None = None, progress_every: int = 50) -> preimage.PreimageResult:
    """Solves G problems that differ only in their target, K restarts each, as one vmapped run.

    Returns the engine's result with images reshaped to (G, K, H + T - 1, W + T - 1, D) (null-mean)
    and history arrays of shape (iterations, G * K). `x_init` is (G * K, ...) if given.
    """
    if not targets:
        raise ValueError("no targets to solve for")
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.repeat(jnp.stack(leaves), restarts, axis=0), *targets)
    result = preimage.solve(representation, problem, stacked, image_shape=image_shape, key=jax.random.key(seed),
                            restarts=len(targets) * restarts, stages=stages, x_init=x_init, batched_target=True,
                            progress=progress, progress_every=progress_every)
    shaped = result.images.reshape((len(targets), restarts) + result.images.shape[1:])
    return preimage.PreimageResult(shaped, result.history, result.seconds)


# ---------------------------------------------------------------------------------------------
# Inversion from any layer, with restarts (IJCV Sect. 5.3, Figs. 10-12)


def invertible_layers(model: Model) -> list[str]:
    """Every layer except the final softmax (the layers of IJCV Fig. 12)."""
    return [layer.name for layer in model.table if layer.op is not L.softmax]


def invert_layers(model: Model, rgb_images, layers: Sequence[str], *, restarts: int = 1, seed: int = 0,
                  stages: Sequence[Stage] = preimage.default_stages(), C: float | None = None, jitter: bool = True,
                  progress: Callable | None = None, log: Callable[[str], None] = print) -> dict:
    """Inverts each layer's code of every image (RGB [0, 255], (N, S, S, 3) at the network's input size)
    from `restarts` random starts, with `layer_rules.inversion_problem`'s C and jitter (`C` overrides).

    Returns {layer: inversion.Inversion} (images (N, K, S, S, 3) in [0, 255], errors (N, K) of Eq. 3)."""
    for layer in layers:
        taps.check_layer(model, layer)
    results = {}
    for layer in layers:
        representation = taps.representation(model, layer)
        problem = layer_rules.inversion_problem(model, layer, C=C, jitter=jitter)
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


def invert_components(model: Model, rgb_image, layer: str, masks: Sequence[np.ndarray], *, restarts: int = 1,
                      seed: int = 0, stages: Sequence[Stage] = preimage.default_stages(), C: float | None = None,
                      jitter: bool = True, progress: Callable | None = None) -> ComponentInversion:
    """Inverts the components of `layer`'s code of one image (RGB [0, 255] at the network's input size)
    selected by each mask with the masked loss (IJCV Eq. 3), all masks and restarts in one run."""
    representation = taps.representation(model, layer)
    problem = dataclasses.replace(layer_rules.inversion_problem(model, layer, C=C, jitter=jitter), loss="masked_inversion")
    phi0 = representation(representation.to_null_mean(rgb_image))
    targets = [preimage.make_target(representation, problem, phi0=phi0, mask=mask) for mask in masks]
    size = model.input_size
    result = solve_targets(representation, problem, targets, image_shape=(size, size), restarts=restarts, seed=seed,
                           stages=stages, progress=progress)
    seen = preimage.crop_seen(problem, result.images)
    codes = inversion.codes_of(representation, seen.reshape((-1,) + seen.shape[2:]))
    codes = codes.reshape(seen.shape[:2] + codes.shape[1:])
    phi0 = np.asarray(phi0)
    errors = np.array([[metrics.normalised_error(code * mask, phi0 * mask) for code in per_mask]
                       for per_mask, mask in zip(codes, masks)])
    return ComponentInversion(layer, representation.to_display(seen), seen, errors, np.stack(masks), result.seconds)


def invert_window(model: Model, rgb_image, layer: str, *, size: int = 5, **kwargs) -> tuple[ComponentInversion, tuple]:
    """Inverts the central size x size window of `layer`'s map (all channels) (IJCV Fig. 13).
    Returns the inversion and the window's receptive field box (top, left, bottom, right) in pixels."""
    mask = windows.window_mask(model, layer, size)
    window = windows.central_window(mask.shape, size)
    return invert_components(model, rgb_image, layer, [mask], **kwargs), windows.receptive_field_box(model, layer, window)


def invert_channel_groups(model: Model, rgb_image, layer: str, groups: Sequence[Sequence[int]] | None = None,
                          **kwargs) -> tuple[ComponentInversion, list[np.ndarray]]:
    """Inverts each group of channels of `layer` (default `windows.channel_groups`: the filter groups of
    grouped convolutions, IJCV Fig. 14). Returns the inversion (one mask per group) and the groups."""
    groups = [np.asarray(g) for g in (windows.channel_groups(model, layer) if groups is None else groups)]
    masks = [windows.channel_mask(model, layer, g) for g in groups]
    return invert_components(model, rgb_image, layer, masks, **kwargs), groups


def equal_channel_split(model: Model, layer: str, parts: int) -> list[np.ndarray]:
    """The channels of `layer` in `parts` contiguous blocks of (nearly) equal size."""
    channels = taps.layer_output_shape(model, layer)[-1]
    if not 1 <= parts <= channels:
        raise ValueError(f"cannot split the {channels} channels of layer {layer!r} into {parts} parts")
    return [np.arange(g * channels // parts, (g + 1) * channels // parts) for g in range(parts)]


# ---------------------------------------------------------------------------------------------
# Activation maximisation (IJCV Sect. 6)

AM_BOUND = 160.0
"""B for activation maximisation on cifar-ref: the paper's B = 80 does not reach class probability
0.9 for every class (automobile, truck) at any C up to 10 rho^2 (README: "Activation maximisation")."""
AM_C_PER_RHO2 = 3.0
"""C = 3 rho^2 for activation maximisation (the paper's C = 1 with Z = M rho^2 gives the blank image,
as the data term is 1/rho^2 of per-pixel-averaged regularisers; README: "Activation maximisation")."""


def activation_max_cells(model: Model, layer: str) -> int:
    """Side of the layer's output map for activation maximisation: the odd number nearest to
    1.1 rf / stride (rf, stride of the layer from the table), at least 1."""
    rf, stride = model.receptive_fields[layer]
    return max(2 * int(round((1.1 * rf / stride - 1) / 2)) + 1, 1)


def activation_max_input_size(model: Model, layer: str) -> int:
    """Image side S for maximising a component of `layer`: the smallest S whose output map has at least
    `activation_max_cells` cells a side (the image then spans about 1.1 receptive fields); the network's
    input size for layers from the first fully connected (or adaptive pooling) layer on."""
    taps.check_layer(model, layer)
    if layer not in taps.spatial_trunk(model):
        return model.input_size
    cells = activation_max_cells(model, layer)
    rf, stride = model.receptive_fields[layer]
    for size in range(1, rf + (cells + 1) * stride + 1):
        try:
            if taps.layer_output_shape(model, layer, size)[0] >= cells:
                return size
        except ValueError:  # too small for some layer on the way
            continue
    raise ValueError(f"no input size gives layer {layer!r} a {cells}-cell map")  # not reached for valid tables


def unit_position(map_shape: Sequence[int]) -> tuple[int, int]:
    """The centre cell (row, column) of a map (h, w, ...): ((h - 1) // 2, (w - 1) // 2)."""
    return (int(map_shape[0]) - 1) // 2, (int(map_shape[1]) - 1) // 2


def num_units(model: Model, layer: str) -> int:
    """Channels of a feature map layer, units of a fully connected one."""
    return taps.layer_output_shape(model, layer)[-1]


def check_units(model: Model, layer: str, units: Sequence[int]) -> None:
    n = num_units(model, layer)
    if not len(units):
        raise ValueError(f"no units given for layer {layer!r}")
    for unit in units:
        if not 0 <= int(unit) < n:
            raise ValueError(f"unit index {unit} out of range for layer {layer!r} of network {model.arch!r} "
                             f"({n} units: 0..{n - 1})")


def unit_code(model: Model, layer: str, unit: int, input_size: int | None = None) -> np.ndarray:
    """One-hot Phi0 shaped like `layer`'s output at `input_size`: 1 at channel `unit` of the centre
    cell of a map (`unit_position`), or at unit `unit` of a fully connected layer."""
    check_units(model, layer, [unit])
    shape = taps.layer_output_shape(model, layer, input_size)
    code = np.zeros(shape, np.float32)
    if len(shape) == 3:
        row, col = unit_position(shape)
        code[row, col, unit] = 1.0
    else:
        code[unit] = 1.0
    return code


def maximised_layer(model: Model, layer: str) -> str:
    """The layer whose unit is optimised when maximising a unit of `layer`: the ReLU's input for a ReLU
    layer (the same maximiser where the unit is positive, but with a gradient where it is zero: a
    unit that starts inactive would otherwise never move), else `layer` itself."""
    names = model.layer_names
    index = names.index(layer)
    return names[index - 1] if model.table[index].op is L.relu and index > 0 else layer


def class_score_layer(model: Model) -> str:
    """The layer of class scores: the last fully connected layer (fc8; prob is its softmax)."""
    fcs = [layer.name for layer in model.table if layer.op is L.fc]
    if not fcs:
        raise ValueError(f"network {model.arch!r} has no fully connected layer of class scores")
    return fcs[-1]


def is_class_layer(model: Model, layer: str) -> bool:
    """True for the class-score layer and the layers after it (its softmax): a unit is a class."""
    names = model.layer_names
    return names.index(layer) >= names.index(class_score_layer(model))


def cache_dir() -> str:
    """Where activation maxima are cached: <cache root>/activation_max (`jaxinv.io.cache.cache_root`)."""
    return os.path.join(cache.cache_root(), "activation_max")


def activation_maxima_path(model: Model, layer: str, reference: np.ndarray, directory: str | None = None) -> str:
    """<cache root>/activation_max/<arch>-<weights fingerprint>-<layer>-<images fingerprint>.npy, the
    fingerprints (`jaxinv.io.cache`) cut to 16 hex digits."""
    weights, image_set = checkpoints.weights_fingerprint(model.params)[:16], cache.images_fingerprint(reference)[:16]
    return os.path.join(directory or cache_dir(), f"{model.arch}-{weights}-{layer}-{image_set}.npy")


def activation_maxima(model: Model, layer: str, reference: np.ndarray | None = None, *,
                      directory: str | None = None, batch_size: int = 250,
                      log: Callable[[str], None] = print) -> np.ndarray:
    """M per unit of `layer`: the largest value each channel (fc unit) takes over the reference images
    (RGB [0, 255] at the network's input size; default `datasets.reference_images`: all of them) and,
    for maps, all positions.
    Computed once and cached as .npy, keyed by a hash of the weights and of the image set."""
    taps.check_layer(model, layer)
    if reference is None:
        reference, _ = datasets.reference_images(model)
    reference = np.asarray(reference)
    if reference.ndim != 4 or reference.shape[1:] != (model.input_size, model.input_size, 3):
        raise ValueError(f"reference images must be (N, {model.input_size}, {model.input_size}, 3) RGB; "
                         f"got shape {reference.shape}")
    path = activation_maxima_path(model, layer, reference, directory)
    if os.path.isfile(path):
        return np.load(path)
    log(f"  computing the maxima of {layer} over {len(reference)} reference images (cached in {path})")
    representation = taps.representation(model, layer)
    maxima = None
    for start in range(0, len(reference), batch_size):
        codes = inversion.codes_of(representation, representation.to_null_mean(reference[start:start + batch_size]))
        batch_max = codes.reshape(len(codes), -1, codes.shape[-1]).max(axis=(0, 1))
        maxima = batch_max if maxima is None else np.maximum(maxima, batch_max)
    maxima = maxima.astype(np.float32)
    outputs.atomic_write(path, lambda tmp: np.save(tmp, maxima), ".npy")
    return maxima


def activation_max_normaliser(model: Model, layer: str, maximum: float) -> float:
    """Z = M rho^2 (IJCV Sect. 6): M the unit's maximum over the reference set, rho its receptive field."""
    rho = model.receptive_fields[layer][0]
    return float(maximum) * rho ** 2


def activation_max_problem(model: Model, layer: str, *, C: float | None = None, bound: float = AM_BOUND,
                           jitter: bool = True) -> Problem:
    """IJCV Eq. 1 with the inner-product loss (Eq. 4) for maximising a unit of `layer`: jitter as for
    inversion; C = `AM_C_PER_RHO2` rho^2 and B = `AM_BOUND` by default (`C=1, bound=80`: the paper's)."""
    rho = model.receptive_fields[layer][0]
    return Problem(loss="inner_product", C=AM_C_PER_RHO2 * rho ** 2 if C is None else float(C), bound=float(bound),
                   jitter=layer_rules.layer_jitter(model, layer) if jitter else 1)


@dataclasses.dataclass
class ActivationMax:
    """Images maximising U units of one layer, K random restarts each."""
    layer: str
    units: list[int]
    input_size: int
    images: np.ndarray  # (U, K, S, S, 3) in [0, 255]
    null_mean: np.ndarray  # (U, K, S, S, 3) as optimised (seen part)
    values: np.ndarray  # (U, K) the maximised component's final value (centre cell / unit)
    maxima: np.ndarray  # (U,) M over the reference images
    normalisers: np.ndarray  # (U,) Z = M rho^2
    probabilities: np.ndarray | None  # (U, K) softmax probability of the unit's class (class layers only)
    problem: Problem
    history: dict
    seconds: float


def class_probabilities(model: Model, rgb_images) -> np.ndarray:
    """Softmax of the class scores of RGB [0, 255] images (N, S, S, 3) at the network's input size."""
    representation = taps.representation(model, class_score_layer(model))
    scores = inversion.codes_of(representation, representation.to_null_mean(rgb_images))
    return np.asarray(jax.nn.softmax(jnp.asarray(scores), axis=-1))


def maximise_activation(model: Model, layer: str, units: Sequence[int], *, restarts: int = 4, seed: int = 0,
                        stages: Sequence[Stage] = preimage.default_stages(), C: float | None = None,
                        bound: float = AM_BOUND, jitter: bool = True, maxima: np.ndarray | None = None,
                        progress: Callable | None = None, log: Callable[[str], None] = print) -> ActivationMax:
    """Activation maximisation of each unit of `layer` (channel at the map's centre, or fc unit) from
    `restarts` random initialisations, all units x restarts in one vmapped run, on an image of
    `activation_max_input_size` pixels (through the ReLU's input for ReLU layers: `maximised_layer`). `maxima` (per unit of the layer; default `activation_maxima`
    over the reference set) gives M. For class layers the softmax probability of each unit's class
    is measured on the results."""
    units = [int(u) for u in units]
    check_units(model, layer, units)
    size = activation_max_input_size(model, layer)
    representation = taps.representation(model, maximised_layer(model, layer), input_size=size)
    problem = activation_max_problem(model, layer, C=C, bound=bound, jitter=jitter)
    maxima = activation_maxima(model, layer, log=log) if maxima is None else np.asarray(maxima, np.float32)
    chosen = maxima[units]
    for unit, value in zip(units, chosen):
        if not value > 0:
            raise ValueError(f"unit {unit} of layer {layer!r} never activates on the reference images "
                             f"(M = {value:g}): Z = M rho^2 must be positive")
    normalisers = np.array([activation_max_normaliser(model, layer, m) for m in chosen])
    targets = [preimage.make_target(representation, problem, phi0=unit_code(model, layer, u, size), z=z)
               for u, z in zip(units, normalisers)]
    result = solve_targets(representation, problem, targets, image_shape=(size, size), restarts=restarts, seed=seed,
                           stages=stages, progress=progress)
    seen = preimage.crop_seen(problem, result.images)
    flat = seen.reshape((-1,) + seen.shape[2:])
    codes = inversion.codes_of(taps.representation(model, layer, input_size=size), flat).reshape(seen.shape[:2] + (-1,))
    onehots = np.stack([t.phi0.reshape(-1) for t in targets])
    values = np.einsum("ukn,un->uk", codes, np.asarray(onehots))
    display = representation.to_display(seen)
    probabilities = None
    if is_class_layer(model, layer):
        probabilities = class_probabilities(model, display.reshape((-1,) + display.shape[2:]))
        probabilities = probabilities.reshape(seen.shape[:2] + (-1,))[np.arange(len(units)), :, units]
    return ActivationMax(layer, units, size, display, seen, values, chosen, normalisers, probabilities, problem,
                         result.history, result.seconds)


# ---------------------------------------------------------------------------------------------
# Caricatures (IJCV Sect. 7)

CARICATURE_C = 100.0
"""C of caricatures: at C = 1 the regularisers of a natural image (R_alpha + R_TV about 80 for CIFAR-10
images at B = 80) outweigh the data term (-1 at x0) and the result fades to a flat image (README)."""


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
    seconds: float


def caricature(model: Model, rgb_images, layer: str, *, restarts: int = 1, seed: int = 0,
               stages: Sequence[Stage] = preimage.default_stages(), C: float = CARICATURE_C, bound: float = 80.0,
               jitter: bool = True, progress: Callable | None = None) -> Caricature:
    """Caricatures of images (RGB [0, 255], (N, S, S, 3) at the network's input size) at `layer`: each
    maximises <Phi(x), max(0, Phi(x0))> / ||max(0, Phi(x0))||^2 starting from its x0 (IJCV Sect. 7);
    all images x restarts in one vmapped run (restarts differ by their jitter draws)."""
    rgb_images = np.asarray(rgb_images, np.float32)
    if rgb_images.ndim == 3:
        rgb_images = rgb_images[None]
    representation = taps.representation(model, layer)
    problem = Problem(loss="inner_product", C=float(C), bound=float(bound),
                      jitter=layer_rules.layer_jitter(model, layer) if jitter else 1)
    targets = [caricature_target(representation, image) for image in rgb_images]
    size = model.input_size
    x_init = np.concatenate([preimage.start_from(representation.to_null_mean(image), problem, restarts)
                             for image in rgb_images])
    result = solve_targets(representation, problem, targets, image_shape=(size, size), restarts=restarts, seed=seed,
                           stages=stages, x_init=x_init, progress=progress)
    seen = preimage.crop_seen(problem, result.images)
    codes = inversion.codes_of(representation, seen.reshape((-1,) + seen.shape[2:])).reshape(seen.shape[:2] + (-1,))
    gain = np.stack([codes[i] @ np.asarray(t.phi0).ravel() / float(t.z) for i, t in enumerate(targets)])
    return Caricature(layer, representation.to_display(seen), seen, gain, problem, result.seconds)
