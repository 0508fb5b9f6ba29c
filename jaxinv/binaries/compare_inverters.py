"""Learned HOG inverter against optimisation-based inversion and HOGgle (Dosovitskiy & Brox, CVPR 2016,
Table 2) on held-out images.

    jaxinv-compare-inverters --representation=hog --num_images=50 --output_dir=DIR

Images: the test split of the ImageNet samples (the last 50 sorted files, never trained on; the
first --num_images of them) at the inverter's size (shorter side resized, centre crop), or with
--split=all the first --num_images files of --images_dir. Methods, all from HOG (cell 8) of the grey
(luma) image:

- learned: the trained inverter (--inverter_dir, default `jaxinv.inverters.trained_or_shipped_dir`: the
  cache's, else the one shipped with jaxinv);
- optimisation: `jaxinv.methods.inversion.invert_images(representations.get('hog'), grey,
  problem=shallow_problem(--C), stages=default_stages(--iterations, --refine_iterations))`,
  batches cached in DIR/cache (a rerun resumes);
- hoggle: `jaxinv.inverters.hoggle.invert_hogs` with the paired dictionary --hoggle_dictionary
  (--skip_hoggle leaves it out);
- baselines that use no feature (`jaxinv.inverters.flat_baseline_errors`): the mean test image, and
  each image's own mean grey level (an oracle: LBP and SIFT do not encode brightness).

For --representation=lbp or sift only the learned inverter and the baselines are evaluated.

Seconds per image are wall-clock times including compilation (see benchmarks/inverters.py for
warm timings). Errors (`jaxinv.inverters.image_error`): mean ||x_i - x*_i|| / N, N the mean distance between the
test images, on grey versions (HOG methods cannot recover colour); the learned inverter's colour
error is reported beside it. Writes DIR/results.json ({"learned": {"image_error", ...},
"optimisation": {...}, "hoggle": {...}, "baselines": {...}}), DIR/per_image.json and DIR/figure.png (rows = images;
columns original | learned | optimisation | HOGgle).
"""
from __future__ import annotations

import dataclasses

from absl import flags

from jaxinv.io import cli
from jaxinv.studies import inverter_comparison

D = inverter_comparison.CompareConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("representation", D.representation, "the representation (optimisation and HOGgle exist for hog only)")
flags.DEFINE_string("inverter_dir", None, "trained inverter (default: jaxinv.inverters.trained_or_shipped_dir(representation, size))")
flags.DEFINE_integer("size", None, "image size (default: 64, or the inverter's when --inverter_dir is given)")
cli.define_images_dir()
cli.define_data_dir()
flags.DEFINE_enum("split", D.split, ["test", "all"], "test: the last 50 sorted files (held out); all: every file")
flags.DEFINE_integer("num_images", D.num_images, "the first N images of the split")
flags.DEFINE_float("C", D.C, "optimisation: weight of the representation loss (IJCV Sect. 5.1)")
cli.define_iterations(D.iterations, D.refine_iterations, prefix="optimisation: ")
flags.DEFINE_integer("batch_size", D.batch_size, "optimisation: images inverted together (vmapped)")
flags.DEFINE_bool("skip_optimisation", False, "leave out optimisation-based inversion")
flags.DEFINE_bool("skip_hoggle", False, "leave out HOGgle")
flags.DEFINE_string("hoggle_dictionary", None, "HOGgle paired dictionary (default: ~/.cache/jaxinv/hoggle/dictionary.npz)")
flags.DEFINE_integer("figure_images", 8, "rows of the figure")
cli.define_output_dir("outputs/compare_inverters", "where results.json, per_image.json, figure.png go")
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    names = [f.name for f in dataclasses.fields(inverter_comparison.CompareConfig) if f.name != "cache_dir"]
    config = inverter_comparison.CompareConfig(cache_dir=FLAGS.output_dir, **{name: FLAGS[name].value for name in names})
    result = inverter_comparison.compare(config, log=lambda line: print(line, flush=True))
    print("\n".join(inverter_comparison.summary_lines(result.results)))
    written = inverter_comparison.write_outputs(result, FLAGS.output_dir, FLAGS.figure_images)
    print(f"wrote {written[0]}, per_image.json and {written[2]} (columns: original | "
          f"{' | '.join(result.reconstructions)})")


def run():
    """The console script jaxinv-compare-inverters."""
    cli.run(main)


if __name__ == "__main__":
    run()
