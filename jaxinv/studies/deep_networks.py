"""Quantitative studies of deep-network pre-images (IJCV Figs. 6-7 and 12, CVPR 2015 Table 3).

For a network, N reference images, a list of layers and a list of loss weights C, every work
unit (layer, C) inverts the layer's code of all N images from K random restarts each in one
vmapped `inversion.invert_images` computation (batched targets; the engine shards the N * K
problems over the devices when several are present and N * K is a multiple of their number;
`images_per_call` splits a unit into several such computations to bound memory), with the layer's
jitter rule
(`layer_rules.layer_jitter`) and the authors' stages. Each unit measures:

- error: IJCV Eq. 3, ||Phi(x*) - Phi(x0)||^2 / ||Phi(x0)||^2 (`metrics.normalised_error`), for
  every image and restart; reported as the mean over all N * K values with the 95% CI of the
  mean over the N images (each image's restarts averaged first: images are the independent
  samples, restarts of one image are not);
- restart_std: the standard deviation (ddof = 1) of the error over the K restarts of one image,
  averaged over the images (IJCV Fig. 7's consistency; needs K >= 2);
- class_consistency: the fraction of the N * K reconstructions, as the network sees them (the
  un-jittered crop, unclipped), whose argmax over the network's last layer (class scores or
  probabilities) equals that of the reference image;
- hist_intersection (naturalness): grey level (ITU-R 601 luma) of each image clipped to
  [0, 255] as displayed, gradient magnitude sqrt(dx^2 + dy^2) from forward differences on the
  (H-1) x (W-1) pixels where both exist, counted in HIST_BINS = 64 bins of width 4 grey levels
  over [0, 256) (larger magnitudes, up to 255 sqrt 2, go to the last bin), pooled over all
  reconstructions of the unit and over all reference images; both histograms normalised to sum
  1; the intersection is sum_b min(h_rec[b], h_ref[b]), 1 for identical distributions, 0 for
  disjoint ones.

Resumable: with a checkpoint directory, each finished unit's arrays (errors, predictions,
histogram counts, the reconstructions the figures need, seconds) are saved as one orbax
checkpoint keyed by (layer, C); a rerun loads the finished units and computes the rest. Each
unit's seed is derived from (seed, layer, C) only, so results do not depend on run order, on
which layers are studied together, or on interruptions. The directory also records the study's
fingerprint (network weights, images, restarts, stages, seed, ...) and refuses to mix studies.

Summaries, figures and files of a finished study are `jaxinv.studies.deep_network_outputs`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shutil
import time
import zlib
from typing import Callable, Mapping, Sequence

import numpy as np

from jaxinv.engine import preimage
from jaxinv.io import cache, checkpoints, distributed, images, outputs, paths
from jaxinv.io import progress as bars
from jaxinv import models
from jaxinv.methods import inversion, metrics
from jaxinv.engine.preimage import Stage

DEFAULT_C = (1.0, 20.0, 100.0, 300.0)
HIST_BINS = 64
HIST_EDGES = np.linspace(0.0, 256.0, HIST_BINS + 1)
FINGERPRINT_FILE = "study.json"
UNITS_DIR = "units"
SUMMARY_KEYS = ("error", "error_ci95", "restart_std", "class_consistency", "hist_intersection")


# ---------------------------------------------------------------- statistics

def gradient_magnitude_histogram(batch) -> np.ndarray:
    """Counts (HIST_BINS,) int64 of grey-level gradient magnitudes pooled over images (N, H, W[, 3])
    in [0, 255] (clipped to that range first); see the module docstring for the definition."""
    batch = np.asarray(batch, np.float32)
    if batch.ndim not in (3, 4) or batch.shape[1] < 2 or batch.shape[2] < 2:
        raise ValueError(f"need a batch of images (N, H, W) or (N, H, W, 3) of at least 2x2 pixels; "
                         f"got shape {batch.shape}")
    batch = np.clip(batch, 0.0, 255.0)
    grey = (images.to_grey(batch) if batch.ndim == 4 else batch).astype(np.float64)
    dx = grey[:, :-1, 1:] - grey[:, :-1, :-1]
    dy = grey[:, 1:, :-1] - grey[:, :-1, :-1]
    magnitude = np.minimum(np.sqrt(dx ** 2 + dy ** 2), HIST_EDGES[-1] - 1e-6)
    counts, _ = np.histogram(magnitude, bins=HIST_EDGES)
    return counts.astype(np.int64)


def histogram_intersection(counts_a, counts_b) -> float:
    """sum_b min(a_b, b_b) of the two histograms each normalised to sum 1: 1 = same distribution."""
    a, b = np.asarray(counts_a, np.float64), np.asarray(counts_b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"histograms must be 1-D and of one length; got shapes {a.shape} and {b.shape}")
    if np.any(a < 0) or np.any(b < 0) or a.sum() == 0 or b.sum() == 0:
        raise ValueError("histograms must be non-negative with a positive total")
    return float(np.minimum(a / a.sum(), b / b.sum()).sum())


def unit_statistics(errors, predictions, reference_predictions, hist_counts, reference_hist) -> dict:
    """The five numbers of one (layer, C) unit from its arrays: errors and predictions (N, K),
    the reference images' predictions (N,), histogram counts of reconstructions and references."""
    errors = np.asarray(errors, np.float64)
    predictions = np.asarray(predictions)
    if errors.ndim != 2 or predictions.shape != errors.shape:
        raise ValueError(f"errors and predictions must both be (images, restarts); got {errors.shape} "
                         f"and {predictions.shape}")
    reference_predictions = np.asarray(reference_predictions)
    if reference_predictions.shape != errors.shape[:1]:
        raise ValueError(f"need one reference prediction per image ({errors.shape[0]}); "
                         f"got shape {reference_predictions.shape}")
    _, ci = metrics.mean_with_ci95(errors.mean(axis=1))
    std = (float(np.mean([metrics.restart_spread(row) for row in errors])) if errors.shape[1] > 1
           else float("nan"))
    return {"error": float(errors.mean()), "error_ci95": ci, "restart_std": std,
            "class_consistency": float(np.mean(predictions == reference_predictions[:, None])),
            "hist_intersection": histogram_intersection(hist_counts, reference_hist)}


