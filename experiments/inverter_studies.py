"""Dosovitskiy & Brox (CVPR 2016) Sects. 5.4-5.5 on the reference network's trained inverters:
robustness of the features (binarisation, dropout), fc8's top-k, interpolation, random feature
vectors, and the autoencoder comparison (decoder trained jointly with a fine-tuned encoder).

    python -m experiments.inverter_studies --net=cifar-ref --layers=pool1,pool2,pool3,relu6,relu7,fc8

Inverters come from the default checkpoint locations (see `jaxinv.inverters`) or --inverters_dir;
a missing one stops the run naming the command that trains it. Writes OUTPUT_DIR/results.json
(normalised image errors per study, perturbation and layer), errors.png, autoencoder.png,
labelled grids (perturbations_LAYER.png, fc8_topk.png, interpolation_PAIR.png, random_SAMPLER.png,
autoencoder_grid.png) and index.html.
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import flags, logging

from jaxinv import inverters
from jaxinv.io import cli, datasets, images, outputs, report
from jaxinv.studies import inverter_features as S
from jaxinv.studies import perturbations as P
from jaxinv.nets import cifar10

FLAGS = flags.FLAGS
flags.DEFINE_string("net", "cifar-ref", "the network whose layers are inverted")
flags.DEFINE_list("layers", ["pool1", "pool2", "pool3", "relu6", "relu7", "fc8"], "layers, in network order "
                  "(post-ReLU ones: the paper's AlexNet features are taken after its in-place ReLUs)")
flags.DEFINE_string("inverters_dir", None, "folder holding the trained inverters (default: jaxinv.inverters' "
                    "default checkpoint folder)")
flags.DEFINE_bool("autoencoder", True, "also evaluate the autoencoder variants (decoder trained with a "
                  "fine-tuned encoder)")
flags.DEFINE_integer("num_images", 1000, "held-out CIFAR-10 test images (evenly spaced over the sorted set)")
flags.DEFINE_integer("grid_images", 8, "columns of the perturbation grids")
flags.DEFINE_integer("fit_images", 4096, "training images the random-feature distributions are fitted to")
flags.DEFINE_integer("random_samples", 64, "random feature vectors decoded per layer and sampler (the grids "
                     "show the first --grid_images)")
flags.DEFINE_integer("histogram_bins", 64, "bins of the per-dimension histograms (non-zero values)")
flags.DEFINE_integer("interpolation_pairs", 2, "image pairs interpolated")
flags.DEFINE_integer("interpolation_steps", 9, "values of t, evenly spaced in [0, 1]")
flags.DEFINE_list("top_k", ["5", "1"], "fc8 study: keep only / zero the top-k activations, for each k (the "
                  "paper: 5 of ImageNet's 1000 classes; cifar-ref has 10)")
flags.DEFINE_integer("batch_size", 250, "images encoded/decoded per call")
flags.DEFINE_integer("seed", 0, "seed of dropout and of the random feature vectors")
flags.DEFINE_string("data_dir", None, "shared data folder holding cifar10/ (default: $JAXINV_DATA or ../shared/data)")
flags.DEFINE_string("output_dir", "outputs/inverter_studies", "where results, figures and index.html go")
SCALE = 3  # 32x32 tiles are enlarged 3x in the grids
IMAGE_SIZE = 32


def inverter_dir(representation: str, autoencoder: bool) -> str:
    """Where the inverter of `representation` is expected: `jaxinv.inverters.default_dir` (with its
    "-finetuned" suffix for the autoencoder variant), or the same folder name under --inverters_dir."""
    directory = inverters.default_dir(representation, IMAGE_SIZE, autoencoder)
    return os.path.join(FLAGS.inverters_dir, os.path.basename(directory)) if FLAGS.inverters_dir else directory


def trained_inverter(layer: str, autoencoder: bool = False) -> inverters.Inverter:
    """The trained inverter of NET:layer (fixed encoder, or fine-tuned with it), or an error that
    names the missing checkpoint and the command that trains it."""
    representation = f"{FLAGS.net}:{layer}"
    directory = inverter_dir(representation, autoencoder)
    command = (f"python -m experiments.train_inverter --representation={representation} "
               + ("--finetune_encoder " if autoencoder else "") + f"--output_dir={directory}")
    if not os.path.isfile(os.path.join(directory, inverters.model.METADATA_FILE)):
        raise FileNotFoundError(f"no trained {'autoencoder' if autoencoder else 'inverter'} of {representation} "
                                f"in {directory}; train it with: {command}")
    inverter = inverters.load(directory)
    if inverter.representation != representation or bool(inverter.metadata.get("encoder_finetuned")) != autoencoder:
        raise ValueError(f"{directory} holds the inverter of {inverter.representation!r} (encoder fine-tuned: "
                         f"{inverter.metadata.get('encoder_finetuned')}), not of {representation!r} "
                         f"(encoder fine-tuned: {autoencoder}); retrain it with: {command}")
    return inverter


def grid(path, rows, row_labels, column_labels=()):
    return images.save_image(path, images.labelled_grid(rows, row_labels=row_labels, column_labels=column_labels,
                                                        scale=SCALE))


def check_flags() -> list[int]:
    """Raises ValueError for flags out of range; returns the fc8 study's k values."""
    for name, least in (("num_images", 2), ("grid_images", 1), ("fit_images", 2), ("random_samples", 1),
                        ("histogram_bins", 1), ("interpolation_pairs", 1), ("interpolation_steps", 2),
                        ("batch_size", 1)):
        if FLAGS[name].value < least:
            raise ValueError(f"--{name} must be at least {least}; got {FLAGS[name].value}")
    if not FLAGS.layers:
        raise ValueError("--layers is empty")
    try:
        return [int(k) for k in FLAGS.top_k]
    except ValueError:
        raise ValueError(f"--top_k must be a list of integers; got {','.join(FLAGS.top_k)}") from None


