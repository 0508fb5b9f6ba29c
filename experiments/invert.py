"""Inverts a representation of one image with vmapped random restarts (IJCV Eq. 1, Algorithm 1).

    python -m experiments.invert                      # HOG of the built-in sample, 4 restarts
    python -m experiments.invert --representation=dsift --image=photo.jpg --restarts=8

Writes OUTPUT_DIR/grid.png (original, code glyphs, reconstructions), energy.png (objective terms
per iteration) and metrics.json (normalised error per restart, its spread, timings).
"""
from __future__ import annotations

import os

from absl import flags

from jaxinv import representations
from jaxinv.engine import preimage
from jaxinv.io import cli, images, outputs
from jaxinv.methods import inversion, metrics

FLAGS = flags.FLAGS
flags.DEFINE_string("representation", "hog", f"one of {', '.join(representations.names())}")
flags.DEFINE_string("image", None, "image file to invert (default: the built-in sample)")
flags.DEFINE_integer("size", 256, "images are centre-cropped and resized to size x size (0 keeps the original)")
flags.DEFINE_float("C", 100.0, "weight of the representation loss (IJCV Sect. 5.1: 100 for HOG and DSIFT)")
flags.DEFINE_integer("iterations", 300, "iterations of the first stage")
flags.DEFINE_integer("refine_iterations", 50, "iterations of the second stage at a tenth of the rate")
flags.DEFINE_integer("restarts", 4, "random restarts, optimised together (vmapped)")
flags.DEFINE_integer("seed", 0, "PRNG seed")
flags.DEFINE_integer("cell_size", 8, "HOG cell / DSIFT bin size in pixels")
flags.DEFINE_enum("formulation", "ijcv", ["ijcv", "cvpr2015"],
                  "ijcv: IJCV Eq. 1 with Algorithm 1; cvpr2015: the CVPR 2015 objective and momentum solver "
                  "(sigma = the reference image's norm; --C and the iteration flags are then unused)")
flags.DEFINE_enum("loop", "scan", ["python", "scan"], "iteration loop: lax.scan in chunks (faster here), or Python over a jitted step")
flags.DEFINE_string("output_dir", "outputs/invert", "where to write the figures and metrics")


def main(argv):
    del argv
    representation = representations.get(FLAGS.representation, cell_size=FLAGS.cell_size)
    path = FLAGS.image or images.sample_image_path()
    image = images.load_image(path, grey=True, size=FLAGS.size or None)
    problem = inversion.shallow_problem(FLAGS.C)
    stages = preimage.default_stages(FLAGS.iterations, FLAGS.refine_iterations)
    print(f"inverting {FLAGS.representation} of {path} ({image.shape[1]}x{image.shape[0]}), "
          f"C={FLAGS.C}, {FLAGS.restarts} restarts, {FLAGS.iterations}+{FLAGS.refine_iterations} iterations")
    cvpr2015 = None
    if FLAGS.formulation == "cvpr2015":
        cvpr2015 = inversion.Cvpr2015(sigma=inversion.average_image_norm([representation.to_null_mean(image)]))
    result = inversion.invert_images(representation, [image], problem=problem, restarts=FLAGS.restarts,
                                     seed=FLAGS.seed, stages=stages, loop=FLAGS.loop, cvpr2015=cvpr2015,
                                     progress=preimage.print_progress)
    errors = result.errors[0]
    glyphs = representations.render(FLAGS.representation, result.target_codes[0], image_shape=image.shape,
                                     cell_size=FLAGS.cell_size)
    grid = images.image_grid([[image, glyphs], list(result.images[0])], tile=image.shape[:2])
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    written = [
        images.save_image(os.path.join(FLAGS.output_dir, "grid.png"), grid),
        outputs.plot_energy_terms(result.history, os.path.join(FLAGS.output_dir, "energy.png"),
                                  title=f"{FLAGS.representation} inversion, C={FLAGS.C}"),
        outputs.write_json(os.path.join(FLAGS.output_dir, "metrics.json"), {
            "representation": FLAGS.representation, "image": path, "image_size": list(image.shape),
            "formulation": FLAGS.formulation, "C": FLAGS.C, "iterations": FLAGS.iterations, "refine_iterations": FLAGS.refine_iterations,
            "restarts": FLAGS.restarts, "seed": FLAGS.seed,
            "errors": errors.tolist(), "mean_error": float(errors.mean()),
            "restart_std": metrics.restart_spread(errors) if len(errors) > 1 else 0.0,
            "seconds": result.seconds, "seconds_per_restart": result.seconds / FLAGS.restarts}),
    ]
    print(f"normalised error per restart: {', '.join(f'{e:.3f}' for e in errors)} "
          f"(mean {errors.mean():.3f}); {result.seconds:.1f} s")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