# ---------------------------------------------------------------- inputs

def parse_C(values: Sequence) -> tuple[float, ...]:
    """Validated C list: non-empty, positive finite numbers, no repeats."""
    try:
        parsed = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"C values must be numbers; got {list(values)}") from None
    if not parsed:
        raise ValueError("give at least one value of C")
    if not all(math.isfinite(c) and c > 0 for c in parsed):
        raise ValueError(f"C values must be positive and finite; got {list(values)}")
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"C values repeat: {list(values)}")
    return parsed


def check_layers(model, layers: Sequence[str] | None) -> tuple[str, ...]:
    """The layers to study (default: every named layer), checked against the network, in table order."""
    names = models.layer_names(model)
    if layers is None:
        return tuple(names)
    layers = tuple(layers)
    if not layers:
        raise ValueError("give at least one layer")
    for layer in layers:
        models.check_layer(model, layer)
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers repeat: {list(layers)}")
    return tuple(sorted(layers, key=names.index))


def class_predictions(model, null_mean) -> np.ndarray:
    """argmax over the network's last layer (class scores or probabilities) of null-mean images (B, H, W, 3)."""
    rep = models.representation(model, models.prediction_layer(model))
    codes = inversion.codes_of(rep, null_mean)
    return codes.reshape(len(codes), -1).argmax(axis=1).astype(np.int32)


def unit_seed(seed: int, layer: str, C: float, chunk: int = 0) -> int:
    """Deterministic seed of one unit (and chunk of images): independent of the order units run in."""
    return zlib.crc32(f"{seed}/{layer}/{C:g}/{chunk}".encode())


def c_key(C: float) -> str:
    """C as a results.json key: '20', '0.5'."""
    return f"{C:g}"


def c_number(C: float):
    return int(C) if float(C).is_integer() else float(C)


