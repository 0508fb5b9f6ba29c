"""The HOGgle experiments: learning a paired dictionary on the ImageNet samples minus the held-out
split (`experiments.train_hoggle`) and its image-space error on that split (`experiments.evaluate_hoggle`,
the paper's Table 2 metric). The method itself is `jaxinv.inverters.hoggle`.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

import numpy as np

from jaxinv import features
from jaxinv.inverters import hoggle, hoggle_learning
from jaxinv.io import images, outputs
from jaxinv.methods import metrics


def training_paths(images_dir: str | None, exclude_last: int, num_images: int | None) -> list[str]:
    """Sorted image files without the last `exclude_last` (held out), then the first `num_images`."""
    if exclude_last < 0:
        raise ValueError(f"--exclude_last must be >= 0; got {exclude_last}")
    paths = images.imagenet_sample_paths(images_dir)
    kept = paths[:len(paths) - exclude_last]
    if not kept:
        raise ValueError(f"--exclude_last={exclude_last} leaves none of the {len(paths)} images for training")
    return kept[:num_images] if num_images else kept


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    images_dir: str | None = None
    num_images: int | None = None  # only the first N training images (after the hold-out)
    exclude_last: int = 50  # the evaluation split
    image_size: int = 64
    num_patches: int | None = None  # random training windows (default: every window with contrast)
    num_atoms: int = 1024
    lam: float = 0.02
    epochs: int = 4  # 0: random training pairs as atoms
    batch_size: int = 512
    seed: int = 0


def train(config: TrainConfig, log: Callable[[str], None] = print) -> hoggle.PairedDictionary:
    """Samples windows from the training split and learns the dictionary; its training_info names the
    images it saw."""
    if config.epochs:
        hoggle_learning.require_scikit_learn()
    paths = training_paths(config.images_dir, config.exclude_last, config.num_images)
    start = time.time()
    pairs = hoggle_learning.sample_training_pairs(paths, config.num_patches, image_size=config.image_size, seed=config.seed)
    log(f"{len(pairs)} windows from {len(paths)} images of {config.image_size}x{config.image_size} "
        f"(last {config.exclude_last} held out) in {time.time() - start:.1f} s")
    dictionary = hoggle_learning.learn_paired_dictionary(pairs, config.num_atoms, config.lam, batch_size=config.batch_size,
                                                epochs=config.epochs, seed=config.seed)
    info = dict(dictionary.training_info, num_images=len(paths), image_size=config.image_size,
                exclude_last=config.exclude_last, first_image=os.path.basename(paths[0]),
                last_image=os.path.basename(paths[-1]))
    return dataclasses.replace(dictionary, training_info=info)


@dataclasses.dataclass
class Evaluation:
    results: dict  # results.json
    originals: np.ndarray
    reconstructions: dict  # pixel mapping -> images


def evaluate(dictionary_path: str | None, *, images_dir: str | None = None, num_test: int = 50, size: int = 64,
             pixel_mappings: Sequence[str] = hoggle.PIXEL_MAPPINGS, log: Callable[[str], None] = print) -> Evaluation:
    """The error ||x_i - x*_i|| / N (N the mean distance between distinct test images) of HOGgle on
    the last `num_test` sorted files, grey size x size, for each pixel mapping, and of the flat grey
    at the dictionary's training mean."""
    for mapping in pixel_mappings:
        if mapping not in hoggle.PIXEL_MAPPINGS:
            raise ValueError(f"--pixel_mappings: {mapping!r} is not one of {', '.join(hoggle.PIXEL_MAPPINGS)}")
    if num_test < 2:
        raise ValueError(f"--num_test must be at least 2 (the error is normalised by pairwise distances); "
                         f"got {num_test}")
    dictionary_path = dictionary_path or hoggle.default_dictionary_path()
    dictionary = hoggle.PairedDictionary.load(dictionary_path)
    paths = images.imagenet_sample_paths(images_dir)[-num_test:]
    originals = np.stack([images.load_image(p, grey=True, size=size) for p in paths])
    codes = features.batched_hog(originals, dictionary.cell_size)
    log(f"{len(paths)} test images of {size}x{size} ({os.path.basename(paths[0])} .. "
        f"{os.path.basename(paths[-1])}), dictionary {dictionary_path} ({dictionary.num_atoms} atoms)")
    mean, ci = metrics.mean_with_ci95(metrics.cvpr_errors(np.full_like(originals, dictionary.patch_mean), originals))
    results = {"num_images": len(paths), "size": size, "dictionary": dictionary_path,
               "num_atoms": dictionary.num_atoms, "training_info": dictionary.training_info,
               "paper_hoggle_error": hoggle.PAPER_ERROR, "flat_grey": {"mean_error": mean, "ci95": ci}}
    log(f"flat grey at {dictionary.patch_mean:.1f}: error {mean:.3f} +- {ci:.3f}")
    reconstructions = {}
    for mapping in pixel_mappings:
        start = time.time()
        reconstructions[mapping] = hoggle.invert_hogs(dictionary, codes, (size, size), pixel_mapping=mapping)
        seconds = (time.time() - start) / len(paths)
        mean, ci = metrics.mean_with_ci95(metrics.cvpr_errors(reconstructions[mapping], originals))
        results[mapping] = {"mean_error": mean, "ci95": ci, "seconds_per_image": seconds}
        log(f"{mapping:9s} error {mean:.3f} +- {ci:.3f} (paper {hoggle.PAPER_ERROR:.2f}), {seconds:.2f} s/image")
    return Evaluation(results, originals, reconstructions)


def write_evaluation(evaluation: Evaluation, output_dir: str, figure_images: int = 8) -> list[str]:
    """figure.png (rows: original, then each pixel mapping) and results.json."""
    shown = range(min(figure_images, len(evaluation.originals)))
    mappings = list(evaluation.reconstructions)
    grid = images.labelled_grid([[evaluation.originals[i] for i in shown]] +
                                [[evaluation.reconstructions[m][i] for i in shown] for m in mappings],
                                row_labels=["original"] + mappings, column_labels=[f"image {i}" for i in shown])
    return [outputs.write_json(os.path.join(output_dir, "results.json"), evaluation.results),
            images.save_image(os.path.join(output_dir, "figure.png"), grid)]
