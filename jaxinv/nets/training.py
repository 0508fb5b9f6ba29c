"""Training the cifar-ref reference network on CIFAR-10 (`experiments.train_classifier`).

Recipe (from measurements on a 2-core CPU): AdamW with a one-cycle learning rate peaking at 2e-3,
label smoothing 0.1, batch 128, random 32x32 crops of the 4-pixel zero-padded image and horizontal
flips. Resumable: an orbax checkpoint is written after every epoch under OUTPUT_DIR/checkpoints and
a restarted run continues after the last one (same config, same result: the shuffling and
augmentation of each epoch are seeded by (seed, epoch)).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv.io import arguments, checkpoints, datasets, paths
from jaxinv.io import progress as bars
from jaxinv.nets import cifar10, model as net_model, tables

ARCH = "cifar-ref"
PAD = 4


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = 12  # the one-cycle schedule spans all of them
    batch_size: int = 128
    learning_rate: float = 2e-3  # peak of the one-cycle schedule
    weight_decay: float = 5e-4  # AdamW decoupled weight decay
    label_smoothing: float = 0.1
    seed: int = 0  # initialisation, shuffling and augmentation
    data_dir: str | None = None  # the data folder holding cifar10/ (default: jaxinv.io.images.data_root)
    init_from: str | None = None  # a network directory to fine-tune (its params and input convention)
    max_train_images: int | None = None  # only N evenly spaced training images (smoke tests)
    max_test_images: int | None = None  # evaluate on only N evenly spaced test images

    def __post_init__(self):
        arguments.check_count("epochs", self.epochs)
        arguments.check_count("batch_size", self.batch_size)
        for name in ("learning_rate",):
            arguments.check_positive(name, getattr(self, name))
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0; got {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing!r}")
        arguments.check_seed(self.seed)
        for name in ("max_train_images", "max_test_images"):
            if getattr(self, name) is not None:
                arguments.check_count(name, getattr(self, name))


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


def make_train_step(model: net_model.Model, optimizer: optax.GradientTransformation, label_smoothing: float):
    def loss_fn(params, x, labels):
        logits = model.apply(params, x, upto="fc8")["fc8"]
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, (logits.argmax(-1) == labels).mean()

    @jax.jit
    def step(params, opt_state, x, labels):
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    return step


def initial_model(config: ClassifierConfig, train_images: np.ndarray):
    """The untrained model (input convention measured on the training images, or the fine-tuned
    network's), its initial params and the network fine-tuned from (or None)."""
    pixels = train_images.reshape(-1, 3).astype(np.float64)
    convention = dict(channel_order="RGB", pixel_range=255.0,
                      mean=pixels.mean(0).round(3).tolist(), std=pixels.std(0).round(3).tolist())
    table = tables.build(ARCH)
    input_size = tables.INPUT_SIZES[ARCH]
    initial = net_model.load(config.init_from) if config.init_from else None
    if initial is not None:
        convention = initial.convention
    model = net_model.Model(arch=ARCH, table=table, params=None, input_size=input_size,
                            convention=convention, class_names=cifar10.CLASS_NAMES)
    params = (jax.tree.map(jnp.asarray, initial.params) if initial is not None
              else tables.init_params(table, jax.random.PRNGKey(config.seed), input_size))
    return model, params, initial


def run_epoch(model, step, state, images, labels, batch_size: int, rng, on_batch=None) -> tuple[dict, float, float]:
    """One shuffled, augmented pass: the new state, mean loss and mean training accuracy (`on_batch()` after
    each batch)."""
    order = rng.permutation(len(labels))
    params, opt_state = state["params"], state["opt_state"]
    losses, accs = [], []
    for i in range(len(labels) // batch_size):
        batch = order[i * batch_size:(i + 1) * batch_size]
        params, opt_state, loss, acc = step(params, opt_state, model.preprocess(augment(images[batch], rng)),
                                            labels[batch])
        losses.append(loss)
        accs.append(acc)
        if on_batch:
            on_batch()
    return dict(state, params=params, opt_state=opt_state), float(np.mean(losses)), float(np.mean(accs))


CONFIG_FILE = "config.json"


def train(config: ClassifierConfig, output_dir: str, *, command: str = "",
          log: Callable[[str], None] = print) -> net_model.Model:
    """Trains (or resumes training) and writes the network directory `output_dir`; returns the model. The run
    holds `output_dir`'s lock (`io.paths`: a second run there is refused), and a run resuming checkpoints made
    with another configuration (OUTPUT_DIR/config.json; only `epochs` may change, to train on) is refused before
    it trains."""
    with paths.lock_folder(output_dir, replaced=True):
        settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("data_dir", "epochs")}
        checkpoints.check_fingerprint(output_dir, settings, "a training run with another configuration",
                                      CONFIG_FILE)
        return _train(config, output_dir, command=command, log=log)


def _train(config: ClassifierConfig, output_dir: str, *, command: str, log: Callable[[str], None]) -> net_model.Model:
    data = cifar10.load(config.data_dir)
    train_images, train_labels = subset(data["train_images"], data["train_labels"], config.max_train_images)
    test_images, test_labels = subset(data["test_images"], data["test_labels"], config.max_test_images)
    model, params, initial = initial_model(config, train_images)
    schedule = optax.cosine_onecycle_schedule(config.epochs * (len(train_labels) // config.batch_size),
                                              config.learning_rate)
    optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)
    state = {"params": params, "opt_state": optimizer.init(params), "seconds": jnp.zeros((), jnp.float32)}
    run_checkpoints = checkpoints.RunCheckpoints(os.path.join(output_dir, "checkpoints"))
    first_epoch = run_checkpoints.latest_step() or 0
    if first_epoch:
        state = run_checkpoints.restore(state)
        log(f"resuming after epoch {first_epoch} from {run_checkpoints.directory}")
    step = make_train_step(model, optimizer, config.label_smoothing)
    per_epoch = len(train_labels) // config.batch_size
    batches_bar = bars.bar(config.epochs * per_epoch, "batches", "batch", enabled=bars.wanted(None),
                           initial=first_epoch * per_epoch)
    for epoch in range(first_epoch, config.epochs):
        start = time.time()
        state, loss, acc = run_epoch(model, step, state, train_images, train_labels, config.batch_size,
                                     np.random.default_rng([config.seed, epoch]), on_batch=batches_bar.update)
        model.params = state["params"]
        test_accuracy = cifar10.accuracy(model, test_images, test_labels)
        seconds = time.time() - start
        state["seconds"] = state["seconds"] + seconds
        run_checkpoints.save(epoch + 1, state)
        log(f"epoch {epoch + 1}/{config.epochs}: loss {loss:.4f} train acc {acc:.4f} test acc {test_accuracy:.4f} "
            f"{seconds:.0f} s")
    batches_bar.close()
    model.params = state["params"]
    test_accuracy = cifar10.accuracy(model, test_images, test_labels)
    net_model.save(output_dir, model, extra_metadata=dict(
        test_accuracy=test_accuracy, test_images=len(test_labels), epochs=config.epochs,
        training_seconds=round(float(state["seconds"]), 1), command=command,
        initialised_from=None if initial is None else initial.metadata,
        recipe=dict(optimizer="adamw one-cycle", learning_rate=config.learning_rate,
                    weight_decay=config.weight_decay, label_smoothing=config.label_smoothing,
                    batch_size=config.batch_size, augmentation="pad-4 random crop + horizontal flip",
                    seed=config.seed)))
    log(f"test accuracy {test_accuracy:.4f} on {len(test_labels)} images; network written to {output_dir}")
    return model

