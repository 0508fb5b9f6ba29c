"""A learned inverter against optimisation-based inversion and HOGgle (Dosovitskiy & Brox, CVPR 2016,
Table 2) on held-out images, plus baselines that use no feature.

    comparison = compare(CompareConfig(inverter_dir=DIR, num_images=4, iterations=20))
    print("\n".join(summary_lines(comparison.results)))
    write_outputs(comparison, "outputs/compare_inverters", figure_images=8)

Methods, all from HOG (cell 8) of the grey (luma) image: the learned inverter; optimisation
(`shallow.invert_in_batches`, batches cached in CACHE_DIR/cache so a rerun resumes); HOGgle with a
paired dictionary; for lbp and sift only the learned inverter and the baselines. Errors
(`jaxinv.inverters.image_errors`): ||x_i - x*_i|| / N, N the mean distance between the test images,
on grey versions; seconds per image are wall-clock times including compilation.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from jaxinv.engine import preimage
from jaxinv.inverters import hoggle, hoggle_experiments
from jaxinv.io import arguments, images, outputs
from jaxinv.io import progress as bars
from jaxinv.methods import metrics
from jaxinv.studies import shallow
from jaxinv.inverters import data, features as inverter_features
from jaxinv.inverters import metrics as inverter_metrics
from jaxinv.inverters import model as inverter_model

# Dosovitskiy & Brox (CVPR 2016) Table 2, 256x256: HOG inverted by HOGgle and by optimisation; learned inverters.
PAPER_TABLE2 = {"hoggle": 0.61, "optimisation": 0.63, "learned": {"hog": 0.24, "sift": 0.28, "lbp": 0.38}}
HOG_ONLY = ("optimisation", "hoggle")
DEFAULT_SIZE = 64
ON_DEMAND_WINDOWS = 7200  # 16 windows of 5x5 cells in each of the 450 training images at 64x64


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    representation: str = "hog"
    inverter_dir: str | None = None  # default: jaxinv.inverters.trained_or_shipped_dir(representation, size)
    size: int | None = None  # default: DEFAULT_SIZE, or the inverter's
    images_dir: str | None = None
    split: str = "test"  # test: the last 50 sorted files (held out); all: every file
    num_images: int = 50
    C: float = 100.0
    iterations: int = 300
    refine_iterations: int = 50
    batch_size: int = 10
    skip_optimisation: bool = False
    skip_hoggle: bool = False
    hoggle_dictionary: str | None = None  # default: hoggle.default_dictionary_path(size), built on demand
    cache_dir: str | None = None  # where the optimisation's finished batches are cached

    def __post_init__(self):
        if arguments.check_count("num_images", self.num_images) < 2:
            raise ValueError(f"num_images must be at least 2 images (the image error is normalised by the distances "
                             f"between images); got {self.num_images}")
        arguments.check_count("size", self.size, optional=True)
        arguments.check_count("batch_size", self.batch_size)
        for name in ("iterations", "refine_iterations"):
            arguments.check_count(name, getattr(self, name), 0)


@dataclasses.dataclass
class Comparison:
    results: dict  # results.json
    per_image: dict  # per_image.json
    originals: np.ndarray  # the colour test images
    reconstructions: dict  # method -> images, in the figure's column order


def paper_value(method: str, representation: str) -> float | None:
    value = PAPER_TABLE2[method]
    return value.get(representation) if isinstance(value, dict) else value


def load_test_images(config: CompareConfig, size: int) -> tuple[np.ndarray, list[str]]:
    paths = data.imagenet_split(config.images_dir)[1] if config.split == "test" else \
        images.imagenet_sample_paths(config.images_dir)
    paths = paths[:config.num_images]
    if len(paths) < 2:
        raise ValueError(f"the image error needs at least 2 images; {len(paths)} selected")
    return np.stack([images.load_image(p, size=size) for p in paths]), [os.path.basename(p) for p in paths]


def on_demand_hoggle_config(size: int, images_dir: str | None = None) -> hoggle_experiments.TrainConfig:
    """The dictionary built when none is at the default path: `jaxinv-train-hoggle`'s defaults on
    size x size images (every window at 64, as docs/shallow_inversion.md's dictionary; at other sizes ON_DEMAND_WINDOWS
    random windows, about as many as at 64, so that it takes about as long, ~90 s on 2 cores)."""
    return hoggle_experiments.TrainConfig(images_dir=images_dir, image_size=size,
                                          num_patches=None if size == DEFAULT_SIZE else ON_DEMAND_WINDOWS)


def load_hoggle_dictionary(path: str | None, size: int = DEFAULT_SIZE, images_dir: str | None = None,
                           log=print) -> hoggle.PairedDictionary:
    """The HOGgle paired dictionary, checked before any inversion runs. Without `path`, the default one for
    `size` (`hoggle.default_dictionary_path(size)`), built on demand (`on_demand_hoggle_config`) and saved
    there when missing; a given `path` must exist."""
    if path is None:
        path = hoggle.default_dictionary_path(size)
        if not os.path.isfile(path):
            config = on_demand_hoggle_config(size, images_dir)
            log(f"no HOGgle dictionary at {path}: learning one on {size}x{size} images "
                f"(jaxinv-train-hoggle --image_size={size}"
                f"{f' --num_patches={config.num_patches}' if config.num_patches else ''}; ~90 s on 2 cores)")
            start = time.perf_counter()
            hoggle_experiments.train(config, log=log).save(path)
            log(f"HOGgle dictionary learned in {time.perf_counter() - start:.0f} s -> {path}")
        return hoggle.PairedDictionary.load(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"HOGgle dictionary not found: {path} (train one, pass --hoggle_dictionary, "
                                f"or rerun with --skip_hoggle)")
    return hoggle.PairedDictionary.load(path)


def load_inverter(config: CompareConfig) -> tuple[inverter_model.Inverter, str]:
    """The inverter and its folder, checked against config.representation and config.size."""
    directory = config.inverter_dir or inverter_model.trained_or_shipped_dir(config.representation,
                                                                              config.size or DEFAULT_SIZE)
    inverter = inverter_model.load(directory)
    if inverter.representation != config.representation:
        raise ValueError(f"{directory} inverts {inverter.representation!r}, not {config.representation!r}")
    if config.size and config.size != inverter.image_size:
        raise ValueError(f"{directory} makes {inverter.image_size}x{inverter.image_size} images, not "
                         f"--size={config.size}")
    return inverter, directory


def summary(per_image: np.ndarray, **extra) -> dict:
    mean, ci = metrics.mean_with_ci95(per_image)
    return dict(image_error=mean, ci95=ci, **extra)


def skip_reason(config: CompareConfig, method: str) -> str | None:
    """Why a HOG-only method is left out, or None when it runs."""
    if {"optimisation": config.skip_optimisation, "hoggle": config.skip_hoggle}[method]:
        return "skipped by flag"
    if config.representation != "hog":
        return f"exists for hog only, not {config.representation!r}"
    return None


def hog_method(config: CompareConfig, method: str, grey: np.ndarray, dictionary) -> np.ndarray:
    """Reconstructions of the grey images from their HOG by optimisation or by HOGgle."""
    if method == "optimisation":
        with bars.units(-(-len(grey) // config.batch_size), "batches") as done:
            study = shallow.invert_in_batches(
                "hog", list(grey), batch_size=config.batch_size, restarts=1, C=config.C,
                stages=preimage.default_stages(config.iterations, config.refine_iterations),
                cache_dir=config.cache_dir and os.path.join(config.cache_dir, "cache"), on_batch=done.update)
        return study["reconstructions"][:, 0]
    codes = inverter_features.compute(inverter_features.representation("hog"), grey)
    return hoggle.invert_hogs(dictionary, codes, grey.shape[1:])  # one lasso solve for all images


def compare(config: CompareConfig, log=print) -> Comparison:
    """Every method on the test images; missing inputs (inverter, a given dictionary) fail before any work;
    a missing default HOGgle dictionary is learned (`load_hoggle_dictionary`)."""
    dictionary = None
    hoggle_runs = skip_reason(config, "hoggle") is None
    if hoggle_runs and config.hoggle_dictionary:  # a given dictionary is checked first, a default one built later
        dictionary = load_hoggle_dictionary(config.hoggle_dictionary)
    inverter, directory = load_inverter(config)
    size = inverter.image_size
    if hoggle_runs and dictionary is None:
        dictionary = load_hoggle_dictionary(None, size, config.images_dir, log)
    colour, names = load_test_images(config, size)
    grey = images.to_grey(colour)
    log(f"{len(names)} images of {size}x{size} ({config.split} split); inverter {directory} "
        f"({inverter.metadata.get('steps')} steps)")
    start = time.perf_counter()
    reconstructions = {"learned": inverter.invert_images(colour)}
    seconds = time.perf_counter() - start
    errors = {"learned": inverter_metrics.image_errors(reconstructions["learned"], colour, grey=True),
              "learned_colour": inverter_metrics.image_errors(reconstructions["learned"], colour)}
    results = {"learned": summary(errors["learned"], image_error_colour=float(errors["learned_colour"].mean()),
                                  seconds_per_image=seconds / len(names)),
               "baselines": {name: summary(values) for name, values in
                             inverter_metrics.flat_baseline_errors(colour, grey=True).items()}}
    for method in HOG_ONLY:
        reason = skip_reason(config, method)
        if reason is not None:
            results[method] = {"image_error": None, "skipped": reason}
            continue
        start = time.perf_counter()
        reconstructions[method] = hog_method(config, method, grey, dictionary)
        errors[method] = inverter_metrics.image_errors(reconstructions[method], grey, grey=True)
        results[method] = summary(errors[method], seconds_per_image=(time.perf_counter() - start) / len(names))
    results.update(representation=config.representation, num_images=len(names), size=size, split=config.split,
                   inverter_dir=os.path.abspath(directory), inverter_metadata=inverter.metadata,
                   optimisation_settings=dict(C=config.C, iterations=config.iterations,
                                              refine_iterations=config.refine_iterations),
                   error="mean ||x - x*|| / mean pairwise distance of the test images, grey (luma) versions",
                   paper_table2={m: paper_value(m, config.representation) for m in PAPER_TABLE2})
    per_image = {"images": names, **{k: v.tolist() for k, v in errors.items()}}
    return Comparison(results, per_image, colour, reconstructions)


def summary_lines(results: dict) -> list[str]:
    """The table as printed: one line per method (error with its 95% CI, the paper's value), then
    the baselines."""
    lines = []
    for method in ("learned", *HOG_ONLY):
        entry = results[method]
        if entry["image_error"] is None:
            lines.append(f"{method:13s} skipped ({entry['skipped']})")
            continue
        line = f"{method:13s} image error {entry['image_error']:.3f} +- {metrics.shown(entry['ci95'])} (grey)"
        if method == "learned":
            line += f", {entry['image_error_colour']:.3f} (colour)"
        paper = paper_value(method, results["representation"])
        lines.append(line + (f"   paper (256x256): {paper:.2f}" if paper is not None else ""))
    for name, entry in results["baselines"].items():
        lines.append(f"baseline: {name:15s} image error {entry['image_error']:.3f} +- {metrics.shown(entry['ci95'])} "
                     f"(grey, no feature used)")
    return lines


def write_outputs(comparison: Comparison, output_dir: str, figure_images: int = 8) -> list[str]:
    """results.json, per_image.json and figure.png (rows = images; columns original | learned |
    optimisation | HOGgle, the methods that ran)."""
    size = comparison.results["size"]
    shown = range(min(figure_images, len(comparison.originals)))
    methods = list(comparison.reconstructions)
    rows = [[comparison.originals[i]] + [comparison.reconstructions[m][i] for m in methods] for i in shown]
    captions = [[""] + [f"error {comparison.per_image[m][i]:.3f}" for m in methods] for i in shown]
    grid = images.labelled_grid(rows, column_labels=["original"] + methods, tile_labels=captions,
                                row_labels=[str(comparison.per_image["images"][i])[:12] for i in shown],
                                tile=(max(size, 128), max(size, 128)))
    return [outputs.write_json(os.path.join(output_dir, "results.json"), comparison.results),
            outputs.write_json(os.path.join(output_dir, "per_image.json"), comparison.per_image),
            images.save_image(os.path.join(output_dir, "figure.png"), grid)]


RESOLUTION_DATA = "resolution.json"


def resolution_summary(result_dirs, output_dir: str, plot_name: str = "resolution.png",
                       previous: str | None = None) -> tuple[str, str]:
    """Error against resolution from several `compare` outputs (DIR/results.json, any representations and
    sizes): a markdown table (one row per method and representation, then the baselines that use no feature;
    one column per size: mean grey error +- 95% CI) and a plot (one line per method, dashed for the
    baselines, the paper's 256x256 values as stars), written to OUTPUT_DIR/resolution.md and
    OUTPUT_DIR/<plot_name>, with the entries behind them in OUTPUT_DIR/resolution.json; returns (table, plot
    path). `previous`: an earlier summary's resolution.json whose entries are kept where `result_dirs` give no
    (method, size) of their own, so a table grows run by run without keeping every comparison folder."""
    lines, baselines = {}, {}  # (method label) -> {size: entry}
    if previous is not None:
        for kind, table in outputs.read_json(previous).items():
            for label, by_size in table.items():
                (lines if kind == "methods" else baselines)[label] = {int(s): e for s, e in by_size.items()}
    for directory in result_dirs:
        results = outputs.read_json(os.path.join(directory, "results.json"))
        rep, size = results["representation"], int(results["size"])
        for method in ("learned", *HOG_ONLY):
            entry = results.get(method) or {}
            if entry.get("image_error") is None:
                continue
            label = f"learned {rep.upper()}" if method == "learned" else f"{method} (HOG)"
            detail = ""
            if method == "learned":
                meta = results.get("inverter_metadata", {})
                detail = f"width {meta.get('width')}, {meta.get('selected_step', meta.get('steps'))} steps"
            lines.setdefault(label, {})[size] = dict(image_error=entry["image_error"], ci95=entry["ci95"],
                                                     num_images=results["num_images"], detail=detail,
                                                     paper=paper_value(method, rep), source=directory)
        for name, entry in (results.get("baselines") or {}).items():  # the same at a size for every representation
            baselines.setdefault(f"baseline: {name}", {})[size] = dict(
                image_error=entry["image_error"], ci95=entry["ci95"], num_images=results["num_images"],
                detail="no feature", paper=None, source=directory)
    data = {"methods": lines, "baselines": baselines}
    lines = {**lines, **baselines}
    sizes = sorted({size for by_size in lines.values() for size in by_size})
    header = "| method | " + " | ".join(f"{s}x{s}" for s in sizes) + " | paper (256x256) |"
    rows = [header, "|" + " --- |" * (len(sizes) + 2)]
    for label, by_size in lines.items():
        cells = []
        for s in sizes:
            e = by_size.get(s)
            cells.append("not run" if e is None else f"{e['image_error']:.3f} +- {e['ci95']:.3f} ({e['num_images']} images"
                         + (f"; {e['detail']}" if e["detail"] else "") + ")")
        paper = next((e["paper"] for e in by_size.values() if e["paper"] is not None), None)
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {'' if paper is None else f'{paper:.2f}'} |")
    table = "\n".join(rows) + "\n"
    plt = outputs.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (label, by_size) in enumerate(lines.items()):
        xs = sorted(by_size)
        colour = f"C{k}"
        ax.errorbar(xs, [by_size[x]["image_error"] for x in xs], yerr=[by_size[x]["ci95"] for x in xs],
                    marker="o", capsize=3, color=colour, label=label, ls="--" if label in baselines else "-")
        paper = next((e["paper"] for e in by_size.values() if e["paper"] is not None), None)
        if paper is not None:
            ax.plot([256], [paper], marker="*", markersize=12, color=colour, ls="none")
    ax.plot([], [], marker="*", color="grey", ls="none", markersize=10, label="paper (256x256, Table 2)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(sizes) | {256}))
    ax.set_xticklabels([str(s) for s in sorted(set(sizes) | {256})])
    ax.set_xlabel("image size (pixels)")
    ax.set_ylabel("image error (grey, mean +- 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: lines span the whole plot
    os.makedirs(output_dir, exist_ok=True)

    def write_table(tmp):
        with open(tmp, "w") as handle:
            handle.write(table)
    outputs.atomic_write(os.path.join(output_dir, "resolution.md"), write_table, ".md")
    outputs.write_json(os.path.join(output_dir, RESOLUTION_DATA), data)
    return table, outputs.save_figure(os.path.join(output_dir, plot_name), fig)
