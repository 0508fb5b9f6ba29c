"""The activation-maximisation experiment (IJCV Sect. 6): images that maximally excite units of a
network layer, with their numbers and figures.

    result = run(ActivationMaxConfig(layer="fc8", restarts=2, iterations=40))
    write_outputs(result, "outputs/activation_max")

The method (`maximise_activation`: the inner-product loss, Eq. 4, with a one-hot Phi0 at the centre
of a channel's map or an fc unit, Z = M rho^2, M the unit's maximum on reference images, cached by
`activation_maxima`) comes first; then the experiment: `run` picks the units, measures M,
maximises every unit from `restarts` initialisations and computes what results.json holds.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import nets
from jaxinv.engine import preimage
from jaxinv.engine.preimage import Problem, Stage
from jaxinv.io import arguments, cache, checkpoints, datasets, images, outputs, paths, report
from jaxinv import models
from jaxinv.methods import inversion
from jaxinv.methods.visualise import solve_targets
from jaxinv.nets import taps


# ---------------------------------------------------------------------------------------------
# The method: activation maximisation (IJCV Sect. 6)

AM_BOUND = 160.0
"""B for activation maximisation on cifar-ref: the paper's B = 80 does not reach class probability
0.9 for every class (automobile, truck) at any C up to 10 rho^2 (docs/deep_visualisation.md, "Activation maximisation")."""
AM_C_PER_RHO2 = 3.0
"""C = 3 rho^2 for activation maximisation (the paper's C = 1 with Z = M rho^2 gives the blank image,
as the data term is 1/rho^2 of per-pixel-averaged regularisers; docs/deep_visualisation.md, "Activation maximisation")."""


def activation_max_cells(model, layer: str) -> int:
    """Side of the layer's output map for activation maximisation: the odd number nearest to
    1.1 rf / stride (rf, stride of the layer: `models.receptive_field`), at least 1."""
    rf, stride = models.receptive_field(model, layer)
    return max(2 * int(round((1.1 * rf / stride - 1) / 2)) + 1, 1)


def activation_max_input_size(model, layer: str) -> int:
    """Image side S for maximising a component of `layer`: the smallest S whose output map has at least
    `activation_max_cells` cells a side (the image then spans about 1.1 receptive fields); the network's
    input size for layers from the first fully connected (or adaptive pooling) layer on, and for
    every layer of an adapted model (whose layers may run at its own size only)."""
    models.check_layer(model, layer)
    if not models.is_table(model) or layer not in models.spatial_layers(model):
        return models.input_side(model)
    cells = activation_max_cells(model, layer)
    rf, stride = models.receptive_field(model, layer)
    for size in range(1, rf + (cells + 1) * stride + 1):
        try:
            if models.layer_shape(model, layer, size)[0] >= cells:
                return size
        except ValueError:  # too small for some layer on the way
            continue
    raise ValueError(f"no input size gives layer {layer!r} a {cells}-cell map")  # not reached for valid tables


def unit_position(map_shape: Sequence[int]) -> tuple[int, int]:
    """The centre cell (row, column) of a map (h, w, ...): ((h - 1) // 2, (w - 1) // 2)."""
    return (int(map_shape[0]) - 1) // 2, (int(map_shape[1]) - 1) // 2


def num_units(model, layer: str) -> int:
    """Channels of a feature map layer, units of a fully connected one."""
    return models.layer_shape(model, layer)[-1]


def check_units(model, layer: str, units: Sequence[int]) -> None:
    n = num_units(model, layer)
    if not len(units):
        raise ValueError(f"no units given for layer {layer!r}")
    for unit in units:
        if not 0 <= int(unit) < n:
            raise ValueError(f"unit index {unit} out of range for layer {layer!r} of network {models.name(model)!r} "
                             f"({n} units: 0..{n - 1})")


def unit_code(model, layer: str, unit: int, input_size: int | None = None) -> np.ndarray:
    """One-hot Phi0 shaped like `layer`'s output at `input_size`: 1 at channel `unit` of the centre
    cell of a map (`unit_position`), or at unit `unit` of a fully connected layer."""
    check_units(model, layer, [unit])
    shape = models.layer_shape(model, layer, input_size)
    code = np.zeros(shape, np.float32)
    if len(shape) == 3:
        row, col = unit_position(shape)
        code[row, col, unit] = 1.0
    else:
        code[unit] = 1.0
    return code


# Which layer is maximised, and which layers hold classes, defined once in `jaxinv.models`:
# the ReLU's input for a table's ReLU layer (a unit that starts inactive has a gradient there),
# the class scores (fc8 of a table; prob is its softmax), and the layers from them on.
maximised_layer = models.pre_activation
class_score_layer = models.class_layer
is_class_layer = models.is_class_layer


REFERENCE_IMAGES_ADAPTED = 8
"""Reference images for M of an adapted model with no reference set: the built-in sample and the
first ImageNet samples at the model's input size (`visualise.default_images`)."""


def cache_dir() -> str:
    """Where activation maxima are cached: <cache root>/activation_max (`jaxinv.io.cache.cache_root`)."""
    return os.path.join(cache.cache_root(), "activation_max")


def activation_maxima_path(model, layer: str, reference: np.ndarray, directory: str | None = None) -> str:
    """<cache root>/activation_max/<arch>-<weights fingerprint>-<layer>-<images fingerprint>.npy, the
    fingerprints (`jaxinv.io.cache`) cut to 16 hex digits."""
    weights, image_set = checkpoints.weights_fingerprint(model.params)[:16], cache.images_fingerprint(reference)[:16]
    name, layer = (re.sub(r"[^A-Za-z0-9._-]", "_", text) for text in (models.name(model), layer))
    return os.path.join(directory or cache_dir(), f"{name}-{weights}-{layer}-{image_set}.npy")


def activation_maxima(model, layer: str, reference: np.ndarray | None = None, *,
                      directory: str | None = None, batch_size: int = 250,
                      log: Callable[[str], None] = print) -> np.ndarray:
    """M per unit of `layer`: the largest value each channel (fc unit) takes over the reference images
    (RGB [0, 255] at the network's input size; default `datasets.reference_images`: all of them) and,
    for maps, all positions.
    Computed once and cached as .npy, keyed by a hash of the weights and of the image set."""
    models.check_layer(model, layer)
    if reference is None:
        from jaxinv.methods import visualise
        reference = (datasets.reference_images(model)[0] if models.is_table(model)
                     else visualise.default_images(model, REFERENCE_IMAGES_ADAPTED)[0])
    reference = np.asarray(reference)
    side, channels = models.input_side(model), models.channels(model)
    if reference.ndim != 4 or reference.shape[1:] != (side, side, channels):
        raise ValueError(f"reference images must be (N, {side}, {side}, {channels}); got shape {reference.shape}")
    path = activation_maxima_path(model, layer, reference, directory)
    if os.path.isfile(path):
        return np.load(path)
    with paths.lock_file(path, wait=paths.CACHE_WAIT):  # one writer; another process waits, then reads its file
        if os.path.isfile(path):
            return np.load(path)
        return _compute_maxima(model, layer, reference, path, batch_size, log)


def _compute_maxima(model, layer: str, reference: np.ndarray, path: str, batch_size: int, log) -> np.ndarray:
    log(f"  computing the maxima of {layer} over {len(reference)} reference images (cached in {path})")
    representation = models.representation(model, layer)
    maxima = None
    for start in range(0, len(reference), batch_size):
        codes = inversion.codes_of(representation, representation.to_null_mean(reference[start:start + batch_size]))
        batch_max = codes.reshape(len(codes), -1, codes.shape[-1]).max(axis=(0, 1))
        maxima = batch_max if maxima is None else np.maximum(maxima, batch_max)
    maxima = maxima.astype(np.float32)
    outputs.atomic_write(path, lambda tmp: np.save(tmp, maxima), ".npy")
    return maxima


def activation_max_normaliser(model, layer: str, maximum: float) -> float:
    """Z = M rho^2 (IJCV Sect. 6): M the unit's maximum over the reference set, rho its receptive field."""
    rho = models.receptive_field(model, layer)[0]
    return float(maximum) * rho ** 2


def activation_max_problem(model, layer: str, *, C: float | None = None, bound: float = AM_BOUND,
                           jitter: bool = True) -> Problem:
    """IJCV Eq. 1 with the inner-product loss (Eq. 4) for maximising a unit of `layer`: jitter as for
    inversion; C = `AM_C_PER_RHO2` rho^2 and B = `AM_BOUND` by default (`C=1, bound=80`: the paper's)."""
    rho = models.receptive_field(model, layer)[0]
    return Problem(loss="inner_product", C=AM_C_PER_RHO2 * rho ** 2 if C is None else float(C), bound=float(bound),
                   jitter=models.layer_jitter(model, layer) if jitter else 1)


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


def class_probabilities(model, rgb_images) -> np.ndarray:
    """Softmax of the class scores of RGB [0, 255] images (N, S, S, 3) at the network's input size."""
    representation = models.representation(model, class_score_layer(model))
    scores = inversion.codes_of(representation, representation.to_null_mean(rgb_images))
    return np.asarray(jax.nn.softmax(jnp.asarray(scores), axis=-1))


def maximise_activation(model, layer: str, units: Sequence[int], *, restarts: int = 4, seed: int = 0,
                        stages: Sequence[Stage] = preimage.default_stages(), C: float | None = None,
                        bound: float = AM_BOUND, jitter: bool = True, maxima: np.ndarray | None = None,
                        progress: Callable | None = None, log: Callable[[str], None] = print,
                        problem: Problem | None = None, prior=None) -> ActivationMax:
    """Activation maximisation of each unit of `layer` (channel at the map's centre, or fc unit) from
    `restarts` random initialisations, all units x restarts in one vmapped run, on an image of
    `activation_max_input_size` pixels (through the ReLU's input for ReLU layers: `maximised_layer`). `maxima` (per unit of the layer; default `activation_maxima`
    over the reference set) gives M. For class layers the softmax probability of each unit's class
    is measured on the results. `problem` replaces `activation_max_problem`'s (its loss must be
    'inner_product'); `prior` (`jaxinv.engine.image_prior.Prior`) switches to the engine's prior path."""
    units = [int(u) for u in units]
    check_units(model, layer, units)
    size = activation_max_input_size(model, layer)
    representation = models.representation(model, maximised_layer(model, layer), input_size=size)
    problem = problem or activation_max_problem(model, layer, C=C, bound=bound, jitter=jitter)
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
                           stages=stages, progress=progress, prior=prior)
    seen = preimage.crop_seen(problem, result.images)
    flat = seen.reshape((-1,) + seen.shape[2:])
    codes = inversion.codes_of(models.representation(model, layer, input_size=size), flat).reshape(seen.shape[:2] + (-1,))
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
# The experiment


