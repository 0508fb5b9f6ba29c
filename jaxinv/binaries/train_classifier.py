"""Trains the cifar-ref reference network on CIFAR-10 and writes it as a jaxinv network directory.

    jaxinv-train-classifier --output_dir=outputs/cifar-ref

Recipe (from measurements on a 2-core CPU): AdamW with a one-cycle learning rate peaking at 2e-3,
label smoothing 0.1, batch 128, random 32x32 crops of the 4-pixel zero-padded image and horizontal
flips. Resumable: an orbax checkpoint is written after every epoch under --output_dir/checkpoints
and a restarted run continues after the last one (same flags, same result: the shuffling and
augmentation of each epoch are seeded by (seed, epoch)). The training: `jaxinv.nets.training`.
"""
from __future__ import annotations

import dataclasses
import shlex
import sys

from absl import flags

from jaxinv.io import cli
from jaxinv.nets import training

D = training.ClassifierConfig()
flags.DEFINE_integer("epochs", D.epochs, "training epochs (the one-cycle schedule spans all of them)")
flags.DEFINE_integer("batch_size", D.batch_size, "training batch size")
flags.DEFINE_float("learning_rate", D.learning_rate, "peak learning rate of the one-cycle schedule")
flags.DEFINE_float("weight_decay", D.weight_decay, "AdamW decoupled weight decay")
flags.DEFINE_float("label_smoothing", D.label_smoothing, "label smoothing of the cross-entropy targets")
cli.define_seed("seed of initialisation, shuffling and augmentation")
cli.define_output_dir("outputs/cifar-ref", "where the trained network and checkpoints go")
cli.define_data_dir()
flags.DEFINE_string("init_from", None, "start from the parameters (and input convention) of this network "
                    "directory instead of random ones: fine-tuning; its metadata is kept as `initialised_from`")
flags.DEFINE_integer("max_train_images", None, "use only N evenly spaced training images (smoke tests)")
flags.DEFINE_integer("max_test_images", None, "evaluate on only N evenly spaced test images (smoke tests)")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    config = training.ClassifierConfig(**{f.name: FLAGS[f.name].value
                                          for f in dataclasses.fields(training.ClassifierConfig)})
    command = "jaxinv-train-classifier " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    training.train(config, FLAGS.output_dir, command=command, log=lambda line: print(line, flush=True))


def run():
    """The console script jaxinv-train-classifier."""
    cli.run(main)


if __name__ == "__main__":
    run()
