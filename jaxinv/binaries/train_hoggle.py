"""Learns the HOGgle paired dictionary (Vondrick et al., ICCV 2013) from the ImageNet samples.

    jaxinv-train-hoggle                      # ~/.cache/jaxinv/hoggle/dictionary.npz
    jaxinv-train-hoggle --num_atoms=32 --num_patches=500 --epochs=1 --output=/tmp/d.npz

Training images are the sorted files of --images_dir minus the last --exclude_last (50 by
default: the test split that the learned inverters and `jaxinv-evaluate-hoggle` use, so
evaluation images never enter the dictionary). Each is read grey as an --image_size square centre
crop; windows of 5x5 HOG cells and their 40x40 pixel patches are drawn from them
(`jaxinv.inverters.hoggle_learning.sample_training_pairs`) and sparse-coded with scikit-learn (`pip install
'jaxinv[hoggle]'`). The dictionary is written atomically to --output (default
~/.cache/jaxinv/hoggle/dictionary.npz, outside the repository).
"""
from __future__ import annotations

import dataclasses
import time

from absl import flags

from jaxinv.inverters import hoggle, hoggle_experiments as H
from jaxinv.io import cli

D = H.TrainConfig()
cli.define_images_dir()
cli.define_data_dir()
flags.DEFINE_integer("num_images", None, "use only the first N training images (after the hold-out)")
flags.DEFINE_integer("exclude_last", D.exclude_last, "hold out the last N sorted files (the evaluation split)")
flags.DEFINE_integer("image_size", D.image_size, "training images are grey centre crops of this size (the "
                     "evaluation size)")
flags.DEFINE_integer("num_patches", None, "random training windows (default: every window with contrast)")
flags.DEFINE_integer("num_atoms", D.num_atoms, "dictionary size (1024 in the original)")
flags.DEFINE_float("lam", D.lam, "lasso weight of the sparse codes (0.02 in the original)")
flags.DEFINE_integer("epochs", D.epochs, "passes over the training windows (0: random training pairs as atoms)")
flags.DEFINE_integer("batch_size", D.batch_size, "windows per minibatch of the online dictionary learning")
cli.define_seed("seed of window sampling, initial atoms and minibatch order")
flags.DEFINE_string("output", None, "where the dictionary goes (default: ~/.cache/jaxinv/hoggle/dictionary.npz)")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    output = cli.hold_output(FLAGS.output or hoggle.default_dictionary_path(), file=True)
    start = time.time()
    dictionary = H.train(H.TrainConfig(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(H.TrainConfig)}))
    dictionary.save(output)
    print(f"wrote {output} ({dictionary.num_atoms} atoms, {dictionary.training_info['seconds']:.0f} s of "
          f"dictionary learning, {time.time() - start:.0f} s in all)")


def run():
    """The console script jaxinv-train-hoggle."""
    cli.run(main)


if __name__ == "__main__":
    run()
