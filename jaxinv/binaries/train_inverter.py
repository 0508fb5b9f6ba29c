"""Trains a learned inverter f(phi; W) of a representation (Dosovitskiy & Brox, CVPR 2016).

    jaxinv-train-inverter --representation=hog            # 64x64, ~30 min on 2 CPU cores
    jaxinv-train-inverter --representation=cifar-ref:pool2
    jaxinv-train-inverter --representation=cifar-ref:fc8 --finetune_encoder

Unset --size/--width/--steps/--pool_size/--cifar10_fraction take `jaxinv.inverters.run_config.default_settings`
(reduced sizes on CPU, larger ones on an accelerator). Data (`jaxinv.inverters.data`): random multiscale crops
of 400 ImageNet samples (the last 50 sorted files are the test split, 50 others the validation split that
selects the saved step), with --cifar10_fraction of each batch from CIFAR-10's training images, or CIFAR-10
alone for cifar-ref layers. Writes the inverter
to --output_dir (default ~/.cache/jaxinv/inverters/<representation>-<size>[-finetuned], see
`jaxinv.inverters.default_dir`): metadata.json (configuration, held-out image error, training time)
and params/; validation.json and validation.png (validation error against steps) at every validation;
checkpoints go to OUTPUT_DIR/checkpoints every --checkpoint_every steps and at every validation, and a
restarted run with the same flags resumes from the last one.

Several processes or hosts (--coordinator_address, --num_processes, --process_id or their $JAX_*
variables, or --distributed; see docs/scaling.md and `jaxinv.io.distributed`) train data-parallel: the
same global batch split across them, gradients averaged; process 0 writes every file.
"""
from __future__ import annotations

import shlex
import sys

import jax
from absl import flags

from jaxinv import inverters
from jaxinv.io import cli, distributed
from jaxinv.inverters import run_config

flags.DEFINE_string("representation", "hog", "hog, lbp, sift or NET:LAYER (e.g. cifar-ref:pool2)")
flags.DEFINE_integer("size", None, "image size (square); default: by representation and backend")
flags.DEFINE_float("width", None, "channel width multiplier of the paper's architecture")
flags.DEFINE_integer("steps", None, "training steps")
flags.DEFINE_integer("batch_size", 64, "images per step")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (a half cosine to 1% of it over the run)")
cli.define_seed("seed of initialisation and data sampling")
flags.DEFINE_bool("finetune_encoder", False, "train the CNN encoder jointly (autoencoder comparison)")
flags.DEFINE_integer("pool_size", None, "fixed pool of crops with precomputed features (0: fresh crops each step)")
flags.DEFINE_enum("dataset", None, ["imagenet", "cifar10"], "training/test images (default: cifar10 for cifar-ref)")
cli.define_output_dir(None, "where the inverter goes (default: jaxinv.inverters.default_dir)")
cli.define_images_dir()
cli.define_data_dir()
flags.DEFINE_integer("max_train_images", None, "use only N evenly spaced training images (smoke tests)")
flags.DEFINE_enum("crops", "multiscale", ["multiscale", "thumbnail"], "ImageNet training crops: random scale, "
                  "position and flip of the full photos, or windows of 72/64-reduced thumbnails (jaxinv.inverters.data)")
flags.DEFINE_float("min_crop_scale", 0.5, "multiscale crops: the smallest crop side, as a fraction of the shorter side")
flags.DEFINE_float("cifar10_fraction", None, "share of each ImageNet training batch drawn from CIFAR-10's 50,000 "
                   "training images, resized (default: run_config.default_settings; 0 for none)")
flags.DEFINE_integer("validation_images", None, "training images held out for model selection (default: 50 "
                     "ImageNet / 500 CIFAR-10; 0: none, the last step is kept)")
flags.DEFINE_integer("validate_every", 100, "steps between validations (each also checkpoints)")
flags.DEFINE_integer("patience", 0, "stop after this many validations without improvement (0: never)")
flags.DEFINE_integer("eval_images", None, "held-out images to evaluate on (default: 50 ImageNet / 1000 CIFAR-10)")
flags.DEFINE_integer("checkpoint_every", 100, "steps between checkpoints")
flags.DEFINE_integer("log_every", 20, "steps between progress lines")
distributed.define_flags()
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    settings = run_config.default_settings(FLAGS.representation)
    for flag, key in (("size", "image_size"), ("width", "width"), ("steps", "steps"), ("pool_size", "pool_size"),
                      ("cifar10_fraction", "cifar10_fraction")):
        if getattr(FLAGS, flag) is not None:
            settings[key] = getattr(FLAGS, flag)
    config = inverters.TrainConfig(representation=FLAGS.representation, batch_size=FLAGS.batch_size,
                                   learning_rate=FLAGS.learning_rate, seed=FLAGS.seed,
                                   finetune_encoder=FLAGS.finetune_encoder, dataset=FLAGS.dataset,
                                   max_train_images=FLAGS.max_train_images, crops=FLAGS.crops,
                                   min_crop_scale=FLAGS.min_crop_scale, validation_images=FLAGS.validation_images,
                                   validate_every=FLAGS.validate_every, patience=FLAGS.patience, **settings)
    output_dir = FLAGS.output_dir or inverters.default_dir(config.representation, config.image_size,
                                                           config.finetune_encoder)
    processes = distributed.current()
    prefix = processes.prefix()
    shared = f", {processes.count} processes ({jax.device_count()} devices)" if processes.several else ""
    print(f"{prefix}jax {jax.__version__} on {jax.default_backend()}{shared}; output {output_dir}", flush=True)
    command = "jaxinv-train-inverter " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    inverters.train(config, output_dir, images_dir=FLAGS.images_dir, data_dir=FLAGS.data_dir,
                    eval_images=FLAGS.eval_images, checkpoint_every=FLAGS.checkpoint_every,
                    log_every=FLAGS.log_every, log=lambda line: print(prefix + line, flush=True),
                    extra_metadata=dict(command=command, backend=jax.default_backend()))


def run():
    """The console script jaxinv-train-inverter."""
    cli.run(main)


if __name__ == "__main__":
    run()
