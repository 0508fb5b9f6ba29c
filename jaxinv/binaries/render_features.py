"""Renders an image's HOG (glyphs, like vl_hog('render')), HOGb and dense SIFT as PNG files.

    jaxinv-render-features                         # the built-in sample image
    jaxinv-render-features --image=photo.jpg --cell_size=6
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags

from jaxinv import features
from jaxinv.io import cli, images

FLAGS = flags.FLAGS
flags.DEFINE_string("image", None, "image file (default: the built-in sample)")
flags.DEFINE_integer("cell_size", 8, "HOG cell and DSIFT bin size in pixels")
flags.DEFINE_integer("dsift_step", 8, "DSIFT frame step in pixels")
cli.define_output_dir("outputs/render_features", "where to write the PNG files")
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    path = FLAGS.image or images.sample_image_path()
    image = images.load_image(path)
    grey = images.to_grey(image)
    hog = np.asarray(features.hog(image, FLAGS.cell_size))
    hogb = np.asarray(features.hog(image, FLAGS.cell_size, bilinear=True))
    dsift = np.asarray(features.dsift(grey, bin_size=FLAGS.cell_size, step=FLAGS.dsift_step))
    written = [
        images.save_image(os.path.join(FLAGS.output_dir, "image.png"), image),
        images.save_image(os.path.join(FLAGS.output_dir, "hog.png"), features.render_hog(hog)),
        images.save_image(os.path.join(FLAGS.output_dir, "hogb.png"), features.render_hog(hogb)),
        images.save_image(os.path.join(FLAGS.output_dir, "dsift.png"),
                          features.render_dsift(dsift, bin_size=FLAGS.cell_size, step=FLAGS.dsift_step,
                                                image_shape=grey.shape)),
    ]
    print(f"{path}: {image.shape[1]}x{image.shape[0]}; HOG {hog.shape}, DSIFT {dsift.shape}")
    for name in written:
        print(f"wrote {name}")


def run():
    """The console script jaxinv-render-features."""
    cli.run(main)


if __name__ == "__main__":
    run()
