"""Inverting shallow representations (HOG, HOGb, DSIFT) of grey images: one image from several
restarts (`experiments.invert`) and the study of IJCV Table 2 / CVPR 2015 Table 1
(`experiments.shallow_table`)."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

import numpy as np

from jaxinv import representations
from jaxinv.engine import preimage
from jaxinv.io import arguments, cache, checkpoints, images, outputs, paths
from jaxinv.io import progress as bars
from jaxinv.methods import inversion, metrics

PAPER_IJCV_TABLE2 = {"hog": 0.366, "hogb": 0.116, "dsift": 0.094}
PAPER_CVPR_TABLE1 = {"hog": 0.281, "hogb": 0.107, "dsift": 0.109}


def load_grey_images(paths: Sequence[str], size: int) -> list[np.ndarray]:
    """Grey size x size centre crops in [0, 255], as the papers invert grey images."""
    return [images.load_image(p, grey=True, size=size) for p in paths]


def invert_in_batches(name: str, grey_images: Sequence[np.ndarray], *, batch_size: int, restarts: int,
                      stages, C: float, cache_dir: str | None = None,
                      log: Callable[[str], None] = print, progress=None, on_batch: Callable[[], None] | None = None
                      ) -> dict:
    """Inverts `name` of every image, `batch_size` images per vmapped run; a finished batch is
    checkpointed in `cache_dir` (`io.checkpoints`) so an interrupted study resumes where it stopped. The run holds
    `cache_dir`'s lock (`io.paths`), and batches cached with other settings or images are refused before any is
    computed (`checkpoints.check_fingerprint`).

    Returns arrays over images: errors (N, K), codes (N, K, ...), targets (N, ...), reconstructions
    (N, K, H, W) and the solver's seconds. `progress`: bars of each batch's iterations (`jaxinv.io.progress`);
    `on_batch()` is called after each batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    representation = representations.get(name)
    problem = inversion.shallow_problem(C)
    stages = tuple(stages)
    run = lambda: _invert_batches(name, representation, problem, grey_images, batch_size, restarts, stages, cache_dir,
                                  log, progress, on_batch)
    if not cache_dir:
        return run()
    fingerprint = dict(C=C, restarts=restarts, batch_size=batch_size,
                       stages=[[s.iterations, s.step_scale, s.jitter] for s in stages],
                       images_sha256=cache.images_fingerprint(np.stack(grey_images)) if len(grey_images) else None)
    with paths.lock_folder(cache_dir):
        checkpoints.check_fingerprint(cache_dir, fingerprint, "inverted batches of a different study", STUDY_FILE)
        return run()


STUDY_FILE = "study.json"


def _invert_batches(name, representation, problem, grey_images, batch_size, restarts, stages, cache_dir, log,
                    progress, on_batch):
    parts = []
    for start in range(0, len(grey_images), batch_size):
        batch = grey_images[start:start + batch_size]
        path = cache_dir and os.path.join(cache_dir, f"{name}_{start:05d}_{len(batch)}")
        if path and os.path.isdir(path):
            parts.append({key: np.asarray(value) for key, value in checkpoints.read_tree(path).items()})
            log(f"  {name}: images {start}-{start + len(batch) - 1} loaded from {path}")
            if on_batch:
                on_batch()
            continue
        began = time.perf_counter()
        result = inversion.invert_images(representation, batch, problem=problem, restarts=restarts, stages=stages,
                                         progress=progress)
        part = {"errors": result.errors, "codes": result.codes, "targets": result.target_codes,
                "reconstructions": result.images, "seconds": np.asarray(time.perf_counter() - began)}
        if path:
            checkpoints.write_tree(path, part)
        parts.append(part)
        log(f"  {name}: images {start}-{start + len(batch) - 1}: mean error {result.errors.mean():.3f} "
            f"({part['seconds']:.1f} s)")
        if on_batch:
            on_batch()
    joined = {key: np.concatenate([p[key] for p in parts]) for key in ("errors", "codes", "targets", "reconstructions")}
    joined["seconds"] = float(sum(p["seconds"] for p in parts))
    return joined