@dataclasses.dataclass(frozen=True)
class ActivationMaxConfig:
    net: str = "cifar-ref"
    layer: str = "fc8"
    units: Sequence[int] | None = None  # default: every class of the class-score layer, else the first 8 channels
    restarts: int = 4
    iterations: int = 300
    refine_iterations: int = 50
    C: float | None = None  # default 3 rho^2 (AM_C_PER_RHO2)
    bound: float = AM_BOUND
    paper_settings: bool = False  # C = 1 and B = 80 as in IJCV Sect. 6 (overrides C and bound)
    reference_images: int | None = None  # measure M on only N reference images (default: all)
    cache_dir: str | None = None  # where the maxima M are cached (default: cache_dir())
    seed: int = 0
    scale: int = 0  # grid enlargement (0: tiles of about 128 pixels)

    def __post_init__(self):
        arguments.check_count("restarts", self.restarts)
        arguments.check_count("reference_images", self.reference_images, optional=True)
        for name in ("iterations", "refine_iterations", "scale"):
            arguments.check_count(name, getattr(self, name), 0)
        arguments.check_seed(self.seed)


@dataclasses.dataclass
class ActivationMaxResult:
    parameters: dict
    units: list  # per unit: {"unit", "name", "values", "M", "Z", "value_over_M"[, "probabilities"]}
    summary: dict  # class-probability statistics (class-score layers only)
    images: np.ndarray  # (units, restarts, S, S, 3)
    history: dict
    scale: int


