"""Inverts a representation of one image with vmapped random restarts (IJCV Eq. 1, Algorithm 1).

    jaxinv-invert                      # HOG of the built-in sample, 4 restarts
    jaxinv-invert --representation=dsift --image=photo.jpg --restarts=8

Writes OUTPUT_DIR/grid.png (original, code glyphs, reconstructions), energy.png (objective terms
per iteration) and metrics.json (normalised error per restart, its spread, timings).
"""
from __future__ import annotations

import dataclasses

from absl import flags

from jaxinv import representations
from jaxinv.io import cli
from jaxinv.studies import shallow

D = shallow.InvertConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("representation", D.representation, f"one of {', '.join(representations.names())}")
flags.DEFINE_string("image", None, "image file to invert (default: the built-in sample)")
flags.DEFINE_integer("size", D.size, "images are centre-cropped and resized to size x size (0 keeps the original)")
flags.DEFINE_float("C", D.C, "weight of the representation loss (IJCV Sect. 5.1: 100 for HOG and DSIFT)")
cli.define_iterations(D.iterations, D.refine_iterations)
cli.define_restarts(D.restarts, "random restarts, optimised together (vmapped)")
cli.define_seed()
flags.DEFINE_integer("cell_size", D.cell_size, "HOG cell / DSIFT bin size in pixels")
flags.DEFINE_enum("formulation", D.formulation, ["ijcv", "cvpr2015"],
                  "ijcv: IJCV Eq. 1 with Algorithm 1; cvpr2015: the CVPR 2015 objective and momentum solver "
                  "(sigma = the reference image's norm; --C and the iteration flags are then unused)")
flags.DEFINE_enum("loop", D.loop, ["python", "scan"], "iteration loop: lax.scan in chunks (faster here), or Python "
                  "over a jitted step")
cli.define_output_dir("outputs/invert", "where to write the figures and metrics")
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    config = shallow.InvertConfig(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(shallow.InvertConfig)})
    inverted = shallow.invert_image(config)
    print(shallow.error_line(inverted.metrics))
    for path in shallow.write_inversion(inverted, FLAGS.output_dir):
        print(f"wrote {path}")


def run():
    """The console script jaxinv-invert."""
    cli.run(main)


if __name__ == "__main__":
    run()
