"""The activation-maximisation experiment (IJCV Sect. 6): images that maximally excite units of a
network layer, with their numbers and figures.

    result = run(ActivationMaxConfig(layer="fc8", restarts=2, iterations=40))
    write_outputs(result, "outputs/activation_max")

`run` picks the units, measures the maxima M on the reference images (cached), maximises every unit
from `restarts` initialisations and computes what results.json holds; the primitives are in
`jaxinv.methods.visualise`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import numpy as np

from jaxinv import nets
from jaxinv.engine import preimage
from jaxinv.io import datasets, images, outputs, report
from jaxinv.methods import visualise
from jaxinv.nets import taps


@dataclasses.dataclass(frozen=True)
class ActivationMaxConfig:
    net: str = "cifar-ref"
    layer: str = "fc8"
    units: Sequence[int] | None = None  # default: every class of the class-score layer, else the first 8 channels
    restarts: int = 4
    iterations: int = 300
    refine_iterations: int = 50
    C: float | None = None  # default 3 rho^2 (visualise.AM_C_PER_RHO2)
    bound: float = visualise.AM_BOUND
    paper_settings: bool = False  # C = 1 and B = 80 as in IJCV Sect. 6 (overrides C and bound)
    reference_images: int | None = None  # measure M on only N reference images (default: all)
    cache_dir: str | None = None  # where the maxima M are cached (default: visualise.cache_dir())
    seed: int = 0
    scale: int = 0  # grid enlargement (0: tiles of about 128 pixels)


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
    return list(range(min(visualise.num_units(model, layer), 10 if visualise.is_class_layer(model, layer) else 8)))


def unit_entries(result: visualise.ActivationMax, units: Sequence[int], names: Sequence[str]) -> list[dict]:
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


def run(config: ActivationMaxConfig, log: Callable[[str], None] = print) -> ActivationMaxResult:
    model = nets.load(config.net)
    layer = config.layer
    taps.check_layer(model, layer)
    class_layer = visualise.is_class_layer(model, layer)
    units = [int(u) for u in config.units] if config.units else default_units(model, layer)
    visualise.check_units(model, layer, units)
    C, bound = (1.0, 80.0) if config.paper_settings else (config.C, config.bound)
    reference, _ = datasets.reference_images(model, config.reference_images)
    maxima = visualise.activation_maxima(model, layer, reference, directory=config.cache_dir)
    size = visualise.activation_max_input_size(model, layer)
    log(f"maximising {len(units)} units of {model.arch}:{layer} on {size}x{size} images, "
        f"{config.restarts} restarts, {config.iterations}+{config.refine_iterations} iterations")
    result = visualise.maximise_activation(
        model, layer, units, restarts=config.restarts, seed=config.seed, C=C, bound=bound, maxima=maxima,
        stages=preimage.default_stages(config.iterations, config.refine_iterations), progress=preimage.print_progress)
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
    grid = images.labelled_grid(rows, column_labels=[u["name"] for u in result.units],
                                row_labels=[f"restart {k}" for k in range(restarts)], scale=result.scale)
    written = [images.save_image(os.path.join(out, "grid.png"), grid),
               outputs.plot_energy_terms(result.history, os.path.join(out, "energy.png"),
                                         title=f"activation maximisation {p['arch']}:{p['layer']}"),
               outputs.write_json(os.path.join(out, "results.json"), dict(p, units=result.units, **result.summary))]
    written.append(report.write_html(
        os.path.join(out, "index.html"), f"Activation maximisation: {p['arch']} {p['layer']}", p,
        [("Units across, restarts down", written[:1]), ("Energy", written[1:2]), ("Results", written[2:3])],
        notes="Probabilities are measured on the saved images (clipped to [0, 255])." if result.summary else ""))
    return written