def summarise(study: dict) -> dict:
    """Table entries: mean IJCV error over images with its 95% CI, CVPR error, seconds per image."""
    per_image = study["errors"].mean(axis=1)
    mean, ci = metrics.mean_with_ci95(per_image)
    num = len(per_image)
    cvpr = np.mean([metrics.cvpr_errors(study["codes"][:, k], study["targets"]).mean()
                    for k in range(study["codes"].shape[1])]) if num > 1 else float("nan")
    return {"mean_error": mean, "ci95": ci, "cvpr_error": float(cvpr),
            "seconds_per_image": study["seconds"] / num, "num_images": num}


@dataclasses.dataclass(frozen=True)
class TableConfig:
    images_dir: str | None = None  # default: the ImageNet samples
    num_images: int = 100  # the first N images in sorted order
    size: int = 256  # centre-cropped and resized to size x size
    representations: Sequence[str] = tuple(representations.names())
    C: float = 100.0
    iterations: int = 300
    refine_iterations: int = 50
    restarts: int = 1  # errors are averaged over them
    batch_size: int = 10  # images inverted together in one vmapped run

    def __post_init__(self):
        for name in ("num_images", "size", "restarts", "batch_size"):
            arguments.check_count(name, getattr(self, name))
        for name in ("iterations", "refine_iterations"):
            arguments.check_count(name, getattr(self, name), 0)


@dataclasses.dataclass
class Table:
    config: TableConfig
    results: dict  # {representation: `summarise` entry}: results.json
    studies: dict  # {representation: `invert_in_batches` arrays}
    grey: list  # the images


