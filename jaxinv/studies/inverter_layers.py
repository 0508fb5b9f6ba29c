"""Dosovitskiy & Brox (CVPR 2016) Sects. 5.4-5.5 over a network's layers, on its trained inverters:
robustness of the features (binarisation, dropout), fc8's top-k, interpolation, random feature
vectors, and the autoencoder comparison (decoder trained jointly with a fine-tuned encoder).

    study = run(StudyConfig(layers=("pool3", "fc8"), num_images=8, ...))
    written = write_outputs(study, "outputs/inverter_studies")

`run` computes every number (study.results, what results.json holds) and keeps the images the
figures show; `write_outputs` only draws and writes. The primitives are in `feature_studies`.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import jax
import numpy as np

from jaxinv.io import datasets, images, outputs, report
from jaxinv.io import progress as bars
from jaxinv.studies import inverter_features as S
from jaxinv.inverters import model as inverter_model
from jaxinv.studies import perturbations as P

SCALE = 3  # 32x32 tiles are enlarged 3x in the grids
IMAGE_SIZE = 32
POSITIVE = {"num_images": 2, "grid_images": 1, "fit_images": 2, "random_samples": 1, "histogram_bins": 1,
            "interpolation_pairs": 1, "interpolation_steps": 2, "batch_size": 1}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    net: str = "cifar-ref"
    layers: tuple[str, ...] = ("pool1", "pool2", "pool3", "relu6", "relu7", "fc8")
    inverters_dir: str | None = None  # default: jaxinv.inverters.default_dir's folders
    autoencoder: bool = True
    num_images: int = 1000
    grid_images: int = 8
    fit_images: int = 4096
    random_samples: int = 64
    histogram_bins: int = 64
    interpolation_pairs: int = 2
    interpolation_steps: int = 9
    top_k: tuple[int, ...] = (5, 1)
    batch_size: int = 250
    seed: int = 0
    data_dir: str | None = None

    def check(self) -> None:
        """Raises ValueError (naming the flag) for settings out of range."""
        for name, least in POSITIVE.items():
            if getattr(self, name) < least:
                raise ValueError(f"--{name} must be at least {least}; got {getattr(self, name)}")
        if not self.layers:
            raise ValueError("--layers is empty")


@dataclasses.dataclass
class Study:
    config: StudyConfig
    results: dict  # every number: results.json
    test: np.ndarray  # the held-out images (N, 32, 32, 3)
    figures: dict  # what the grids show, by figure


def inverter_dir(config: StudyConfig, representation: str, autoencoder: bool) -> str:
    """Where the inverter of `representation` is expected: `jaxinv.inverters.default_dir` (with its
    "-finetuned" suffix for the autoencoder variant), or the same folder name under inverters_dir."""
    directory = inverter_model.default_dir(representation, IMAGE_SIZE, autoencoder)
    return os.path.join(config.inverters_dir, os.path.basename(directory)) if config.inverters_dir else directory


def trained_inverter(config: StudyConfig, layer: str, autoencoder: bool = False) -> inverter_model.Inverter:
    """The trained inverter of NET:layer (fixed encoder, or fine-tuned with it), or an error that
    names the missing checkpoint and the command that trains it."""
    representation = f"{config.net}:{layer}"
    directory = inverter_dir(config, representation, autoencoder)
    command = (f"jaxinv-train-inverter --representation={representation} "
               + ("--finetune_encoder " if autoencoder else "") + f"--output_dir={directory}")
    if not os.path.isfile(os.path.join(directory, inverter_model.METADATA_FILE)):
        raise FileNotFoundError(f"no trained {'autoencoder' if autoencoder else 'inverter'} of {representation} "
                                f"in {directory}; train it with: {command}")
    inverter = inverter_model.load(directory)
    if inverter.representation != representation or bool(inverter.metadata.get("encoder_finetuned")) != autoencoder:
        raise ValueError(f"{directory} holds the inverter of {inverter.representation!r} (encoder fine-tuned: "
                         f"{inverter.metadata.get('encoder_finetuned')}), not of {representation!r} "
                         f"(encoder fine-tuned: {autoencoder}); retrain it with: {command}")
    return inverter


def load_images(config: StudyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Held-out test images and the training images the random-feature samplers are fitted to
    (both evenly spaced over CIFAR-10's sorted sets), float32."""
    from jaxinv.nets import cifar10

    data = cifar10.load(config.data_dir)
    test = data["test_images"][datasets.evenly_spaced(len(data["test_images"]), config.num_images)]
    train = data["train_images"][datasets.evenly_spaced(len(data["train_images"]), config.fit_images)]
    return test.astype(np.float32), train.astype(np.float32)


