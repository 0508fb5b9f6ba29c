"""Trains a learned inverter f(phi; W) of a representation (Dosovitskiy & Brox, CVPR 2016).

    jaxinv-train-inverter --representation=hog            # 64x64, ~30 min on 2 CPU cores
    jaxinv-train-inverter --representation=cifar-ref:pool2
    jaxinv-train-inverter --representation=cifar-ref:fc8 --finetune_encoder

Unset --size/--width/--steps/--pool_size take `jaxinv.inverters.training.default_settings` (reduced
sizes on CPU, larger ones on an accelerator). Data: random crops of the first 450 ImageNet samples
(the last 50 sorted files are the test split), or CIFAR-10 for cifar-ref layers. Writes the inverter
to --output_dir (default ~/.cache/jaxinv/inverters/<representation>-<size>[-finetuned], see
`jaxinv.inverters.default_dir`): metadata.json (configuration, held-out image error, training time)
and params/; checkpoints go to OUTPUT_DIR/checkpoints every --checkpoint_every steps and a restarted
run with the same flags resumes from the last one.
"""
from __future__ import annotations

import shlex
import sys

import jax
from absl import flags

from jaxinv import inverters
from jaxinv.io import cli
from jaxinv.inverters import training

flags.DEFINE_string("representation", "hog", "hog, lbp, sift or NET:LAYER (e.g. cifar-ref:pool2)")
flags.DEFINE_integer("size", None, "image size (square); default: by representation and backend")
flags.DEFINE_float("width", None, "channel width multiplier of the paper's architecture")
flags.DEFINE_integer("steps", None, "training steps")
flags.DEFINE_integer("batch_size", 64, "images per step")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (decayed over the last 30% of the steps)")
cli.define_seed("seed of initialisation and data sampling")
flags.DEFINE_bool("finetune_encoder", False, "train the CNN encoder jointly (autoencoder comparison)")
flags.DEFINE_integer("pool_size", None, "fixed pool of crops with precomputed features (0: fresh crops each step)")
flags.DEFINE_enum("dataset", None, ["imagenet", "cifar10"], "training/test images (default: cifar10 for cifar-ref)")
cli.define_output_dir(None, "where the inverter goes (default: jaxinv.inverters.default_dir)")
cli.define_images_dir()
cli.define_data_dir()
flags.DEFINE_integer("max_train_images", None, "use only N evenly spaced training images (smoke tests)")
flags.DEFINE_integer("eval_images", None, "held-out images to evaluate on (default: 50 ImageNet / 1000 CIFAR-10)")
flags.DEFINE_integer("checkpoint_every", 100, "steps between checkpoints")
flags.DEFINE_integer("log_every", 20, "steps between progress lines")
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    settings = training.default_settings(FLAGS.representation)
    for flag, key in (("size", "image_size"), ("width", "width"), ("steps", "steps"), ("pool_size", "pool_size")):
        if getattr(FLAGS, flag) is not None:
            settings[key] = getattr(FLAGS, flag)
    config = inverters.TrainConfig(representation=FLAGS.representation, batch_size=FLAGS.batch_size,
                                   learning_rate=FLAGS.learning_rate, seed=FLAGS.seed,
                                   finetune_encoder=FLAGS.finetune_encoder, dataset=FLAGS.dataset,
                                   max_train_images=FLAGS.max_train_images, **settings)
    output_dir = FLAGS.output_dir or inverters.default_dir(config.representation, config.image_size,
                                                           config.finetune_encoder)
    print(f"jax {jax.__version__} on {jax.default_backend()}; output {output_dir}", flush=True)
    command = "jaxinv-train-inverter " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    inverters.train(config, output_dir, images_dir=FLAGS.images_dir, data_dir=FLAGS.data_dir,
                    eval_images=FLAGS.eval_images, checkpoint_every=FLAGS.checkpoint_every,
                    log_every=FLAGS.log_every, log=lambda line: print(line, flush=True),
                    extra_metadata=dict(command=command, backend=jax.default_backend()))


def run():
    """The console script jaxinv-train-inverter."""
    cli.run(main)


if __name__ == "__main__":
    run()