def unit_name(model, layer: str, unit: int, class_layer: bool) -> str:
    if class_layer and model.class_names and unit < len(model.class_names):
        return f"{unit} {model.class_names[unit]}"[:16]
    return f"{layer}:{unit}"


def default_units(model, layer: str) -> list[int]:
    """Every class of the class-score layer (at most 10), else the first 8 channels."""
    return list(range(min(num_units(model, layer), 10 if is_class_layer(model, layer) else 8)))


def unit_entries(result: ActivationMax, units: Sequence[int], names: Sequence[str]) -> list[dict]:
    """results.json's per-unit entries: final values per restart, M, Z, value / M, probabilities."""
    entries = []
    for i, (unit, name) in enumerate(zip(units, names)):
        entry = {"unit": int(unit), "name": name, "values": result.values[i].tolist(), "M": float(result.maxima[i]),
                 "Z": float(result.normalisers[i]), "value_over_M": (result.values[i] / result.maxima[i]).tolist()}
        if result.probabilities is not None:
            entry["probabilities"] = result.probabilities[i].tolist()
        entries.append(entry)
    return entries


def probability_summary(probabilities: np.ndarray | None) -> dict:
    """Min and mean class probability, overall and per class (units x restarts); {} without them."""
    if probabilities is None:
        return {}
    return {"min_probability": float(probabilities.min()), "mean_probability": float(probabilities.mean()),
            "per_class_min": probabilities.min(axis=1).tolist(), "per_class_mean": probabilities.mean(axis=1).tolist()}


