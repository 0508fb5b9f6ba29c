"""Reproduces IJCV Table 2 / CVPR 2015 Table 1: inverting HOG, HOGb and DSIFT of grey images.

    jaxinv-shallow-table                     # first 100 ImageNet samples
    jaxinv-shallow-table --num_images=8 --iterations=100   # quick look

Writes OUTPUT_DIR/results.json ({"hog": {"mean_error", "ci95", "cvpr_error", "seconds_per_image"},
"hogb": ..., "dsift": ...}, errors as fractions) and figure.png like IJCV Fig. 5 (original, HOG
glyphs, HOG^-1, HOGb^-1, DSIFT^-1). Finished batches are cached in OUTPUT_DIR/cache: rerunning the
same command resumes an interrupted study.
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

from jaxinv.io import cli
from jaxinv.studies import shallow

D = shallow.TableConfig()
FLAGS = flags.FLAGS
cli.define_images_dir()
cli.define_data_dir()
flags.DEFINE_integer("num_images", D.num_images, "the first N images in sorted order")
flags.DEFINE_integer("size", D.size, "images are centre-cropped and resized to size x size")
flags.DEFINE_list("representations", list(D.representations), "which representations")
flags.DEFINE_float("C", D.C, "weight of the representation loss (IJCV Sect. 5.1: 100)")
cli.define_iterations(D.iterations, D.refine_iterations)
cli.define_restarts(D.restarts, "random restarts per image (errors are averaged over them)")
flags.DEFINE_integer("batch_size", D.batch_size, "images inverted together in one vmapped run")
flags.DEFINE_integer("figure_images", 4, "rows of the figure")
cli.define_output_dir("outputs/shallow_table", "where to write results.json and figure.png")
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    config = shallow.TableConfig(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(shallow.TableConfig)})
    table = shallow.run_table(config, cache_dir=os.path.join(FLAGS.output_dir, "cache"))
    results_path, figure, columns = shallow.write_table(table, FLAGS.output_dir, FLAGS.figure_images)
    print(f"wrote {results_path}\nwrote {figure} (columns: {', '.join(columns)})")


def run():
    """The console script jaxinv-shallow-table."""
    cli.run(main)


if __name__ == "__main__":
    run()