def main(argv):
    del argv
    top_ks = check_flags()
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint restore at INFO
    started = time.time()
    out = FLAGS.output_dir
    key = jax.random.key(FLAGS.seed)
    fixed = {layer: trained_inverter(layer) for layer in FLAGS.layers}
    autoencoders = {layer: trained_inverter(layer, autoencoder=True) for layer in FLAGS.layers} if FLAGS.autoencoder else {}
    data = cifar10.load(FLAGS.data_dir)
    test = data["test_images"][datasets.evenly_spaced(len(data["test_images"]), FLAGS.num_images)]
    test = test.astype(np.float32)
    train = data["train_images"][datasets.evenly_spaced(len(data["train_images"]), FLAGS.fit_images)]
    train = train.astype(np.float32)
    shown = datasets.evenly_spaced(len(test), min(FLAGS.grid_images, len(test)))
    pairs = datasets.evenly_spaced(len(test), 2 * FLAGS.interpolation_pairs).reshape(-1, 2).T  # a's, b's
    ts = np.linspace(0.0, 1.0, FLAGS.interpolation_steps)
    print(f"{FLAGS.net}: layers {', '.join(FLAGS.layers)}; {len(test)} test images, {len(train)} fitting images")

    results = {"parameters": {name: FLAGS[name].value for name in (
        "net", "layers", "num_images", "fit_images", "random_samples", "histogram_bins", "interpolation_steps",
        "top_k", "seed")}, "inverters": {layer: inverter_dir(f"{FLAGS.net}:{layer}", False) for layer in FLAGS.layers},
        "perturbations": {}, "fc8_topk": {}, "interpolation_step_ratio": {}, "random_zero_fraction": {},
        "random_contrast": {},
        "autoencoder": {"fixed encoder": {}, "autoencoder": {}}}
    files = {"perturbations": [], "fc8": [], "interpolation": [], "random": [], "autoencoder": []}
    frames, randoms = {}, {}
    for i, layer in enumerate(FLAGS.layers):
        inverter, layer_key = fixed[layer], jax.random.fold_in(key, i)
        t0 = time.time()
        study = S.perturbation_study(inverter.features, inverter, test, P.PERTURBATIONS, layer_key,
                                     batch_size=FLAGS.batch_size)
        for name, entry in study.items():
            results["perturbations"].setdefault(name, {})[layer] = entry["error"]
        print(f"{layer}: " + ", ".join(f"{name} {entry['error']:.3f}" for name, entry in study.items()))
        rows = [test[shown]] + [entry["reconstructions"][shown] for entry in study.values()]
        files["perturbations"].append(grid(os.path.join(out, f"perturbations_{layer}.png"), rows,
                                           ["original"] + list(study)))
        if layer == "fc8":
            chosen = {name: fn for k in top_ks for name, fn in S.top_k_perturbations(k).items()}
            topk = S.perturbation_study(inverter.features, inverter, test, chosen,
                                        layer_key, batch_size=FLAGS.batch_size)
            results["fc8_topk"] = {name: entry["error"] for name, entry in topk.items()}
            print("fc8: " + ", ".join(f"{name} {entry['error']:.3f}" for name, entry in topk.items()))
            files["fc8"].append(grid(os.path.join(out, "fc8_topk.png"),
                                     [test[shown]] + [entry["reconstructions"][shown] for entry in topk.values()],
                                     ["original"] + list(topk)))
        frames[layer] = S.interpolation_images(inverter.features, inverter, test[pairs[0]], test[pairs[1]], ts)
        steps = S.interpolation_steps(frames[layer])
        results["interpolation_step_ratio"][layer] = float(np.mean(steps.max(axis=1) / steps.mean(axis=1)))
        real = S.in_batches(inverter.features, train, FLAGS.batch_size)
        randoms[layer] = S.random_feature_study(inverter, real, jax.random.fold_in(layer_key, 1),
                                                FLAGS.random_samples, bins=FLAGS.histogram_bins)
        del real
        results["random_zero_fraction"][layer] = {"real": next(iter(randoms[layer].values()))["real_zero_fraction"],
                                                  **{name: r["zero_fraction"] for name, r in randoms[layer].items()}}
        results["random_contrast"][layer] = {
            "test images": S.contrast(test), "reconstructions": S.contrast(study["unperturbed"]["reconstructions"]),
            **{name: r["contrast"] for name, r in randoms[layer].items()}}
        print(f"{layer}: zero fraction " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                      results["random_zero_fraction"][layer].items())
              + "; contrast " + ", ".join(f"{k} {v:.1f}" for k, v in results["random_contrast"][layer].items())
              + f"; interpolation max/mean step {results['interpolation_step_ratio'][layer]:.2f}"
              + f"  ({time.time() - t0:.0f} s)")

    for p in range(FLAGS.interpolation_pairs):
        rows = [[test[pairs[0][p]]] + list(frames[layer][p]) + [test[pairs[1][p]]] for layer in FLAGS.layers]
        files["interpolation"].append(grid(os.path.join(out, f"interpolation_{p}.png"), rows, FLAGS.layers,
                                           ["a"] + [f"t={t:.3g}" for t in ts] + ["b"]))
    for sampler in next(iter(randoms.values())):
        rows = [randoms[layer][sampler]["images"][:FLAGS.grid_images] for layer in FLAGS.layers]
        files["random"].append(grid(os.path.join(out, f"random_{sampler}.png"), rows, FLAGS.layers))
    files["perturbations"].insert(0, S.plot_error_vs_layer(
        os.path.join(out, "errors.png"), results["perturbations"], FLAGS.layers,
        f"{FLAGS.net}: reconstruction error of perturbed features ({len(test)} test images)"))

    if autoencoders:
        ae_rows, ae_labels = [test[shown]], ["original"]
        for layer in FLAGS.layers:
            results["autoencoder"]["fixed encoder"][layer] = results["perturbations"]["unperturbed"][layer]
            ae = autoencoders[layer]
            reconstructions = ae.invert_images(test)
            results["autoencoder"]["autoencoder"][layer] = S.normalised_image_error(test, reconstructions)
            ae_rows += [fixed[layer].invert_images(test[shown]), reconstructions[shown]]
            ae_labels += [f"{layer} fixed", f"{layer} AE"]
            print(f"{layer}: fixed encoder {results['autoencoder']['fixed encoder'][layer]:.3f}, "
                  f"autoencoder {results['autoencoder']['autoencoder'][layer]:.3f}")
        results["inverters"].update({f"{layer} (autoencoder)": inverter_dir(f"{FLAGS.net}:{layer}", True)
                                     for layer in FLAGS.layers})
        files["autoencoder"] += [
            S.plot_error_vs_layer(os.path.join(out, "autoencoder.png"), results["autoencoder"], FLAGS.layers,
                                  f"{FLAGS.net}: fixed encoder vs autoencoder"),
            grid(os.path.join(out, "autoencoder_grid.png"), ae_rows, ae_labels)]

    results["seconds"] = round(time.time() - started, 1)
    results_path = outputs.write_json(os.path.join(out, "results.json"), results)
    page = report.write_html(
        os.path.join(out, "index.html"), f"Inverter studies on {FLAGS.net} (Dosovitskiy & Brox Sects. 5.4-5.5)",
        results["parameters"],
        [("Perturbed features (Sect. 5.4): error per layer; grids rows = perturbations, columns = images",
          files["perturbations"]), ("fc8: only the top-k activations vs all but the top-k, k = " + ", ".join(FLAGS.top_k), files["fc8"]),
         ("Interpolation (Sect. 5.5): rows = layers, columns = t", files["interpolation"]),
         ("Random feature vectors (Sect. 5.5): rows = layers, one grid per sampler", files["random"]),
         ("Autoencoder (decoder trained jointly with the fine-tuned encoder) vs fixed encoder", files["autoencoder"]),
         ("Numbers", [results_path])])
    print(f"wrote {results_path}\nwrote {page} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    cli.run(main)
