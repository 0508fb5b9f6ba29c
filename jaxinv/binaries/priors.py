"""The papers' priors beside Fourier + decorrelated colour, transformation robustness, diversity and a
learned-decoder prior, on cifar-ref (`jaxinv.studies.priors`).

    jaxinv-priors                                    # four priors, six layers, 4 images x 2 restarts
    jaxinv-priors --num_images=8 --restarts=4 --iterations=300 --refine_iterations=50
    jaxinv-priors --priors=paper,fourier,fourier+diversity
    jaxinv-priors --colour_sqrt                      # re-estimates parameterisation.COLOUR_SQRT

(`python -m experiments.priors` from a clone.) The learned prior needs the cifar-ref pool3 inverter
(`jaxinv-train-inverter --representation=cifar-ref:pool3`, or --inverter_dir). Writes OUTPUT_DIR/results.json, results.md
(the tables), inversion.png (rows: priors; columns: the original and the layers), activation_max.png
(rows: priors; columns: classes), error / class_consistency / hist_intersection / restart_diversity
plots against the layer and am_probability.png.
"""
from __future__ import annotations

import shlex
import sys

import numpy as np
from absl import flags

from jaxinv.engine import parameterisation
from jaxinv.io import cli, images
from jaxinv.studies import priors

D = priors.PriorsConfig()
FLAGS = flags.FLAGS
cli.define_net(D.net)
flags.DEFINE_list("priors", list(D.priors), f"priors to compare, of {', '.join(priors.ALL_PRIORS)}")
flags.DEFINE_list("layers", list(D.layers), "layers to invert")
flags.DEFINE_integer("num_images", D.num_images, "CIFAR-10 test images inverted (evenly spaced)")
cli.define_restarts(D.restarts, "random restarts per image (>= 2)")
flags.DEFINE_integer("am_restarts", D.am_restarts, "random restarts per class in activation maximisation (>= 2)")
cli.define_iterations(D.iterations, D.refine_iterations)
flags.DEFINE_float("decay", D.decay, "Fourier spectrum decay: 1/f^decay (Lucid's 1.0)")
flags.DEFINE_string("diversity_layer", D.diversity_layer, "layer of the Gram matrices for restart diversity")
flags.DEFINE_float("diversity_weight", D.diversity_weight, "diversity term weight, times the data term at its "
                   "reference (C; C / rho^2 for activation maximisation); fourier+diversity only")
flags.DEFINE_string("inverter_dir", None, "the trained cifar-ref pool3 inverter (default: its cache folder)")
flags.DEFINE_integer("histogram_images", D.histogram_images, "CIFAR-10 test images of the reference histogram")
cli.define_seed()
cli.define_data_dir()
flags.DEFINE_bool("colour_sqrt", False, "only estimate the colour matrix from the ImageNet samples (128x128) and print it")
cli.define_output_dir("outputs/priors")
flags.adopt_module_key_flags(cli)  # the shared flags show in --help


def main(argv):
    del argv
    if FLAGS.colour_sqrt:
        paths = images.imagenet_sample_paths(images.imagenet_samples_dir(FLAGS.data_dir))
        matrix = parameterisation.estimate_colour_sqrt(np.stack([images.load_image(p, size=128) for p in paths]))
        print(f"{len(paths)} images at 128x128:\n{np.array2string(matrix, precision=4, suppress_small=True)}")
        return
    config = priors.PriorsConfig(
        net=FLAGS.net, priors=tuple(FLAGS.priors), layers=tuple(FLAGS.layers), num_images=FLAGS.num_images,
        restarts=FLAGS.restarts, am_restarts=FLAGS.am_restarts, iterations=FLAGS.iterations,
        refine_iterations=FLAGS.refine_iterations, decay=FLAGS.decay, diversity_layer=FLAGS.diversity_layer,
        diversity_weight=FLAGS.diversity_weight, inverter_dir=FLAGS.inverter_dir,
        histogram_images=FLAGS.histogram_images, seed=FLAGS.seed, data_dir=FLAGS.data_dir)
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    result = priors.run(config, log=lambda line: print(line, flush=True))
    command = "jaxinv-priors " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(priors.markdown_tables(result))
    for path in priors.write_outputs(result, FLAGS.output_dir, dict(command=command)):
        print(f"wrote {path}")
    print(f"{result.seconds:.1f} s")


def run():
    """The console script jaxinv-priors."""
    cli.run(main)


if __name__ == "__main__":
    run()
