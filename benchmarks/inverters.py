"""Inference speed of a learned inverter: images per second at batch 64 (jit, warm, median).

    python -m benchmarks.inverters [--representation=hog] [--inverter_dir=DIR] [--repeats=10] [--crop_sizes=64,256]

Times the decoder alone (features -> images) and the whole `invert_images` (features of the
images, then the decoder), then the host's side of training: a batch of multiscale training crops made by
`ImageSource.sample` (resized in one thread per CPU) against the same crops one after another in one thread. Without an inverter in --inverter_dir (default
`jaxinv.inverters.trained_or_shipped_dir(representation, size)`: the trained one, else the shipped
one) it times a randomly initialised inverter of the default architecture
(`run_config.default_settings`), and says so.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from absl import flags

from benchmarks import timing
from benchmarks.timing import crop_rates, median_seconds
from jaxinv import inverters
from jaxinv.io import images
from jaxinv.inverters import features as inverter_features
from jaxinv.inverters import run_config, training

FLAGS = flags.FLAGS
flags.DEFINE_string("representation", "hog", "hog, lbp, sift or NET:LAYER")
flags.DEFINE_string("inverter_dir", None, "trained inverter (default: the trained one in the cache, else the shipped one)")
flags.DEFINE_integer("batch_size", 64, "images per call")
flags.DEFINE_integer("repeats", 10, "timed calls (median reported)")
flags.DEFINE_list("crop_sizes", None, "image sizes of the training-crop timing (default: the inverter's)")
flags.register_validator("crop_sizes", lambda sizes: sizes is None or all(s.isdigit() and int(s) > 0 for s in sizes),
                         "--crop_sizes must be positive integers")


def random_inverter(representation: str) -> inverters.Inverter:
    settings = run_config.default_settings(representation)
    feature = inverter_features.representation(representation, settings["image_size"])
    _, family, shape, params = training.new_decoder(feature, settings["image_size"], settings["width"],
                                                    jax.random.PRNGKey(0))
    return inverters.Inverter(representation, settings["image_size"], family, shape, settings["width"],
                              {"decoder": params}, 1.0)


def main(argv):
    del argv
    size = run_config.default_settings(FLAGS.representation)["image_size"]
    directory = FLAGS.inverter_dir or inverters.trained_or_shipped_dir(FLAGS.representation, size)
    if os.path.isfile(os.path.join(directory, "metadata.json")):
        inverter = inverters.load(directory)
        which = f"trained inverter {directory} ({inverter.metadata.get('steps')} steps)"
    else:
        inverter = random_inverter(FLAGS.representation)
        which = f"RANDOMLY INITIALISED inverter of the default architecture (no trained one in {directory})"
    s = inverter.image_size
    batch = np.stack([images.load_sample_image(size=s)] * FLAGS.batch_size)
    batch += np.random.default_rng(0).uniform(-10, 10, batch.shape).astype(np.float32)
    phi = inverter.features(batch)
    print(f"{FLAGS.representation}: {which}")
    print(f"{inverter.family} family, width {inverter.width}, features {inverter.feature_shape} -> {s}x{s}x3, "
          f"batch {FLAGS.batch_size}, median of {FLAGS.repeats}, jax {jax.__version__} on {jax.default_backend()}")
    for name, fn, arg in (("decoder (features -> images)", inverter, phi),
                          ("invert_images (Phi + decoder)", inverter.invert_images, batch)):
        seconds = median_seconds(fn, arg, repeats=FLAGS.repeats)
        print(f"{name:32s} {1e3 * seconds:9.1f} ms/batch {FLAGS.batch_size / seconds:9.1f} images/s")
    for size in FLAGS.crop_sizes or [s]:
        print_crop_rates(int(size))


def print_crop_rates(size: int) -> None:
    """Training crops per second at `size`: `ImageSource.sample` against its one-thread path (`threads=False`)."""
    rates = crop_rates(size, FLAGS.batch_size, FLAGS.repeats)
    if rates is None:
        print("training crops: skipped (no ImageNet samples; see jaxinv.io.images.data_root)")
        return
    print(f"training crops at {size}x{size}: {rates['one thread']:.0f} images/s (one thread), {rates['threads']:.0f} "
          f"images/s ({os.cpu_count()} threads): {rates['threads'] / rates['one thread']:.2f}x")


if __name__ == "__main__":
    timing.run(main)