def unit_lines(entries: Sequence[dict], summary: dict) -> list[str]:
    """The findings as printed: value / M (and p(class)) per unit and restart, then the summary."""
    lines = []
    for entry in entries:
        line = f"  {entry['name']}: value/M {', '.join(f'{v:.2f}' for v in entry['value_over_M'])}"
        if "probabilities" in entry:
            line += f"; p(class) {', '.join(f'{p:.3f}' for p in entry['probabilities'])}"
        lines.append(line)
    if summary:
        lines.append(f"class probability: min {summary['min_probability']:.3f}, mean {summary['mean_probability']:.3f}")
    return lines


def run(config: ActivationMaxConfig, log: Callable[[str], None] = print, progress=None) -> ActivationMaxResult:
    """The experiment of `jaxinv-activation-max` (`progress`: a bar of the iterations, `jaxinv.io.progress`)."""
    model = nets.load(config.net)
    layer = config.layer
    taps.check_layer(model, layer)
    class_layer = is_class_layer(model, layer)
    units = [int(u) for u in config.units] if config.units else default_units(model, layer)
    check_units(model, layer, units)
    C, bound = (1.0, 80.0) if config.paper_settings else (config.C, config.bound)
    reference, _ = datasets.reference_images(model, config.reference_images)
    maxima = activation_maxima(model, layer, reference, directory=config.cache_dir)
    size = activation_max_input_size(model, layer)
    log(f"maximising {len(units)} units of {model.arch}:{layer} on {size}x{size} images, "
        f"{config.restarts} restarts, {config.iterations}+{config.refine_iterations} iterations")
    result = maximise_activation(
        model, layer, units, restarts=config.restarts, seed=config.seed, C=C, bound=bound, maxima=maxima,
        stages=preimage.default_stages(config.iterations, config.refine_iterations), progress=progress)
    names = [unit_name(model, layer, u, class_layer) for u in units]
    parameters = {"net": config.net, "arch": model.arch, "layer": layer, "units": units, "image_size": size,
                  "restarts": config.restarts, "iterations": config.iterations,
                  "refine_iterations": config.refine_iterations, "C": result.problem.C, "bound": result.problem.bound,
                  "jitter": result.problem.jitter, "receptive_field": model.receptive_fields[layer][0],
                  "reference_images": datasets.reference_description(model, len(reference)), "seed": config.seed,
                  "seconds": result.seconds}
    return ActivationMaxResult(parameters, unit_entries(result, units, names),
                               probability_summary(result.probabilities), result.images, result.history,
                               config.scale or max(1, 128 // size))


def write_outputs(result: ActivationMaxResult, out: str) -> list[str]:
    """grid.png (units across, restarts down), energy.png, results.json and index.html."""
    os.makedirs(out, exist_ok=True)
    p = result.parameters
    restarts = result.images.shape[1]
    rows = [list(result.images[:, k]) for k in range(restarts)]
    captions = [[f"p {u['probabilities'][k]:.2f}" if "probabilities" in u else f"v/M {u['value_over_M'][k]:.2f}"
                 for u in result.units] for k in range(restarts)]
    grid = images.labelled_grid(rows, column_labels=[u["name"] for u in result.units],
                                row_labels=[f"restart {k}" for k in range(restarts)], tile_labels=captions,
                                scale=result.scale)
    written = [images.save_image(os.path.join(out, "grid.png"), grid),
               outputs.plot_energy_terms(result.history, os.path.join(out, "energy.png"),
                                         title=f"activation maximisation {p['arch']}:{p['layer']}"),
               outputs.write_json(os.path.join(out, "results.json"), dict(p, units=result.units, **result.summary))]
    written.append(report.write_html(
        os.path.join(out, "index.html"), f"Activation maximisation: {p['arch']} {p['layer']}", p,
        [("Units across, restarts down", written[:1]), ("Energy", written[1:2]), ("Results", written[2:3])],
        notes="Probabilities are measured on the saved images (clipped to [0, 255])." if result.summary else ""))
    return written