# ---------------------------------------------------------------- one unit

def invert_unit(model, layer: str, C: float, reference: np.ndarray, *, restarts: int,
                stages: Sequence[Stage], seed: int, jitter: bool = True, images_per_call: int | None = None,
                invariance_images: int = 2, progress=None) -> dict:
    """Inverts `layer` of the N reference images at weight C from `restarts` random starts each
    (N * K problems per vmapped call, or `images_per_call` images at a time to bound memory).

    Returns numpy arrays: errors and predictions (N, K), hist (HIST_BINS,) counts over the
    reconstructions, first_restart (N, H, W, 3) uint8, restarts (M, K, H, W, 3) uint8 of the first
    M = `invariance_images` images, seconds.
    """
    rep = models.representation(model, layer)
    problem = models.inversion_problem(model, layer, C=C, jitter=jitter)
    step = len(reference) if not images_per_call else int(images_per_call)
    errors, predictions, displays = [], [], []
    hist = np.zeros(HIST_BINS, np.int64)
    began = time.perf_counter()
    for start in range(0, len(reference), step):
        result = inversion.invert_images(rep, list(reference[start:start + step]), problem=problem, restarts=restarts,
                                         seed=unit_seed(seed, layer, C, start // step), stages=stages,
                                         progress=progress)
        errors.append(result.errors)
        seen = result.null_mean.reshape((-1,) + result.null_mean.shape[2:])
        predictions.append(class_predictions(model, seen).reshape(result.errors.shape))
        hist += gradient_magnitude_histogram(result.images.reshape((-1,) + result.images.shape[2:]))
        displays.append(images.to_uint8(result.images))
    shown = np.concatenate(displays)
    return {"errors": np.concatenate(errors).astype(np.float64),
            "predictions": np.concatenate(predictions).astype(np.int32),
            "hist": hist, "first_restart": shown[:, 0], "restarts": shown[:invariance_images],
            "seconds": np.float64(time.perf_counter() - began)}


# ---------------------------------------------------------------- the study

@dataclasses.dataclass
class Study:
    """Finished units {(layer, C): arrays of `invert_unit`} and the reference images' data."""
    network: str
    layers: tuple[str, ...]
    C: tuple[float, ...]
    reference: np.ndarray  # (N, H, W, 3) float32 [0, 255]
    reference_names: list[str]
    reference_predictions: np.ndarray  # (N,)
    reference_hist: np.ndarray  # (HIST_BINS,)
    units: dict
    settings: dict
    rule_C: dict  # layer -> models.layer_C

    @property
    def complete(self) -> bool:
        return all((layer, c) in self.units for layer in self.layers for c in self.C)


def fingerprint(model, reference: np.ndarray, settings: Mapping) -> dict:
    """What determines a unit's results besides (layer, C): weights, images and the settings."""
    return dict(settings, network=models.name(model), weights_sha256=checkpoints.weights_fingerprint(model.params),
                images_sha256=cache.images_fingerprint(reference), hist_bins=HIST_BINS)


def _unit_path(checkpoint_dir: str, layer: str, C: float) -> str:
    return os.path.join(os.path.abspath(checkpoint_dir), UNITS_DIR, re.sub(r"[^A-Za-z0-9_.-]", "_", layer)
                        + f"_C{c_key(C)}")


UNIT_KEYS = ("errors", "predictions", "hist", "first_restart", "restarts", "seconds")
HANDOVER_SUFFIX = ".npz"
"""A unit computed by a process other than 0 of a multi-process run: UNIT.npz beside the unit's folder (orbax
writes NumPy arrays from process 0 only); process 0 makes it the unit's orbax checkpoint when it collects it."""


def _load_unit(path: str, log: Callable[[str], None] = print):
    """A finished unit's arrays, or None when absent; an unreadable one is removed (recomputed). A unit handed
    over by another process (HANDOVER_SUFFIX) becomes the unit's checkpoint here."""
    handover = path + HANDOVER_SUFFIX
    if not os.path.isdir(path) and os.path.isfile(handover):
        try:
            with np.load(handover) as handed:
                unit = {key: np.asarray(handed[key]) for key in handed.files}
            if set(unit) != set(UNIT_KEYS):
                raise ValueError(f"holds {sorted(unit)}")
        except Exception as e:  # a damaged file: recompute the unit
            log(f"  discarding unreadable unit {handover} ({type(e).__name__}: {e})")
            os.remove(handover)
            return None
        _save_unit(path, unit)
        os.remove(handover)
        return unit
    if not os.path.isdir(path):
        return None
    try:
        unit = {key: np.asarray(value) for key, value in checkpoints.read_tree(path).items()}
        if set(unit) != set(UNIT_KEYS):
            raise ValueError(f"holds {sorted(unit)}")
        return unit
    except Exception as e:  # a damaged or foreign directory: recompute the unit
        log(f"  discarding unreadable unit checkpoint {path} ({type(e).__name__}: {e})")
        shutil.rmtree(path)
        return None


def _save_unit(path: str, unit: dict, processes: distributed.Processes = distributed.Processes()) -> None:
    if processes.primary:
        checkpoints.write_tree(path, unit)
    else:  # handed over to process 0 (see HANDOVER_SUFFIX)
        outputs.atomic_write(path + HANDOVER_SUFFIX, lambda temporary: np.savez(temporary, **unit), HANDOVER_SUFFIX)


def run_study(model, reference: np.ndarray, *, reference_names: Sequence[str] | None = None,
              layers: Sequence[str] | None = None, C: Sequence[float] = DEFAULT_C, restarts: int = 4,
              stages: Sequence[Stage] = preimage.default_stages(), seed: int = 0, jitter: bool = True,
              images_per_call: int | None = None, invariance_images: int = 2, checkpoint_dir: str | None = None,
              max_units: int | None = None, on_unit: Callable[[int, str, float, dict], None] | None = None,
              log: Callable[[str], None] = print, progress=None,
              processes: distributed.Processes | None = None) -> Study:
    """Runs every (layer, C) unit (layers in table order, then C) not already in `checkpoint_dir`; `progress`:
    a bar of the units done and one of each unit's iterations (`jaxinv.io.progress`).

    `reference` is (N, H, W, 3) RGB [0, 255] at the network's input size. `max_units` stops after
    computing that many units (the rest can be resumed by calling again); `on_unit(i, layer, C,
    unit)` is called after each finished unit has been saved. Returns the Study (possibly
    incomplete when stopped early).

    Several processes (`processes`, default `jaxinv.io.distributed.current()`: those of `jax.distributed`) share
    the work; every one calls this with the same arguments and `checkpoint_dir` on a shared file system. Process
    0 takes the folder's lock, checks the fingerprint and loads the units already saved; the units still to do are
    split round robin (`distributed.split_units` over the ordered list of units not yet saved); each process
    computes and saves its own (`max_units`: at most that many each; the others' as UNIT.npz, HANDOVER_SUFFIX),
    then all wait for each other and process 0 loads the others' units (making them orbax checkpoints): its Study is the one a single process would have made (unit seeds do not depend on
    which process runs a unit). The other processes return a Study of their own units only.
    """
    layers = check_layers(model, layers)
    C = parse_C(C)
    reference = np.asarray(reference, np.float32)
    size, channels = models.input_side(model), models.channels(model)
    if reference.ndim != 4 or reference.shape[1:] != (size, size, channels):
        raise ValueError(f"reference images must be (N, {size}, {size}, {channels}) for {models.name(model)!r}; "
                         f"got {reference.shape}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if images_per_call is not None and images_per_call < 1:
        raise ValueError(f"images_per_call must be >= 1, got {images_per_call}")
    if invariance_images < 0:
        raise ValueError(f"invariance_images must be >= 0, got {invariance_images}")
    if max_units is not None and max_units < 0:
        raise ValueError(f"max_units must be >= 0 (0: stop before computing any unit), got {max_units}")
    stages = tuple(stages)
    settings = dict(num_images=len(reference), restarts=restarts, seed=seed, jitter=jitter,
                    stages=[[s.iterations, s.step_scale, s.jitter] for s in stages],
                    images_per_call=images_per_call or len(reference),
                    invariance_images=min(invariance_images, len(reference)))
    processes = distributed.current() if processes is None else processes
    if processes.several and not checkpoint_dir:
        raise ValueError("a study run by several processes needs a checkpoint_dir (on a file system they share): "
                         "the processes hand their units over there")
    lock = distributed.lock_folder(checkpoint_dir, processes) if processes.several else paths.lock_folder(checkpoint_dir)
    with lock if checkpoint_dir else contextlib.nullcontext():
        if checkpoint_dir:  # checked under the lock, before any unit is computed
            processes.agree(lambda: checkpoints.check_fingerprint(
                checkpoint_dir, fingerprint(model, reference, settings), "units of a different study",
                FINGERPRINT_FILE))
        null_mean = np.stack([np.asarray(models.representation(model, layers[0]).to_null_mean(im)) for im in reference])
        study = Study(models.name(model), layers, C, reference, list(reference_names or range(len(reference))),
                      class_predictions(model, null_mean), gradient_magnitude_histogram(reference), {}, settings,
                      {layer: models.layer_C(model, layer) for layer in layers})
        work = [(layer, c) for layer in layers for c in C]
        if checkpoint_dir and processes.primary:  # the saved units (with several processes: process 0, for all)
            for index, (layer, c) in enumerate(work, 1):
                path = _unit_path(checkpoint_dir, layer, c)
                unit = _load_unit(path, log)
                if unit is not None:
                    study.units[(layer, c)] = unit
                    log(f"unit {index}/{len(work)} {layer} C={c:g}: loaded from {path}")
        done = processes.broadcast(np.array([(layer, c) in study.units for layer, c in work], np.int32))
        mine = set(processes.share([unit for unit, finished in zip(work, done) if not finished]))  # one: all
        computed, seconds = 0, []
        saved = sum(os.path.isdir(_unit_path(checkpoint_dir, lay, cc)) for lay, cc in work) if checkpoint_dir else 0
        units_bar = bars.units(len(work), "units", progress, initial=saved)
        for index, (layer, c) in enumerate(work, 1):
            if (layer, c) not in mine:
                continue
            path = checkpoint_dir and _unit_path(checkpoint_dir, layer, c)
            if max_units is not None and computed >= max_units:
                log(f"stopped after {computed} unit(s) (max_units); run again to resume")
                break
            unit = invert_unit(model, layer, c, reference, restarts=restarts, stages=stages, seed=seed,
                               jitter=jitter, images_per_call=images_per_call,
                               invariance_images=settings["invariance_images"], progress=progress)
            if path:
                _save_unit(path, unit, processes)
            study.units[(layer, c)] = unit
            computed += 1
            units_bar.update()
            seconds.append(float(unit["seconds"]))
            stats = unit_statistics(unit["errors"], unit["predictions"], study.reference_predictions, unit["hist"],
                                    study.reference_hist)
            remaining = sum((lay, cc) not in study.units for lay, cc in work if (lay, cc) in mine)
            log(f"unit {index}/{len(work)} {layer} C={c:g}: error {stats['error']:.3f}  restart std "
                f"{metrics.shown(stats['restart_std'])}  consistency {stats['class_consistency']:.2f}  "
                f"hist. intersection {stats['hist_intersection']:.3f}  {seconds[-1]:.1f} s  "
                f"ETA {remaining * np.mean(seconds) / 60:.1f} min")
            if on_unit:
                on_unit(index, layer, c, unit)
        units_bar.close()
        if processes.several:
            processes.barrier(f"study-units-{zlib.crc32(os.path.abspath(checkpoint_dir).encode())}")
            if processes.primary:  # the others' units, as a single process would have them
                for layer, c in work:
                    if (layer, c) not in study.units:
                        unit = _load_unit(_unit_path(checkpoint_dir, layer, c), log)
                        if unit is not None:
                            study.units[(layer, c)] = unit
        return study


# ---------------------------------------------------------------- results