def study_layer(config: StudyConfig, layer: str, inverter, test, train, key, shown, pairs, ts) -> dict:
    """Every study of one layer: {"perturbations", "fc8_topk" (fc8 only), "interpolation_step_ratio",
    "random_zero_fraction", "random_contrast"} and the images for the figures under "images"."""
    study = S.perturbation_study(inverter.features, inverter, test, P.PERTURBATIONS, key, batch_size=config.batch_size)
    out = {"perturbations": {name: entry["error"] for name, entry in study.items()},
           "images": {"perturbations": [test[shown]] + [e["reconstructions"][shown] for e in study.values()]}}
    if layer == "fc8":
        chosen = {name: fn for k in config.top_k for name, fn in S.top_k_perturbations(k).items()}
        topk = S.perturbation_study(inverter.features, inverter, test, chosen, key, batch_size=config.batch_size)
        out["fc8_topk"] = {name: entry["error"] for name, entry in topk.items()}
        out["images"]["fc8"] = [test[shown]] + [entry["reconstructions"][shown] for entry in topk.values()]
    frames = S.interpolation_images(inverter.features, inverter, test[pairs[0]], test[pairs[1]], ts)
    steps = S.interpolation_steps(frames)
    out["interpolation_step_ratio"] = float(np.mean(steps.max(axis=1) / steps.mean(axis=1)))
    real = S.in_batches(inverter.features, train, config.batch_size)
    randoms = S.random_feature_study(inverter, real, jax.random.fold_in(key, 1), config.random_samples,
                                     bins=config.histogram_bins)
    out["random_zero_fraction"] = {"real": next(iter(randoms.values()))["real_zero_fraction"],
                                   **{name: r["zero_fraction"] for name, r in randoms.items()}}
    out["random_contrast"] = {"test images": S.contrast(test),
                              "reconstructions": S.contrast(study["unperturbed"]["reconstructions"]),
                              **{name: r["contrast"] for name, r in randoms.items()}}
    out["images"].update(interpolation=frames, random={name: r["images"][:config.grid_images]
                                                       for name, r in randoms.items()})
    return out


def layer_summary(layer: str, results: dict) -> str:
    """One line of a layer's findings, as `run` logs it."""
    return (f"{layer}: " + ", ".join(f"{name} {results['perturbations'][name][layer]:.3f}"
                                     for name in results["perturbations"])
            + ("; fc8 " + ", ".join(f"{k} {v:.3f}" for k, v in results["fc8_topk"].items()) if layer == "fc8" else "")
            + "; zero fraction " + ", ".join(f"{k} {v:.3f}" for k, v in results["random_zero_fraction"][layer].items())
            + "; contrast " + ", ".join(f"{k} {v:.1f}" for k, v in results["random_contrast"][layer].items())
            + f"; interpolation max/mean step {results['interpolation_step_ratio'][layer]:.2f}")


def run(config: StudyConfig, log: Callable[[str], None] = print) -> Study:
    """Every study on every layer of config.layers (and the autoencoders when config.autoencoder);
    missing inverters are reported before any work."""
    config.check()
    started = time.time()
    fixed = {layer: trained_inverter(config, layer) for layer in config.layers}
    autoencoders = ({layer: trained_inverter(config, layer, True) for layer in config.layers}
                    if config.autoencoder else {})
    test, train = load_images(config)
    shown = datasets.evenly_spaced(len(test), min(config.grid_images, len(test)))
    pairs = datasets.evenly_spaced(len(test), 2 * config.interpolation_pairs).reshape(-1, 2).T  # a's, b's
    ts = np.linspace(0.0, 1.0, config.interpolation_steps)
    log(f"{config.net}: layers {', '.join(config.layers)}; {len(test)} test images, {len(train)} fitting images")
    parameters = {name: getattr(config, name) for name in (
        "net", "layers", "num_images", "fit_images", "random_samples", "histogram_bins", "interpolation_steps",
        "top_k", "seed")}
    results = {"parameters": parameters,
               "inverters": {layer: inverter_dir(config, f"{config.net}:{layer}", False) for layer in config.layers},
               "perturbations": {}, "fc8_topk": {}, "interpolation_step_ratio": {}, "random_zero_fraction": {},
               "random_contrast": {}, "autoencoder": {"fixed encoder": {}, "autoencoder": {}}}
    figures = {"shown": shown, "pairs": pairs, "ts": ts, "layers": {}}
    key = jax.random.key(config.seed)
    for i, layer in enumerate(bars.each(config.layers, "layers")):
        t0 = time.time()
        entry = study_layer(config, layer, fixed[layer], test, train, jax.random.fold_in(key, i), shown, pairs, ts)
        figures["layers"][layer] = entry.pop("images")
        for name, error in entry.pop("perturbations").items():
            results["perturbations"].setdefault(name, {})[layer] = error
        results["fc8_topk"] = entry.pop("fc8_topk", results["fc8_topk"])
        for name, value in entry.items():
            results[name][layer] = value
        log(layer_summary(layer, results) + f"  ({time.time() - t0:.0f} s)")
    if autoencoders:
        figures["autoencoder"] = compare_autoencoders(config, fixed, autoencoders, test, shown, results)
        log("autoencoder: " + ", ".join(f"{layer} fixed {results['autoencoder']['fixed encoder'][layer]:.3f} AE "
                                        f"{results['autoencoder']['autoencoder'][layer]:.3f}" for layer in config.layers))
    results["seconds"] = round(time.time() - started, 1)
    return Study(config, results, test, figures)


