"""The papers' natural-image priors beside the modern ones, on the same numbers (cifar-ref).

Priors (rows), each a problem and an optional `jaxinv.engine.image_prior.Prior`:

- "paper": IJCV Eq. 1 on pixels: R_alpha + R_TV^beta + Eq. 7 jitter, Algorithm 1 with the Eq. 6
  projection (the per-layer C and jitter of `models.inversion_problem`);
- "fourier": Lucid's image (Olah et al. 2017): Fourier 1/f^decay spectrum + decorrelated colour,
  the Eq. 7 jitter followed by padding, scale and rotation (`transforms.lucid_transforms`), no
  R_alpha or R_TV; the projection onto B+ acts on the produced image;
- "combined": the two together (Fourier + colour + transformations + R_alpha + R_TV);
- "learned": the code of a trained learned inverter's decoder (`inverters.model.decoder_parameterisation`),
  the decoder as the only prior (no R_alpha or R_TV, as Nguyen et al. 2016 use none on the image),
  its colours squashed into the ball of radius B+ (`Squash`: the decoder has no inverse to project through);
  jitter as a same-size translation (`RandomPadding(T - 1)`), as the decoder makes images of one size;
- "fourier+diversity": "fourier" with the diversity term at `diversity_layer`, when listed: weight
  `diversity_weight` times the data term at its reference (C for inversion, whose loss starts near 1;
  C / rho^2 for activation maximisation, the data term of a unit at its maximum M).

All run at equal iterations (the same stages) and the same C, B, V per layer. Two tasks:

- inversion of `num_images` CIFAR-10 test images at each layer from `restarts` starts: error (IJCV
  Eq. 3), its 95% CI, restart std, class consistency and histogram intersection exactly as
  `studies.deep_networks.unit_statistics` computes them, and restart diversity: 1 minus the mean
  cosine similarity of the Gram matrices (at `diversity_layer`) of an image's restarts
  (`objectives.regularisers.gram_cosine_similarity`, the diversity term's own rule);
- activation maximisation of every class (fc8, `activation_max.activation_max_problem`: C = 3 rho^2,
  B = 160, the layer's jitter) from `am_restarts` starts: target-class probability, value / M and
  histogram intersection.

The reference histogram of gradient magnitudes is that of `histogram_images` evenly spaced CIFAR-10
test images. Wall seconds per unit include compilation (one program per prior and layer).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from jaxinv import models, nets
from jaxinv.engine import image_prior, preimage
from jaxinv.engine import parameterisation as P
from jaxinv.engine import transforms as T
from jaxinv.io import datasets, images, outputs
from jaxinv.methods import activation_max, inversion
from jaxinv.objectives import regularisers
from jaxinv.studies import deep_networks

PRIORS = ("paper", "fourier", "combined", "learned")
ALL_PRIORS = PRIORS + ("fourier+diversity",)
LAYERS = ("conv1", "pool1", "pool2", "pool3", "fc6", "fc8")
DECODER_LAYER = "pool3"
"""The learned prior's decoder: the cifar-ref pool3 inverter (`experiments.train_inverter
--representation=cifar-ref:pool3`), the last spatial layer, as Nguyen et al. (2016) decode a high layer."""


@dataclasses.dataclass(frozen=True)
class PriorsConfig:
    net: str = "cifar-ref"
    priors: Sequence[str] = PRIORS
    layers: Sequence[str] = LAYERS
    num_images: int = 4
    restarts: int = 2
    am_restarts: int = 2
    iterations: int = 100
    refine_iterations: int = 20
    decay: float = 1.0  # Lucid's (Olah et al. 2017)
    diversity_layer: str = "relu2"
    diversity_weight: float = 0.1  # x the data term at its reference, for "fourier+diversity" only
    inverter_dir: str | None = None  # default: inverters.default_dir("cifar-ref:pool3", 32)
    histogram_images: int = 100
    seed: int = 0
    data_dir: str | None = None  # the shared data folder (default: jaxinv.io.images.data_root)


def check_config(config: PriorsConfig, model) -> None:
    unknown = [p for p in config.priors if p not in ALL_PRIORS]
    if unknown or not config.priors:
        raise ValueError(f"unknown or no priors {unknown}; valid: {', '.join(ALL_PRIORS)}")
    for layer in tuple(config.layers) + (config.diversity_layer,):
        models.check_layer(model, layer)
    for name in ("num_images", "restarts", "am_restarts", "histogram_images"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.restarts < 2 or config.am_restarts < 2:
        raise ValueError("restart std and diversity need restarts >= 2 and am_restarts >= 2")


def load_decoder(config: PriorsConfig, model):
    """The learned prior's parameterisation from the trained inverter (a clear error if there is none)."""
    from jaxinv import inverters
    from jaxinv.inverters import model as inverter_model
    directory = config.inverter_dir or inverters.default_dir(f"{config.net}:{DECODER_LAYER}", models.input_side(model))
    inverter = inverter_model.load(directory)
    return inverter_model.decoder_parameterisation(inverter, models.representation(model, DECODER_LAYER).mean), directory


def prior_setting(name: str, problem: preimage.Problem, side: int, decoder, decay: float = 1.0, diversity=None):
    """(problem, Prior or None) of one prior for a problem of the paper's (see the module docstring)."""
    lucid = P.chain(P.Fourier(decay), P.DecorrelatedColour())
    if name == "paper":
        return problem, None
    if name in ("fourier", "fourier+diversity"):
        return problem, image_prior.Prior(lucid, T.lucid_transforms(side), regularisers=False,
                                          diversity=diversity if name == "fourier+diversity" else None)
    if name == "combined":
        return problem, image_prior.Prior(lucid, T.lucid_transforms(side), regularisers=True)
    if name == "learned":
        shift = (T.RandomPadding(problem.jitter - 1),) if problem.jitter > 1 else ()
        bounded = P.chain(decoder, P.Squash(problem.B_plus))  # the decoder has no inverse: a squash bounds it
        return dataclasses.replace(problem, jitter=1), image_prior.Prior(bounded, shift, regularisers=False)
    raise ValueError(f"unknown prior {name!r}")


def restart_diversity(model, layer: str, null_mean, restarts: int) -> np.ndarray:
    """Per image (N,): 1 - the mean Gram cosine similarity at `layer` among its K restarts (null-mean
    images (N * K, H, W, 3), image i's restarts consecutive)."""
    codes = inversion.codes_of(models.representation(model, layer), null_mean)
    similarity = np.asarray(regularisers.gram_cosine_similarity(jnp.asarray(codes), restarts))
    return 1.0 - similarity.reshape(-1, restarts).mean(axis=1)


def invert_unit(model, prior_name: str, layer: str, reference, config: PriorsConfig, decoder, stages) -> dict:
    problem = models.inversion_problem(model, layer)
    diversity = image_prior.Diversity(models.representation(model, config.diversity_layer),
                                      config.diversity_weight * problem.C, config.restarts)
    problem, prior = prior_setting(prior_name, problem, models.input_side(model), decoder, config.decay, diversity)
    began = time.perf_counter()
    result = inversion.invert_images(models.representation(model, layer), list(reference), problem=problem,
                                     restarts=config.restarts, stages=stages, prior=prior,
                                     seed=deep_networks.unit_seed(config.seed, layer, 0.0))
    seconds = time.perf_counter() - began
    flat = result.null_mean.reshape((-1,) + result.null_mean.shape[2:])
    return {"errors": result.errors, "predictions": deep_networks.class_predictions(model, flat).reshape(result.errors.shape),
            "hist": deep_networks.gradient_magnitude_histogram(result.images.reshape((-1,) + result.images.shape[2:])),
            "diversity": restart_diversity(model, config.diversity_layer, flat, config.restarts),
            "images": result.images, "seconds": seconds}


def maximise_unit(model, prior_name: str, config: PriorsConfig, decoder, stages, maxima) -> dict:
    layer = activation_max.class_score_layer(model)
    problem = activation_max.activation_max_problem(model, layer)
    rho = models.receptive_field(model, layer)[0]
    diversity = image_prior.Diversity(models.representation(model, config.diversity_layer),
                                      config.diversity_weight * problem.C / rho ** 2, config.am_restarts)
    problem, prior = prior_setting(prior_name, problem, models.input_side(model), decoder, config.decay, diversity)
    units = list(range(activation_max.num_units(model, layer)))
    began = time.perf_counter()
    result = activation_max.maximise_activation(model, layer, units, restarts=config.am_restarts, seed=config.seed,
                                                stages=stages, maxima=maxima, problem=problem, prior=prior)
    seconds = time.perf_counter() - began
    return {"probabilities": result.probabilities, "value_over_M": result.values / result.maxima[:, None],
            "hist": deep_networks.gradient_magnitude_histogram(result.images.reshape((-1,) + result.images.shape[2:])),
            "images": result.images, "seconds": seconds}


@dataclasses.dataclass
class PriorsResult:
    config: PriorsConfig
    reference: np.ndarray  # (N, S, S, 3) the inverted images
    class_names: list
    inversion: dict  # prior -> layer -> numbers
    activation_max: dict  # prior -> numbers
    inversion_images: dict  # prior -> layer -> (N, K, S, S, 3)
    am_images: dict  # prior -> (U, K, S, S, 3)
    seconds: float
    decoder_dir: str | None


def run(config: PriorsConfig, log: Callable[[str], None] = print) -> PriorsResult:
    """Every prior on both tasks (see the module docstring); returns the numbers and images."""
    began = time.perf_counter()
    model = nets.load(config.net)
    check_config(config, model)
    decoder, decoder_dir = load_decoder(config, model) if "learned" in config.priors else (None, None)
    reference, _ = datasets.reference_images(model, config.num_images, data_dir=config.data_dir)
    histogram_reference = deep_networks.gradient_magnitude_histogram(
        datasets.reference_images(model, config.histogram_images, data_dir=config.data_dir)[0])
    null_mean = np.stack([np.asarray(models.representation(model, config.layers[0]).to_null_mean(im)) for im in reference])
    reference_predictions = deep_networks.class_predictions(model, null_mean)
    stages = preimage.default_stages(config.iterations, config.refine_iterations)
    maxima = activation_max.activation_maxima(model, activation_max.class_score_layer(model), log=log)
    inversion_numbers, inversion_images, am_numbers, am_images = {}, {}, {}, {}
    for name in config.priors:
        inversion_numbers[name], inversion_images[name] = {}, {}
        for layer in config.layers:
            unit = invert_unit(model, name, layer, reference, config, decoder, stages)
            stats = deep_networks.unit_statistics(unit["errors"], unit["predictions"], reference_predictions,
                                                  unit["hist"], histogram_reference)
            stats.update(restart_diversity=float(np.mean(unit["diversity"])), seconds=unit["seconds"])
            inversion_numbers[name][layer], inversion_images[name][layer] = stats, unit["images"]
            log(f"{name:18s} {layer:6s} error {stats['error']:.3f}  consistency {stats['class_consistency']:.2f}  "
                f"hist {stats['hist_intersection']:.3f}  restart std {stats['restart_std']:.3f}  "
                f"diversity {stats['restart_diversity']:.3f}  {unit['seconds']:.1f} s")
        unit = maximise_unit(model, name, config, decoder, stages, maxima)
        probabilities = unit["probabilities"]
        am_numbers[name] = {"mean_probability": float(probabilities.mean()), "min_probability": float(probabilities.min()),
                            "per_class_probability": probabilities.mean(axis=1).tolist(),
                            "value_over_M": float(unit["value_over_M"].mean()),
                            "hist_intersection": deep_networks.histogram_intersection(unit["hist"], histogram_reference),
                            "seconds": unit["seconds"]}
        am_images[name] = unit["images"]
        log(f"{name:18s} activation max: p(class) mean {am_numbers[name]['mean_probability']:.3f} min "
            f"{am_numbers[name]['min_probability']:.3f}  value/M {am_numbers[name]['value_over_M']:.2f}  hist "
            f"{am_numbers[name]['hist_intersection']:.3f}  {unit['seconds']:.1f} s")
    return PriorsResult(config, reference, list(model.class_names or []), inversion_numbers, am_numbers,
                        inversion_images, am_images, time.perf_counter() - began, decoder_dir)


# ---------------------------------------------------------------- outputs

INVERSION_KEYS = ("error", "error_ci95", "restart_std", "class_consistency", "hist_intersection",
                  "restart_diversity", "seconds")
AM_KEYS = ("mean_probability", "min_probability", "value_over_M", "hist_intersection", "seconds")


def _number(value) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"


def markdown_tables(result: PriorsResult) -> str:
    """The inversion table (prior x layer) with the means over layers, and the activation-maximisation table."""
    lines = ["| prior | layer | error (Eq. 3) | +- 95% CI | restart std | class consistency | hist. intersection "
             "| restart diversity | s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, rows in result.inversion.items():
        for layer, row in list(rows.items()) + [("**mean**", {k: float(np.nanmean([r[k] for r in rows.values()]))
                                                              for k in INVERSION_KEYS})]:
            lines.append(f"| {name} | {layer} | " + " | ".join(_number(row[k]) for k in INVERSION_KEYS) + " |")
    lines += ["", "| prior | p(class) mean | p(class) min | value / M | hist. intersection | s |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, row in result.activation_max.items():
        lines.append(f"| {name} | " + " | ".join(_number(row[k]) for k in AM_KEYS) + " |")
    return "\n".join(lines) + "\n"


def _plot(result: PriorsResult, key: str, ylabel: str, path: str) -> str:
    plt = outputs.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    layers = list(result.config.layers)
    for name, rows in result.inversion.items():
        ax.plot(range(len(layers)), [rows[layer][key] for layer in layers], marker="o", label=name)
    ax.set_xticks(range(len(layers)), layers)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return outputs.save_figure(path, fig)


def _plot_am(result: PriorsResult, path: str) -> str:
    plt = outputs.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    names = list(result.activation_max)
    width = 0.8 / len(names)
    classes = result.class_names or [str(i) for i in range(len(next(iter(result.activation_max.values()))["per_class_probability"]))]
    for i, name in enumerate(names):
        ax.bar(np.arange(len(classes)) + i * width, result.activation_max[name]["per_class_probability"], width, label=name)
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=45)
    ax.set_ylabel("target-class probability (mean over restarts)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return outputs.save_figure(path, fig)


def figures(result: PriorsResult) -> dict:
    """Labelled grids: rows priors; columns the original and the layers (first image, first restart),
    and the classes (first restart)."""
    names = list(result.inversion)
    inversion_rows = [[result.reference[0]] + [result.inversion_images[n][layer][0, 0] for layer in result.config.layers]
                      for n in names]
    am_rows = [list(result.am_images[n][:, 0]) for n in names]
    return {"inversion": images.labelled_grid(inversion_rows, column_labels=["original"] + list(result.config.layers),
                                              row_labels=names, scale=3),
            "activation_max": images.labelled_grid(am_rows, column_labels=[c[:8] for c in result.class_names],
                                                   row_labels=names, scale=3)}


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def write_outputs(result: PriorsResult, out: str, parameters: dict | None = None) -> list[str]:
    """results.json, results.md, inversion.png, activation_max.png and the plots in `out`."""
    os.makedirs(out, exist_ok=True)
    parameters = dict(dataclasses.asdict(result.config), decoder_dir=result.decoder_dir, seconds=result.seconds,
                      **(parameters or {}))
    parameters.update(priors=list(result.config.priors), layers=list(result.config.layers))
    grids = figures(result)
    written = [outputs.write_json(os.path.join(out, "results.json"), {
        "parameters": parameters, "inversion": result.inversion, "activation_max": result.activation_max}),
        outputs.atomic_write(os.path.join(out, "results.md"), lambda tmp: _write_text(tmp, markdown_tables(result)),
                             ".md")]
    written += [images.save_image(os.path.join(out, f"{key}.png"), grid) for key, grid in grids.items()]
    written += [_plot(result, key, label, os.path.join(out, f"{key}.png")) for key, label in (
        ("error", "error (IJCV Eq. 3)"), ("class_consistency", "class consistency"),
        ("hist_intersection", "histogram intersection"), ("restart_diversity", "restart diversity (1 - Gram cosine)"))]
    written.append(_plot_am(result, os.path.join(out, "am_probability.png")))
    return written
