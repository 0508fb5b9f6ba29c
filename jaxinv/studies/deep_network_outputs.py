"""What a finished deep-network study (`jaxinv.studies.deep_networks`) reports: the per-layer summary at
each C (error with its 95% interval, restart spread, class consistency, histogram intersection), the
plots against the layer, the reconstruction and invariance grids, and results.json / index.html.
"""
from __future__ import annotations

import json
import math
import os
from typing import Mapping

import numpy as np

from jaxinv.io import arguments, images, outputs, report
from jaxinv.studies.deep_networks import HIST_BINS, HIST_EDGES, SUMMARY_KEYS, Study, c_key, c_number, unit_statistics


def _finite(value):
    return None if value is None or not math.isfinite(value) else value


def summarise(study: Study) -> dict:
    """results.json: {"layers", "C", "error", "error_ci95", "restart_std", "class_consistency",
    "hist_intersection"} ({layer: {C key: value}}, NaN written as null), then "best_C" (the studied C
    of lowest mean error per layer), "rule_C" (layer_rules.layer_C), "at_best_C" (the four numbers there),
    "seconds" per unit (compilation included), "seconds_per_problem" (that over N * K) and "parameters"."""
    if not study.complete:
        raise ValueError("the study is incomplete: run it to the end before summarising")
    results = {"layers": list(study.layers), "C": [c_number(c) for c in study.C]}
    for key in SUMMARY_KEYS:
        results[key] = {layer: {} for layer in study.layers}
    for layer, c in ((layer, c) for layer in study.layers for c in study.C):
        unit = study.units[(layer, c)]
        stats = unit_statistics(unit["errors"], unit["predictions"], study.reference_predictions, unit["hist"],
                                study.reference_hist)
        for key in SUMMARY_KEYS:
            results[key][layer][c_key(c)] = _finite(stats[key])
    results["best_C"] = {layer: c_number(min(study.C, key=lambda c: results["error"][layer][c_key(c)]))
                         for layer in study.layers}
    results["rule_C"] = {layer: c_number(study.rule_C[layer]) for layer in study.layers}
    results["at_best_C"] = {layer: {key: results[key][layer][c_key(results["best_C"][layer])]
                                    for key in ("error", "restart_std", "class_consistency", "hist_intersection")}
                            for layer in study.layers}
    results["seconds"] = {layer: {c_key(c): float(study.units[(layer, c)]["seconds"]) for c in study.C}
                          for layer in study.layers}
    problems = study.reference.shape[0] * study.settings["restarts"]
    results["seconds_per_problem"] = {layer: {c: value / problems for c, value in row.items()}
                                      for layer, row in results["seconds"].items()}
    results["parameters"] = dict(study.settings, network=study.network, reference_images=study.reference_names,
                                 hist_bins=HIST_BINS, hist_bin_width=float(HIST_EDGES[1] - HIST_EDGES[0]))
    return results


def figure_C(study: Study, layer: str) -> float:
    """The C shown for `layer` in the figures: the rule's C if studied, else the nearest studied one."""
    return min(study.C, key=lambda c: (abs(math.log(c) - math.log(study.rule_C[layer])), c))


def _plot_per_layer(results: dict, key: str, path: str, ylabel: str, title: str, ci_key: str | None = None,
                    ylim=None) -> str:
    plt = outputs.pyplot()
    layers = results["layers"]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(layers) + 2), 4))
    x = np.arange(len(layers))
    for offset, c in enumerate(results["C"]):
        key_c = c_key(c)
        y = np.array([np.nan if results[key][l][key_c] is None else results[key][l][key_c] for l in layers], float)
        shift = (offset - (len(results["C"]) - 1) / 2) * 0.08
        if ci_key:
            err = np.array([np.nan if results[ci_key][l][key_c] is None else results[ci_key][l][key_c]
                            for l in layers], float)
            ax.errorbar(x + shift, y, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=3, label=f"C = {key_c}")
        else:
            ax.plot(x + shift, y, marker="o", ms=4, label=f"C = {key_c}")
    ax.set_xticks(x, layers, rotation=60)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend()
    return outputs.save_figure(path, fig)


def plot_results(results: dict, output_dir: str) -> list[str]:
    """error (with 95% CI bars), restart std, classification consistency and histogram intersection vs layer."""
    join = lambda name: os.path.join(output_dir, name)
    return [
        _plot_per_layer(results, "error", join("error_vs_layer.png"), "normalised error (IJCV Eq. 3)",
                        "Reconstruction error, mean and 95% CI over images", ci_key="error_ci95"),
        _plot_per_layer(results, "restart_std", join("restart_std_vs_layer.png"), "std of error over restarts",
                        "Consistency over random restarts (mean over images)"),
        _plot_per_layer(results, "class_consistency", join("class_consistency_vs_layer.png"),
                        "fraction with the reference's class", "Classification consistency", ylim=(-0.02, 1.02)),
        _plot_per_layer(results, "hist_intersection", join("hist_intersection_vs_layer.png"),
                        "histogram intersection", "Naturalness: gradient-magnitude histogram intersection",
                        ylim=(-0.02, 1.02)),
    ]