def compare_autoencoders(config: StudyConfig, fixed, autoencoders, test, shown, results) -> tuple[list, list]:
    """Fills results["autoencoder"] (error of the fixed-encoder inverter vs the autoencoder per layer)
    and returns the grid's rows and labels."""
    rows, labels = [test[shown]], ["original"]
    for layer in config.layers:
        results["autoencoder"]["fixed encoder"][layer] = results["perturbations"]["unperturbed"][layer]
        reconstructions = autoencoders[layer].invert_images(test)
        results["autoencoder"]["autoencoder"][layer] = S.normalised_image_error(test, reconstructions)
        rows += [fixed[layer].invert_images(test[shown]), reconstructions[shown]]
        labels += [f"{layer} fixed", f"{layer} AE"]
    results["inverters"].update({f"{layer} (autoencoder)": inverter_dir(config, f"{config.net}:{layer}", True)
                                 for layer in config.layers})
    return rows, labels


def _grid(path, rows, row_labels, column_labels=()):
    return images.save_image(path, images.labelled_grid(rows, row_labels=row_labels, column_labels=column_labels,
                                                        scale=SCALE))


def write_outputs(study: Study, out: str) -> dict:
    """results.json, errors.png, the labelled grids (perturbations_LAYER.png, fc8_topk.png,
    interpolation_PAIR.png, random_SAMPLER.png), autoencoder.png and autoencoder_grid.png, and
    index.html. Returns {"results", "index", "figures": {section: [paths]}}."""
    config, results, test, figures = study.config, study.results, study.test, study.figures
    layers, per_layer = list(config.layers), figures["layers"]
    names = ["original"] + list(results["perturbations"])
    files = {"perturbations": [S.plot_error_vs_layer(
        os.path.join(out, "errors.png"), results["perturbations"], layers,
        f"{config.net}: reconstruction error of perturbed features ({len(test)} test images)")]}
    files["perturbations"] += [_grid(os.path.join(out, f"perturbations_{layer}.png"),
                                     per_layer[layer]["perturbations"], names) for layer in layers]
    files["fc8"] = [_grid(os.path.join(out, "fc8_topk.png"), per_layer["fc8"]["fc8"],
                          ["original"] + list(results["fc8_topk"]))] if "fc8" in per_layer else []
    pairs, ts = figures["pairs"], figures["ts"]
    files["interpolation"] = [_grid(
        os.path.join(out, f"interpolation_{p}.png"),
        [[test[pairs[0][p]]] + list(per_layer[layer]["interpolation"][p]) + [test[pairs[1][p]]] for layer in layers],
        layers, ["a"] + [f"t={t:.3g}" for t in ts] + ["b"]) for p in range(config.interpolation_pairs)]
    files["random"] = [_grid(os.path.join(out, f"random_{sampler}.png"),
                             [per_layer[layer]["random"][sampler] for layer in layers], layers)
                       for sampler in per_layer[layers[0]]["random"]]
    files["autoencoder"] = []
    if "autoencoder" in figures:
        files["autoencoder"] = [
            S.plot_error_vs_layer(os.path.join(out, "autoencoder.png"), results["autoencoder"], layers,
                                  f"{config.net}: fixed encoder vs autoencoder"),
            _grid(os.path.join(out, "autoencoder_grid.png"), *figures["autoencoder"])]
    results_path = outputs.write_json(os.path.join(out, "results.json"), results)
    index = report.write_html(
        os.path.join(out, "index.html"), f"Inverter studies on {config.net} (Dosovitskiy & Brox Sects. 5.4-5.5)",
        results["parameters"],
        [("Perturbed features (Sect. 5.4): error per layer; grids rows = perturbations, columns = images",
          files["perturbations"]),
         ("fc8: only the top-k activations vs all but the top-k, k = " + ", ".join(map(str, config.top_k)),
          files["fc8"]),
         ("Interpolation (Sect. 5.5): rows = layers, columns = t", files["interpolation"]),
         ("Random feature vectors (Sect. 5.5): rows = layers, one grid per sampler", files["random"]),
         ("Autoencoder (decoder trained jointly with the fine-tuned encoder) vs fixed encoder", files["autoencoder"]),
         ("Numbers", [results_path])])
    return {"results": results_path, "index": index, "figures": files}
