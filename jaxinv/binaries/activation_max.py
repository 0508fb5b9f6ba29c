"""Activation maximisation (IJCV Sect. 6): images that maximally excite units of a network layer.

    jaxinv-activation-max                          # cifar-ref fc8, the 10 classes, 4 restarts
    jaxinv-activation-max --layer=conv2 --units=0,5,9 --restarts=2
    jaxinv-activation-max --net=DIR --layer=fc8 --units=1,207,980
    jaxinv-activation-max --paper_settings        # C = 1, B = 80 as printed in the paper

Writes OUTPUT_DIR/results.json (per unit: the maximised component's final value per restart, M, Z,
and for the class-score layer and its softmax the class probability of each restart), grid.png
(units across, restarts down), energy.png and index.html.
"""
from __future__ import annotations

import dataclasses

from absl import flags

from jaxinv.io import cli
from jaxinv.methods import activation_max

D = activation_max.ActivationMaxConfig()
FLAGS = flags.FLAGS
cli.define_net(D.net)
flags.DEFINE_string("layer", D.layer, "layer whose units to maximise")
flags.DEFINE_list("units", None, "unit (channel) indices; default: every class of the class-score layer, "
                                 "else the first 8 channels")
cli.define_restarts(D.restarts, "random initialisations per unit, optimised together (vmapped)")
cli.define_iterations(D.iterations, D.refine_iterations)
flags.DEFINE_float("C", None, "loss weight; default 3 rho^2 (activation_max.AM_C_PER_RHO2, see docs/deep_visualisation.md)")
flags.DEFINE_float("bound", activation_max.AM_BOUND, "B of the bounded-range term (the paper's: 80)")
flags.DEFINE_bool("paper_settings", False, "C = 1 and B = 80 as in IJCV Sect. 6 (overrides --C and --bound)")
flags.DEFINE_integer("reference_images", None, "measure M on only N reference images (the first N ImageNet samples, "
                     "N evenly spaced CIFAR-10 test images; default: all)")
flags.DEFINE_string("cache_dir", None, "where the maxima M are cached (default: ~/.cache/jaxinv/activation_max)")
cli.define_seed()
flags.DEFINE_integer("scale", D.scale, "grid enlargement factor (0: so that tiles are about 128 pixels)")
cli.define_data_dir()
cli.define_output_dir("outputs/activation_max")
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(activation_max.ActivationMaxConfig)}
    config = activation_max.ActivationMaxConfig(**dict(values, units=cli.int_list("units") or None))
    result = activation_max.run(config)
    print("\n".join(activation_max.unit_lines(result.units, result.summary)))
    print(f"{result.parameters['seconds']:.1f} s")
    for path in activation_max.write_outputs(result, FLAGS.output_dir):
        print(f"wrote {path}")


def run():
    """The console script jaxinv-activation-max."""
    cli.run(main)


if __name__ == "__main__":
    run()
