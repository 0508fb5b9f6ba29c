"""Activation maximisation (IJCV Sect. 6): images that maximally excite units of a network layer.

    python -m experiments.activation_max                          # cifar-ref fc8, the 10 classes, 4 restarts
    python -m experiments.activation_max --layer=conv2 --units=0,5,9 --restarts=2
    python -m experiments.activation_max --net=DIR --layer=fc8 --units=1,207,980
    python -m experiments.activation_max --paper_settings        # C = 1, B = 80 as printed in the paper

Writes OUTPUT_DIR/results.json (per unit: the maximised component's final value per restart, M, Z,
and for the class-score layer and its softmax the class probability of each restart), grid.png
(units across, restarts down), energy.png and index.html.
"""
from __future__ import annotations

import os

from absl import flags, logging

from jaxinv import nets
from jaxinv.engine import preimage
from jaxinv.io import cli, datasets, images, outputs, report
from jaxinv.methods import visualise
from jaxinv.nets import taps

FLAGS = flags.FLAGS
flags.DEFINE_string("net", "cifar-ref", "network: a shipped name (cifar-ref) or a converted network directory")
flags.DEFINE_string("layer", "fc8", "layer whose units to maximise")
flags.DEFINE_list("units", None, "unit (channel) indices; default: every class of the class-score layer, "
                                 "else the first 8 channels")
flags.DEFINE_integer("restarts", 4, "random initialisations per unit, optimised together (vmapped)")
flags.DEFINE_integer("iterations", 300, "iterations of the first stage (with jitter)")
flags.DEFINE_integer("refine_iterations", 50, "iterations of the second stage at a tenth of the rate")
flags.DEFINE_float("C", None, "loss weight; default 3 rho^2 (visualise.AM_C_PER_RHO2, see the README)")
flags.DEFINE_float("bound", visualise.AM_BOUND, "B of the bounded-range term (the paper's: 80)")
flags.DEFINE_bool("paper_settings", False, "C = 1 and B = 80 as in IJCV Sect. 6 (overrides --C and --bound)")
flags.DEFINE_integer("reference_images", None, "measure M on only N reference images (the first N ImageNet samples, "
                     "N evenly spaced CIFAR-10 test images; default: all)")
flags.DEFINE_string("cache_dir", None, "where the maxima M are cached (default: ~/.cache/jaxinv/activation_max)")
flags.DEFINE_integer("seed", 0, "PRNG seed")
flags.DEFINE_integer("scale", 0, "grid enlargement factor (0: so that tiles are about 128 pixels)")
flags.DEFINE_string("output_dir", "outputs/activation_max", "where to write the results")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    model = nets.load(FLAGS.net)
    layer = FLAGS.layer
    taps.check_layer(model, layer)
    class_layer = visualise.is_class_layer(model, layer)
    if FLAGS.units:
        units = [int(u) for u in FLAGS.units]
    else:
        units = list(range(min(visualise.num_units(model, layer), 10 if class_layer else 8)))
    visualise.check_units(model, layer, units)
    C, bound = (1.0, 80.0) if FLAGS.paper_settings else (FLAGS.C, FLAGS.bound)
    reference, _ = datasets.reference_images(model, FLAGS.reference_images)
    described = datasets.reference_description(model, len(reference))
    maxima = visualise.activation_maxima(model, layer, reference, directory=FLAGS.cache_dir)
    size = visualise.activation_max_input_size(model, layer)
    print(f"maximising {len(units)} units of {model.arch}:{layer} on {size}x{size} images, "
          f"{FLAGS.restarts} restarts, {FLAGS.iterations}+{FLAGS.refine_iterations} iterations")
    result = visualise.maximise_activation(
        model, layer, units, restarts=FLAGS.restarts, seed=FLAGS.seed, C=C, bound=bound, maxima=maxima,
        stages=preimage.default_stages(FLAGS.iterations, FLAGS.refine_iterations), progress=preimage.print_progress)
    names = [unit_name(model, layer, u, class_layer) for u in units]
    per_unit = []
    for i, (unit, name) in enumerate(zip(units, names)):
        entry = {"unit": unit, "name": name, "values": result.values[i].tolist(), "M": float(result.maxima[i]),
                 "Z": float(result.normalisers[i]), "value_over_M": (result.values[i] / result.maxima[i]).tolist()}
        if result.probabilities is not None:
            entry["probabilities"] = result.probabilities[i].tolist()
        per_unit.append(entry)
        shown = f"  {name}: value/M {', '.join(f'{v:.2f}' for v in entry['value_over_M'])}"
        if result.probabilities is not None:
            shown += f"; p(class) {', '.join(f'{p:.3f}' for p in entry['probabilities'])}"
        print(shown)
    summary = {}
    if result.probabilities is not None:
        summary = {"min_probability": float(result.probabilities.min()),
                   "mean_probability": float(result.probabilities.mean()),
                   "per_class_min": result.probabilities.min(axis=1).tolist(),
                   "per_class_mean": result.probabilities.mean(axis=1).tolist()}
    out = FLAGS.output_dir
    os.makedirs(out, exist_ok=True)
    scale = FLAGS.scale or max(1, 128 // size)
    rows = [list(result.images[:, k]) for k in range(FLAGS.restarts)]
    grid = images.labelled_grid(rows, column_labels=names, row_labels=[f"restart {k}" for k in range(FLAGS.restarts)],
                                scale=scale)
    parameters = {"net": FLAGS.net, "arch": model.arch, "layer": layer, "units": units, "image_size": size,
                  "restarts": FLAGS.restarts, "iterations": FLAGS.iterations,
                  "refine_iterations": FLAGS.refine_iterations, "C": result.problem.C, "bound": result.problem.bound,
                  "jitter": result.problem.jitter, "receptive_field": model.receptive_fields[layer][0],
                  "reference_images": described, "seed": FLAGS.seed, "seconds": result.seconds}
    written = [images.save_image(os.path.join(out, "grid.png"), grid),
               outputs.plot_energy_terms(result.history, os.path.join(out, "energy.png"),
                                         title=f"activation maximisation {model.arch}:{layer}"),
               outputs.write_json(os.path.join(out, "results.json"), dict(parameters, units=per_unit, **summary))]
    written.append(report.write_html(
        os.path.join(out, "index.html"), f"Activation maximisation: {model.arch} {layer}", parameters,
        [("Units across, restarts down", written[:1]), ("Energy", written[1:2]), ("Results", written[2:3])],
        notes="Probabilities are measured on the saved images (clipped to [0, 255])." if summary else ""))
    if summary:
        print(f"class probability: min {summary['min_probability']:.3f}, mean {summary['mean_probability']:.3f}")
    print(f"{result.seconds:.1f} s")
    for path in written:
        print(f"wrote {path}")


def unit_name(model, layer: str, unit: int, class_layer: bool) -> str:
    if class_layer and model.class_names and unit < len(model.class_names):
        return f"{unit} {model.class_names[unit]}"[:16]
    return f"{layer}:{unit}"


if __name__ == "__main__":
    cli.run(main)
