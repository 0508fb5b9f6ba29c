"""Reproduces IJCV Table 2 / CVPR 2015 Table 1: inverting HOG, HOGb and DSIFT of grey images.

    python -m experiments.shallow_table                     # first 100 ImageNet samples
    python -m experiments.shallow_table --num_images=8 --iterations=100   # quick look

Writes OUTPUT_DIR/results.json ({"hog": {"mean_error", "ci95", "cvpr_error", "seconds_per_image"},
"hogb": ..., "dsift": ...}, errors as fractions) and figure.png like IJCV Fig. 5 (original, HOG
glyphs, HOG^-1, HOGb^-1, DSIFT^-1). Finished batches are cached in OUTPUT_DIR/cache: rerunning the
same command resumes an interrupted study.
"""
from __future__ import annotations

import os

from absl import flags

from jaxinv import representations
from jaxinv.engine import preimage
from jaxinv.io import cli, images, outputs
from jaxinv.studies import shallow

FLAGS = flags.FLAGS
flags.DEFINE_string("images_dir", None, "folder of images (default: ../shared/data/imagenet_samples)")
flags.DEFINE_integer("num_images", 100, "the first N images in sorted order")
flags.DEFINE_integer("size", 256, "images are centre-cropped and resized to size x size")
flags.DEFINE_list("representations", list(representations.names()), "which representations")
flags.DEFINE_float("C", 100.0, "weight of the representation loss (IJCV Sect. 5.1: 100)")
flags.DEFINE_integer("iterations", 300, "iterations of the first stage")
flags.DEFINE_integer("refine_iterations", 50, "iterations of the second stage at a tenth of the rate")
flags.DEFINE_integer("restarts", 1, "random restarts per image (errors are averaged over them)")
flags.DEFINE_integer("batch_size", 10, "images inverted together in one vmapped run")
flags.DEFINE_integer("figure_images", 4, "rows of the figure")
flags.DEFINE_string("output_dir", "outputs/shallow_table", "where to write results.json and figure.png")


def main(argv):
    del argv
    for name in FLAGS.representations:
        representations.get(name)  # fails early, listing the valid names
    paths = images.imagenet_sample_paths(FLAGS.images_dir, FLAGS.num_images)
    grey = shallow.load_grey_images(paths, FLAGS.size)
    stages = preimage.default_stages(FLAGS.iterations, FLAGS.refine_iterations)
    print(f"{len(grey)} images of {FLAGS.size}x{FLAGS.size}, C={FLAGS.C}, "
          f"{FLAGS.iterations}+{FLAGS.refine_iterations} iterations, {FLAGS.restarts} restart(s)")
    results, studies = {}, {}
    for name in FLAGS.representations:
        studies[name] = shallow.invert_in_batches(
            name, grey, batch_size=FLAGS.batch_size, restarts=FLAGS.restarts, stages=stages, C=FLAGS.C,
            cache_dir=os.path.join(FLAGS.output_dir, "cache"))
        results[name] = shallow.summarise(studies[name])
        r = results[name]
        print(f"{name:6s} error {r['mean_error']:.3f} +- {r['ci95']:.3f}  (paper {shallow.PAPER_IJCV_TABLE2[name]:.3f})"
              f"  cvpr {r['cvpr_error']:.3f} (paper {shallow.PAPER_CVPR_TABLE1[name]:.3f})"
              f"  {r['seconds_per_image']:.2f} s/image")
    rows = []
    for i in range(min(FLAGS.figure_images, len(grey))):
        row = [grey[i]]
        if "hog" in studies:
            row.append(representations.render("hog", studies["hog"]["targets"][i]))
        row += [studies[name]["reconstructions"][i, 0] for name in FLAGS.representations]
        rows.append(row)
    figure = images.save_image(os.path.join(FLAGS.output_dir, "figure.png"), images.image_grid(rows, tile=grey[0].shape[:2]))
    columns = ["original"] + (["HOG glyphs"] if "hog" in studies else []) + [f"{n}^-1" for n in FLAGS.representations]
    results_path = outputs.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
    print(f"wrote {results_path}\nwrote {figure} (columns: {', '.join(columns)})")


if __name__ == "__main__":
    cli.run(main)