def plot_histograms(study: Study, path: str) -> str:
    """Normalised gradient-magnitude histograms: reference images and each layer at its figure C."""
    plt = outputs.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    ax.plot(centres, study.reference_hist / study.reference_hist.sum(), "k", lw=2.5, label="reference")
    colours = plt.cm.viridis(np.linspace(0, 1, len(study.layers)))
    for colour, layer in zip(colours, study.layers):
        c = figure_C(study, layer)
        hist = study.units[(layer, c)]["hist"]
        ax.plot(centres, hist / hist.sum(), color=colour, lw=1, label=f"{layer} C={c:g}")
    ax.set_yscale("log")
    ax.set_xlabel("grey-level gradient magnitude")
    ax.set_ylabel("fraction of pixels")
    ax.set_title("Gradient-magnitude histograms")
    ax.legend(fontsize=6, ncol=2)
    return outputs.save_figure(path, fig)


def _scale(study: Study) -> int:
    return max(1, 96 // study.reference.shape[1])


def layer_grid(study: Study, path: str, C: float | None = None, max_images: int = 8) -> str:
    """IJCV Fig. 6 layout: images down, layers across (first column the reference), restart 0 of each
    image, at C (None: each layer's `figure_C`)."""
    rows, captions, count = [], [], min(max_images, len(study.reference))
    for i in range(count):
        units = [study.units[(layer, C if C is not None else figure_C(study, layer))] for layer in study.layers]
        rows.append([study.reference[i]] + [unit["first_restart"][i] for unit in units])
        captions.append([""] + [f"{unit['errors'][i, 0]:.3f}" for unit in units])
    labels = ["image"] + [layer if C is not None else f"{layer} C={figure_C(study, layer):g}" for layer in study.layers]
    grid = images.labelled_grid(rows, column_labels=labels, row_labels=[str(i) for i in range(count)],
                                tile_labels=captions, scale=_scale(study))
    return images.save_image(path, grid)


def invariance_grid(study: Study, image: int, path: str) -> str:
    """IJCV Fig. 12 layout for one image: restarts down, layers across (each at its `figure_C`),
    the reference in the first column of the first row."""
    kept = study.units[(study.layers[0], figure_C(study, study.layers[0]))]["restarts"]
    if image >= len(kept):
        raise ValueError(f"restarts of image {image} were not kept (invariance_images = {len(kept)})")
    blank = np.full_like(study.reference[image], 255.0)
    restarts = kept.shape[1]
    units = [study.units[(layer, figure_C(study, layer))] for layer in study.layers]
    rows = [[study.reference[image] if k == 0 else blank] + [unit["restarts"][image, k] for unit in units]
            for k in range(restarts)]
    captions = [[""] + [f"{unit['errors'][image, k]:.3f}" for unit in units] for k in range(restarts)]
    labels = ["image"] + [f"{layer} C={figure_C(study, layer):g}" for layer in study.layers]
    grid = images.labelled_grid(rows, column_labels=labels, row_labels=[f"seed {k}" for k in range(restarts)],
                                tile_labels=captions, scale=_scale(study))
    return images.save_image(path, grid)


def write_outputs(study: Study, output_dir: str, *, parameters: Mapping | None = None,
                  figure_images: int = 8) -> dict:
    """Writes results.json, the plots, the grids and index.html under `output_dir`; returns their
    paths and, under "summary", the results dict."""
    arguments.check_count("figure_images", figure_images)
    results = summarise(study)
    if parameters:
        results["parameters"].update(parameters)
    join = lambda name: os.path.join(output_dir, name)
    written = {"summary": results, "results": outputs.write_json(join("results.json"), results)}
    written["plots"] = plot_results(results, output_dir) + [plot_histograms(study, join("gradient_histograms.png"))]
    written["grids"] = [layer_grid(study, join("grid_rule_C.png"), None, figure_images)]
    written["grids"] += [layer_grid(study, join(f"grid_C{c_key(c)}.png"), c, figure_images) for c in study.C]
    written["invariance"] = [invariance_grid(study, i, join(f"invariance_image{i}.png"))
                             for i in range(study.settings["invariance_images"])]
    table = {layer: {key: results["at_best_C"][layer][key] for key in ("error", "class_consistency", "restart_std")}
             for layer in study.layers}
    written["index"] = report.write_html(
        join("index.html"), f"Deep-network pre-image studies: {study.network}", results["parameters"],
        [("Results", [written["results"]]), ("Statistics per layer", written["plots"]),
         ("Reconstructions: images down, layers across (restart 0; the rule's C per layer, then each C)",
          written["grids"]),
         ("Invariance: random restarts down, layers across", written["invariance"])],
        notes="At the best C per layer (lowest error): " + json.dumps(
            {layer: {"C": results["best_C"][layer], **{k: None if v is None else round(v, 3) for k, v in row.items()}}
             for layer, row in table.items()}))
    return written
