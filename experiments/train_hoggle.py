"""Learns the HOGgle paired dictionary (Vondrick et al., ICCV 2013) from the ImageNet samples.

    python -m experiments.train_hoggle                      # ~/.cache/jaxinv/hoggle/dictionary.npz
    python -m experiments.train_hoggle --num_atoms=32 --num_patches=500 --epochs=1 --output=/tmp/d.npz

Training images are the sorted files of --images_dir minus the last --exclude_last (50 by
default: the test split that the learned inverters and `experiments.evaluate_hoggle` use, so
evaluation images never enter the dictionary). Each is read grey as an --image_size square centre
crop; windows of 5x5 HOG cells and their 40x40 pixel patches are drawn from them
(`jaxinv.inverters.hoggle.sample_training_pairs`) and sparse-coded with scikit-learn (`pip install
'jaxinv[hoggle]'`). The dictionary is written atomically to --output (default
~/.cache/jaxinv/hoggle/dictionary.npz, outside the repository).
"""
from __future__ import annotations

import dataclasses
import os
import time

from absl import flags

from jaxinv.inverters import hoggle
from jaxinv.io import cli, images

flags.DEFINE_string("images_dir", None, "folder of images (default: ../shared/data/imagenet_samples)")
flags.DEFINE_integer("num_images", None, "use only the first N training images (after the hold-out)")
flags.DEFINE_integer("exclude_last", 50, "hold out the last N sorted files (the evaluation split)")
flags.DEFINE_integer("image_size", 64, "training images are grey centre crops of this size (the evaluation size)")
flags.DEFINE_integer("num_patches", None, "random training windows (default: every window with contrast)")
flags.DEFINE_integer("num_atoms", 1024, "dictionary size (1024 in the original)")
flags.DEFINE_float("lam", 0.02, "lasso weight of the sparse codes (0.02 in the original)")
flags.DEFINE_integer("epochs", 4, "passes over the training windows (0: random training pairs as atoms)")
flags.DEFINE_integer("batch_size", 512, "windows per minibatch of the online dictionary learning")
flags.DEFINE_integer("seed", 0, "seed of window sampling, initial atoms and minibatch order")
flags.DEFINE_string("output", None, "where the dictionary goes (default: ~/.cache/jaxinv/hoggle/dictionary.npz)")
FLAGS = flags.FLAGS


def training_paths(images_dir: str | None, exclude_last: int, num_images: int | None) -> list[str]:
    """Sorted image files without the last `exclude_last` (held out), then the first `num_images`."""
    if exclude_last < 0:
        raise ValueError(f"--exclude_last must be >= 0; got {exclude_last}")
    paths = images.imagenet_sample_paths(images_dir)
    kept = paths[:len(paths) - exclude_last]
    if not kept:
        raise ValueError(f"--exclude_last={exclude_last} leaves none of the {len(paths)} images for training")
    return kept[:num_images] if num_images else kept


def main(argv):
    del argv
    output = FLAGS.output or hoggle.default_dictionary_path()
    paths = training_paths(FLAGS.images_dir, FLAGS.exclude_last, FLAGS.num_images)
    start = time.time()
    pairs = hoggle.sample_training_pairs(paths, FLAGS.num_patches, image_size=FLAGS.image_size, seed=FLAGS.seed)
    print(f"{len(pairs)} windows from {len(paths)} images of {FLAGS.image_size}x{FLAGS.image_size} "
          f"(last {FLAGS.exclude_last} held out) in {time.time() - start:.1f} s")
    dictionary = hoggle.learn_paired_dictionary(pairs, FLAGS.num_atoms, FLAGS.lam, batch_size=FLAGS.batch_size,
                                                epochs=FLAGS.epochs, seed=FLAGS.seed)
    info = dict(dictionary.training_info, num_images=len(paths), image_size=FLAGS.image_size,
                exclude_last=FLAGS.exclude_last, first_image=os.path.basename(paths[0]),
                last_image=os.path.basename(paths[-1]))
    dictionary = dataclasses.replace(dictionary, training_info=info)
    dictionary.save(output)
    print(f"wrote {output} ({dictionary.num_atoms} atoms, {info['seconds']:.0f} s of dictionary learning, "
          f"{time.time() - start:.0f} s in all)")


if __name__ == "__main__":
    cli.run(main)
