"""Image-space error of HOGgle inversion on the held-out ImageNet samples (the paper's Table 2 metric).

    python -m experiments.evaluate_hoggle                   # last 50 files, 64x64 grey
    python -m experiments.evaluate_hoggle --size=256 --output_dir=outputs/hoggle256

For every test image x_i (the last --num_test sorted files of --images_dir: the split that
`experiments.train_hoggle` holds out by default) the HOG is inverted with the dictionary and the
error is ||x_i - x*_i|| / N with N the mean Euclidean distance between distinct test images
(Dosovitskiy & Brox, CVPR 2016, Sect. 4.2; `jaxinv.methods.metrics.cvpr_errors` with the identity as
representation), averaged over images, for each --pixel_mappings. Also the flat-grey baseline
(every pixel at the dictionary's training mean). Writes OUTPUT_DIR/results.json and figure.png
(rows: original, training mapping, stretch mapping).
"""
from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

from jaxinv.inverters import hoggle
from jaxinv.io import cli, images, outputs
from jaxinv.methods import metrics

flags.DEFINE_string("dictionary", None, "paired dictionary (default: ~/.cache/jaxinv/hoggle/dictionary.npz)")
flags.DEFINE_string("images_dir", None, "folder of images (default: ../shared/data/imagenet_samples)")
flags.DEFINE_integer("num_test", 50, "the last N sorted files are the test images")
flags.DEFINE_integer("size", 64, "test images are grey size x size centre crops")
flags.DEFINE_list("pixel_mappings", list(hoggle.PIXEL_MAPPINGS), "how patches become grey levels (see jaxinv.inverters.hoggle)")
flags.DEFINE_integer("figure_images", 8, "columns of the figure")
flags.DEFINE_string("output_dir", "outputs/hoggle", "where to write results.json and figure.png")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    for mapping in FLAGS.pixel_mappings:
        if mapping not in hoggle.PIXEL_MAPPINGS:
            raise ValueError(f"--pixel_mappings: {mapping!r} is not one of {', '.join(hoggle.PIXEL_MAPPINGS)}")
    if FLAGS.num_test < 2:
        raise ValueError(f"--num_test must be at least 2 (the error is normalised by pairwise distances); "
                         f"got {FLAGS.num_test}")
    dictionary_path = FLAGS.dictionary or hoggle.default_dictionary_path()
    dictionary = hoggle.PairedDictionary.load(dictionary_path)
    paths = images.imagenet_sample_paths(FLAGS.images_dir)[-FLAGS.num_test:]
    originals = np.stack([images.load_image(p, grey=True, size=FLAGS.size) for p in paths])
    codes = hoggle.batched_hog(originals, dictionary.cell_size)
    print(f"{len(paths)} test images of {FLAGS.size}x{FLAGS.size} ({os.path.basename(paths[0])} .. "
          f"{os.path.basename(paths[-1])}), dictionary {dictionary_path} ({dictionary.num_atoms} atoms)")
    flat = np.full_like(originals, dictionary.patch_mean)
    mean, ci = metrics.mean_with_ci95(metrics.cvpr_errors(flat, originals))
    results = {"num_images": len(paths), "size": FLAGS.size, "dictionary": dictionary_path,
               "num_atoms": dictionary.num_atoms, "training_info": dictionary.training_info,
               "paper_hoggle_error": hoggle.PAPER_ERROR, "flat_grey": {"mean_error": mean, "ci95": ci}}
    print(f"flat grey at {dictionary.patch_mean:.1f}: error {mean:.3f} +- {ci:.3f}")
    reconstructions = {}
    for mapping in FLAGS.pixel_mappings:
        start = time.time()
        reconstructions[mapping] = hoggle.invert_hogs(dictionary, codes, (FLAGS.size, FLAGS.size),
                                                      pixel_mapping=mapping)
        seconds = (time.time() - start) / len(paths)
        mean, ci = metrics.mean_with_ci95(metrics.cvpr_errors(reconstructions[mapping], originals))
        results[mapping] = {"mean_error": mean, "ci95": ci, "seconds_per_image": seconds}
        print(f"{mapping:9s} error {mean:.3f} +- {ci:.3f} (paper {hoggle.PAPER_ERROR:.2f}), {seconds:.2f} s/image")
    shown = range(min(FLAGS.figure_images, len(paths)))
    grid = images.image_grid([[originals[i] for i in shown]] +
                             [[reconstructions[m][i] for i in shown] for m in FLAGS.pixel_mappings])
    figure = images.save_image(os.path.join(FLAGS.output_dir, "figure.png"), grid)
    results_path = outputs.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
    print(f"wrote {results_path}\nwrote {figure} (rows: original, {', '.join(FLAGS.pixel_mappings)})")


if __name__ == "__main__":
    cli.run(main)
