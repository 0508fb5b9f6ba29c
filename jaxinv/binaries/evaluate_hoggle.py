"""Image-space error of HOGgle inversion on the held-out ImageNet samples (the paper's Table 2 metric).

    jaxinv-evaluate-hoggle                   # last 50 files, 64x64 grey
    jaxinv-evaluate-hoggle --size=256 --output_dir=outputs/hoggle256

For every test image x_i (the last --num_test sorted files of --images_dir: the split that
`jaxinv-train-hoggle` holds out by default) the HOG is inverted with the dictionary and the
error is ||x_i - x*_i|| / N with N the mean Euclidean distance between distinct test images
(Dosovitskiy & Brox, CVPR 2016, Sect. 4.2; `jaxinv.methods.metrics.cvpr_errors` with the identity as
representation), averaged over images, for each --pixel_mappings. Also the flat-grey baseline
(every pixel at the dictionary's training mean). Writes OUTPUT_DIR/results.json and figure.png
(rows: original, training mapping, stretch mapping).
"""
from __future__ import annotations

from absl import flags

from jaxinv.inverters import hoggle, hoggle_experiments
from jaxinv.io import cli

flags.DEFINE_string("dictionary", None, "paired dictionary (default: ~/.cache/jaxinv/hoggle/dictionary.npz)")
cli.define_images_dir()
cli.define_data_dir()
flags.DEFINE_integer("num_test", 50, "the last N sorted files are the test images")
flags.DEFINE_integer("size", 64, "test images are grey size x size centre crops")
flags.DEFINE_list("pixel_mappings", list(hoggle.PIXEL_MAPPINGS), "how patches become grey levels (see jaxinv.inverters.hoggle)")
flags.DEFINE_integer("figure_images", 8, "columns of the figure")
cli.define_output_dir("outputs/hoggle", "where to write results.json and figure.png")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    evaluation = hoggle_experiments.evaluate(FLAGS.dictionary, images_dir=FLAGS.images_dir, num_test=FLAGS.num_test,
                                             size=FLAGS.size, pixel_mappings=FLAGS.pixel_mappings)
    results_path, figure = hoggle_experiments.write_evaluation(evaluation, FLAGS.output_dir, FLAGS.figure_images)
    print(f"wrote {results_path}\nwrote {figure} (rows: original, {', '.join(FLAGS.pixel_mappings)})")


def run():
    """The console script jaxinv-evaluate-hoggle."""
    cli.run(main)


if __name__ == "__main__":
    run()