def run_table(config: TableConfig, cache_dir: str | None = None, log: Callable[[str], None] = print,
              progress=None) -> Table:
    """Inverts every representation of every image (finished batches cached in cache_dir); `progress`: a bar of
    the (representation, batch) units and one of each batch's iterations (`jaxinv.io.progress`)."""
    for name in config.representations:
        representations.get(name)  # fails early, listing the valid names
    paths = images.imagenet_sample_paths(config.images_dir, config.num_images)
    grey = load_grey_images(paths, config.size)
    log(f"{len(grey)} images of {config.size}x{config.size}, C={config.C}, "
        f"{config.iterations}+{config.refine_iterations} iterations, {config.restarts} restart(s)")
    stages = preimage.default_stages(config.iterations, config.refine_iterations)
    results, studies = {}, {}
    batches = -(-len(grey) // config.batch_size)
    with bars.units(len(config.representations) * batches, "batches", progress) as done:
        for name in config.representations:
            studies[name] = invert_in_batches(name, grey, batch_size=config.batch_size, restarts=config.restarts,
                                              stages=stages, C=config.C, cache_dir=cache_dir, log=log,
                                              progress=progress, on_batch=done.update)
            results[name] = summarise(studies[name])
            log(table_line(name, results[name]))
    return Table(config, results, studies, grey)


def table_line(name: str, entry: dict) -> str:
    """A row of the table beside the papers' values."""
    return (f"{name:6s} error {entry['mean_error']:.3f} +- {metrics.shown(entry['ci95'])}  "
            f"(paper {PAPER_IJCV_TABLE2[name]:.3f})  cvpr {metrics.shown(entry['cvpr_error'])} "
            f"(paper {PAPER_CVPR_TABLE1[name]:.3f})"
            f"  {entry['seconds_per_image']:.2f} s/image")


def write_table(table: Table, output_dir: str, figure_images: int = 4) -> tuple[str, str, list[str]]:
    """results.json and figure.png like IJCV Fig. 5 (original, HOG glyphs when HOG is inverted, then
    each representation's pre-image); returns both paths and the figure's column names."""
    names, studies = list(table.config.representations), table.studies
    rows, captions = [], []
    for i in range(min(figure_images, len(table.grey))):
        glyphs = [representations.render("hog", studies["hog"]["targets"][i])] if "hog" in studies else []
        rows.append([table.grey[i]] + glyphs + [studies[name]["reconstructions"][i, 0] for name in names])
        captions.append([""] * (1 + len(glyphs)) + [f"error {studies[name]['errors'][i, 0]:.3f}" for name in names])
    columns = ["original"] + (["HOG glyphs"] if "hog" in studies else []) + [f"{n}^-1" for n in names]
    figure = images.save_image(os.path.join(output_dir, "figure.png"), images.labelled_grid(
        rows, column_labels=columns, row_labels=[f"image {i}" for i in range(len(rows))], tile_labels=captions,
        tile=table.grey[0].shape[:2]))
    return outputs.write_json(os.path.join(output_dir, "results.json"), table.results), figure, columns


@dataclasses.dataclass(frozen=True)
class InvertConfig:
    representation: str = "hog"
    image: str | None = None  # default: the built-in sample
    size: int = 256  # centre-cropped and resized to size x size (0 keeps the original)
    C: float = 100.0
    iterations: int = 300
    refine_iterations: int = 50
    restarts: int = 4
    seed: int = 0
    cell_size: int = 8  # HOG cell / DSIFT bin size
    formulation: str = "ijcv"  # or "cvpr2015": its objective and momentum solver (C and iterations unused)
    loop: str = "scan"  # or "python"

    def __post_init__(self):
        arguments.check_count("size", self.size, 0)
        arguments.check_count("restarts", self.restarts)
        arguments.check_seed(self.seed)


@dataclasses.dataclass
class ImageInversion:
    metrics: dict  # metrics.json
    grid: np.ndarray  # original and code glyphs, then the reconstructions
    history: dict


def invert_image(config: InvertConfig, log: Callable[[str], None] = print, progress=None) -> ImageInversion:
    """Inverts the representation of one grey image from config.restarts vmapped random restarts (`progress`: a
    bar of the iterations, `jaxinv.io.progress`)."""
    representation = representations.get(config.representation, cell_size=config.cell_size)
    path = config.image or images.sample_image_path()
    image = images.load_image(path, grey=True, size=config.size or None)
    log(f"inverting {config.representation} of {path} ({image.shape[1]}x{image.shape[0]}), C={config.C}, "
        f"{config.restarts} restarts, {config.iterations}+{config.refine_iterations} iterations")
    cvpr2015 = None
    if config.formulation == "cvpr2015":
        cvpr2015 = inversion.Cvpr2015(sigma=inversion.average_image_norm([representation.to_null_mean(image)]))
    result = inversion.invert_images(
        representation, [image], problem=inversion.shallow_problem(config.C), restarts=config.restarts,
        seed=config.seed, stages=preimage.default_stages(config.iterations, config.refine_iterations),
        loop=config.loop, cvpr2015=cvpr2015, progress=progress)
    errors = result.errors[0]
    glyphs = representations.render(config.representation, result.target_codes[0], image_shape=image.shape,
                                    cell_size=config.cell_size)
    restarts = list(result.images[0])
    grid = images.labelled_grid(
        [[image, glyphs] + restarts],
        column_labels=["original", f"{config.representation} glyphs"] + [f"restart {k}" for k in range(len(restarts))],
        tile_labels=[["", ""] + [f"error {e:.3f}" for e in result.errors[0]]], tile=image.shape[:2])
    found = {"representation": config.representation, "image": path, "image_size": list(image.shape),
             "formulation": config.formulation, "C": config.C, "iterations": config.iterations,
             "refine_iterations": config.refine_iterations, "restarts": config.restarts, "seed": config.seed,
             "errors": errors.tolist(), "mean_error": float(errors.mean()),
             "restart_std": metrics.restart_spread(errors) if len(errors) > 1 else 0.0,
             "seconds": result.seconds, "seconds_per_restart": result.seconds / config.restarts}
    return ImageInversion(found, grid, result.history)


def error_line(found: dict) -> str:
    return (f"normalised error per restart: {', '.join(f'{e:.3f}' for e in found['errors'])} "
            f"(mean {found['mean_error']:.3f}); {found['seconds']:.1f} s")


def write_inversion(inverted: ImageInversion, output_dir: str) -> list[str]:
    """grid.png, energy.png (objective terms per iteration) and metrics.json."""
    found = inverted.metrics
    os.makedirs(output_dir, exist_ok=True)
    return [images.save_image(os.path.join(output_dir, "grid.png"), inverted.grid),
            outputs.plot_energy_terms(inverted.history, os.path.join(output_dir, "energy.png"),
                                      title=f"{found['representation']} inversion, C={found['C']}"),
            outputs.write_json(os.path.join(output_dir, "metrics.json"), found)]
