"""Trains the cifar-ref reference network on CIFAR-10 and writes it as a jaxinv network directory.

    python -m experiments.train_classifier --output_dir=outputs/cifar-ref

Recipe (from measurements on a 2-core CPU): AdamW with a one-cycle learning rate peaking at 2e-3,
label smoothing 0.1, batch 128, random 32x32 crops of the 4-pixel zero-padded image and horizontal
flips. Resumable: an orbax checkpoint is written after every epoch under --output_dir/checkpoints
and a restarted run continues after the last one (same flags, same result: the shuffling and
augmentation of each epoch are seeded by (seed, epoch)).
"""
from __future__ import annotations

import os
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import flags

from jaxinv import nets
from jaxinv.io import cli, datasets
from jaxinv.nets import cifar10
from jaxinv.nets.tables import INPUT_SIZES

flags.DEFINE_integer("epochs", 12, "training epochs (the one-cycle schedule spans all of them)")
flags.DEFINE_integer("batch_size", 128, "training batch size")
flags.DEFINE_float("learning_rate", 2e-3, "peak learning rate of the one-cycle schedule")
flags.DEFINE_float("weight_decay", 5e-4, "AdamW decoupled weight decay")
flags.DEFINE_float("label_smoothing", 0.1, "label smoothing of the cross-entropy targets")
flags.DEFINE_integer("seed", 0, "seed of initialisation, shuffling and augmentation")
flags.DEFINE_string("output_dir", "outputs/cifar-ref", "where the trained network and checkpoints go")
flags.DEFINE_string("data_dir", None, "shared data folder holding cifar10/ (default: $JAXINV_DATA or ../shared/data)")
flags.DEFINE_string("init_from", None, "start from the parameters (and input convention) of this network "
                    "directory instead of random ones: fine-tuning; its metadata is kept as `initialised_from`")
flags.DEFINE_integer("max_train_images", None, "use only N evenly spaced training images (smoke tests)")
flags.DEFINE_integer("max_test_images", None, "evaluate on only N evenly spaced test images (smoke tests)")
FLAGS = flags.FLAGS

ARCH = "cifar-ref"
PAD = 4


def subset(images: np.ndarray, labels: np.ndarray, limit: int | None):
    """At most `limit` evenly spaced images: the files are sorted by class, so a prefix would hold
    only airplanes."""
    if limit is None or limit >= len(labels):
        return images, labels
    keep = datasets.evenly_spaced(len(labels), limit)
    return images[keep], labels[keep]


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 32x32 crops of the zero-padded images, each flipped left-right with probability 1/2."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
    dy, dx = rng.integers(0, 2 * PAD + 1, n), rng.integers(0, 2 * PAD + 1, n)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    flip = rng.random(n) < 0.5
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def make_train_step(model: nets.Model, optimizer: optax.GradientTransformation):
    def loss_fn(params, x, labels):
        logits = model.apply(params, x, upto="fc8")["fc8"]
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), FLAGS.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, (logits.argmax(-1) == labels).mean()

    @jax.jit
    def step(params, opt_state, x, labels):
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    return step


def main(argv):
    del argv
    data = cifar10.load(FLAGS.data_dir)
    train_images, train_labels = subset(data["train_images"], data["train_labels"], FLAGS.max_train_images)
    test_images, test_labels = subset(data["test_images"], data["test_labels"], FLAGS.max_test_images)
    pixels = train_images.reshape(-1, 3).astype(np.float64)
    convention = dict(channel_order="RGB", pixel_range=255.0,
                      mean=pixels.mean(0).round(3).tolist(), std=pixels.std(0).round(3).tolist())
    table = nets.build(ARCH)
    input_size = INPUT_SIZES[ARCH]
    initial = nets.load(FLAGS.init_from) if FLAGS.init_from else None
    if initial is not None:
        convention = initial.convention
    model = nets.Model(arch=ARCH, table=table, params=None, input_size=input_size,
                       convention=convention, class_names=cifar10.CLASS_NAMES)

    steps_per_epoch = len(train_labels) // FLAGS.batch_size
    schedule = optax.cosine_onecycle_schedule(FLAGS.epochs * steps_per_epoch, FLAGS.learning_rate)
    optimizer = optax.adamw(schedule, weight_decay=FLAGS.weight_decay)
    params = (jax.tree.map(jnp.asarray, initial.params) if initial is not None
              else nets.init_params(table, jax.random.PRNGKey(FLAGS.seed), input_size))
    state = {"params": params, "opt_state": optimizer.init(params), "seconds": jnp.zeros((), jnp.float32)}

    checkpoints = ocp.CheckpointManager(os.path.abspath(os.path.join(FLAGS.output_dir, "checkpoints")),
                                        options=ocp.CheckpointManagerOptions(max_to_keep=2))
    first_epoch = 0
    if checkpoints.latest_step() is not None:
        first_epoch = checkpoints.latest_step()
        state = checkpoints.restore(first_epoch, args=ocp.args.StandardRestore(state))
        print(f"resuming after epoch {first_epoch} from {checkpoints.directory}", flush=True)

    step = make_train_step(model, optimizer)
    for epoch in range(first_epoch, FLAGS.epochs):
        start = time.time()
        rng = np.random.default_rng([FLAGS.seed, epoch])
        order = rng.permutation(len(train_labels))
        params, opt_state = state["params"], state["opt_state"]
        losses, accs = [], []
        for i in range(steps_per_epoch):
            batch = order[i * FLAGS.batch_size:(i + 1) * FLAGS.batch_size]
            x = model.preprocess(augment(train_images[batch], rng))
            params, opt_state, loss, acc = step(params, opt_state, x, train_labels[batch])
            losses.append(loss)
            accs.append(acc)
        model.params = params
        test_accuracy = cifar10.accuracy(model, test_images, test_labels)
        seconds = time.time() - start
        state = {"params": params, "opt_state": opt_state, "seconds": state["seconds"] + seconds}
        checkpoints.save(epoch + 1, args=ocp.args.StandardSave(state))
        checkpoints.wait_until_finished()
        print(f"epoch {epoch + 1}/{FLAGS.epochs}: loss {float(np.mean(losses)):.4f} "
              f"train acc {float(np.mean(accs)):.4f} test acc {test_accuracy:.4f} {seconds:.0f} s", flush=True)

    model.params = state["params"]
    test_accuracy = cifar10.accuracy(model, test_images, test_labels)
    command = "python -m experiments.train_classifier " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    nets.save(FLAGS.output_dir, model, extra_metadata=dict(
        test_accuracy=test_accuracy, test_images=len(test_labels), epochs=FLAGS.epochs,
        training_seconds=round(float(state["seconds"]), 1), command=command,
        initialised_from=None if initial is None else initial.metadata,
        recipe=dict(optimizer="adamw one-cycle", learning_rate=FLAGS.learning_rate,
                    weight_decay=FLAGS.weight_decay, label_smoothing=FLAGS.label_smoothing,
                    batch_size=FLAGS.batch_size, augmentation="pad-4 random crop + horizontal flip",
                    seed=FLAGS.seed)))
    print(f"test accuracy {test_accuracy:.4f} on {len(test_labels)} images; network written to {FLAGS.output_dir}")


if __name__ == "__main__":
    cli.run(main)
