"""Training a learned inverter: min_W sum_i ||x_i - f(Phi(x_i); W)||^2 over natural images.

The loss is the image-space squared error in the network's output units, mean over pixels, colour
channels and the batch: mean((f(phi) - (x - 128) / 128)^2), i.e. the paper's sum scaled by a
constant (Adam is invariant to it). Adam (beta1 0.9, beta2 0.999); the learning rate (1e-3) is held
for the first `decay_from` of the steps (0 by default) and then decays along a half cosine to
FINAL_RATE_FRACTION (1%) of it at the last step, so the schedule fits the run length.

Model selection: every `validate_every` steps the image error of the validation split (`data`: photos
held out of training, never the test split) is measured (grey for representations of the grey image,
colour otherwise); the best parameters so far are part of the run's state, and the saved inverter holds
them (`selected_step` in its metadata). `patience` > 0 stops the run early after that many validations
without improvement. The validation errors are written to OUTPUT_DIR/validation.json and plotted against
the steps in OUTPUT_DIR/validation.png at every validation.

Features: differentiable ones (HOG, CNN layers) are computed inside the jitted training step from
each fresh batch of crops (HOG of 64 crops of 64x64 costs ~0.15 s against ~0.8-1.8 s for the
step of the default HOG inverter, so precomputing would save at most ~15%, at the price of fewer
distinct crops). Host features (LBP, SIFT through numpy/VLFeat) are computed from each step's fresh
crops on the prefetch thread, while the previous step runs (`pool_size` 0; LBP of 64 crops of 128 px
takes 0.22 s against a 0.64 s step), or come from a fixed pool (`pool_size`) of random crops whose
features are computed once, cached in OUTPUT_DIR/pool.npz (`feature_pool.build`: only the occupied cells, so sparse
SIFT takes 5% of its dense size) and sampled without flips (a flip changes the features); the pool is not
regenerated.

Runs are resumable: an orbax checkpoint of {params, opt_state, step, rng, feature_scale, seconds,
best_params, best_error, best_step, loss_sum, loss_count} is written every `checkpoint_every` steps and
at every validation under OUTPUT_DIR/checkpoints, and a restarted run with the same configuration
(OUTPUT_DIR/config.json) continues from the last one and ends with the same parameters, the same
selected parameters and the same validation history as an uninterrupted run (each step's crops come
from the checkpointed JAX key). A second run on the same OUTPUT_DIR while one is training is refused
(`jaxinv.io.paths.lock_folder`: an flock on OUTPUT_DIR/.lock, released when the process ends, so a
killed run leaves no stale lock).

Data-parallel over several processes (`jaxinv.io.distributed`: `jax.distributed` initialised, every process
calling `train` with the same arguments): one mesh over `jax.devices()`; every process draws the same global
batch (the same crops in the same order as one process would: the host sampling is repeated on each) and feeds
its rows of it (`jax.make_array_from_process_local_data`); the parameters and optimiser state are replicated and
jit averages the gradients across processes (the loss is the mean over the global batch). The batch size must be
a multiple of the number of devices. Process 0 alone takes the lock, reads and writes files (checkpoints,
validation, the saved inverter), validates and evaluates; its state at the start and its validation errors are
broadcast to the others, so every process takes the same steps and stops at the same one.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv.engine import compilation
from jaxinv.io import checkpoints, distributed, outputs
from jaxinv.io import progress as bars
from jaxinv.inverters import architectures, data, feature_pool
from jaxinv.inverters.run_config import TrainConfig
from jaxinv.inverters.validation import VALIDATION_FILE, VALIDATION_PLOT, Validation, plot_validation, read_history
from jaxinv.inverters import features
from jaxinv.inverters import metrics as inverter_metrics
from jaxinv.inverters.model import Inverter, save, to_target

CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"
CALIBRATION_IMAGES = 256
FINAL_RATE_FRACTION = 0.01
# A logged mean loss this many times the lowest so far is reported as a divergence. Seen at 256 px, batch 32,
# learning rate 1e-3: LBP went from 0.27 to 549 at steps 160-220, SIFT from 0.27 to 6.6 near step 850.
DIVERGENCE_FACTOR = 10.0


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """lr held for decay_from * steps, then a half cosine down to FINAL_RATE_FRACTION of it at the last step."""
    hold = int(round(config.decay_from * config.steps))
    decay = optax.cosine_decay_schedule(config.learning_rate, max(config.steps - hold, 1), alpha=FINAL_RATE_FRACTION)
    return optax.join_schedules([optax.constant_schedule(config.learning_rate), decay], [hold])


def make_optimizer() -> optax.GradientTransformation:
    """Adam's moment estimates (beta1 0.9, beta2 0.999); the step multiplies them by -lr, which the
    host passes in from `learning_rate_schedule`, so one compiled step serves every schedule."""
    return optax.scale_by_adam(b1=0.9, b2=0.999)


def make_train_step(table, feature, finetune_encoder: bool = False, mesh=None):
    """Jitted (trainable, opt_state, lr, encoder_params, scale, images, phi) -> (trainable, opt_state, loss).

    phi is None for traceable features (computed in the step from the images, with gradients into
    trainable["encoder"] when fine-tuning); otherwise the precomputed (N, ...) features. With a `mesh` (a
    data-parallel run over several processes) the outputs are replicated over it: the batch comes sharded along
    its first axis and jit inserts the all-reduce of the gradients."""
    optimizer = make_optimizer()

    def loss_fn(trainable, encoder_params, scale, images, phi):
        if phi is None:
            if finetune_encoder:
                phi = features.batched(feature)(trainable["encoder"], images)
            else:
                phi = jax.lax.stop_gradient(features.batched(feature)(encoder_params, images))
        prediction = architectures.apply(table, trainable["decoder"], phi * scale)
        return jnp.mean((prediction - to_target(images)) ** 2)

    # weights are arguments, not constants (XLA would constant-fold them for seconds)
    def step(trainable, opt_state, lr, encoder_params, scale, images, phi):
        loss, grads = jax.value_and_grad(loss_fn)(trainable, encoder_params, scale, images, phi)
        directions, opt_state = optimizer.update(grads, opt_state, trainable)
        updates = jax.tree_util.tree_map(lambda d: -lr * d, directions)
        return optax.apply_updates(trainable, updates), opt_state, loss

    if mesh is None:
        return compilation.jit(step)
    from jax.sharding import NamedSharding, PartitionSpec
    return compilation.jit(step, out_shardings=NamedSharding(mesh, PartitionSpec()))


_STEPS: dict = {}


def cached_train_step(table, feature, finetune_encoder: bool = False, mesh=None):
    """`make_train_step`, compiled once per (representation, architecture, fine-tuning, mesh) in a process:
    resumed or repeated runs reuse it."""
    key = (feature, str([layer.as_dict() for layer in table]), finetune_encoder, mesh)
    if key not in _STEPS:
        _STEPS[key] = make_train_step(table, feature, finetune_encoder, mesh)
    return _STEPS[key]


def new_decoder(feature, image_size: int, width: float, key):
    """(table, family, feature shape, freshly initialised parameters) of the decoder inverting `feature` at
    `image_size` (`architectures.build`: the family follows the feature's shape)."""
    feature_shape = features.feature_shape(feature, image_size)
    family = features.family(feature, image_size)
    table = architectures.build(family, feature_shape, image_size, width)
    return table, family, feature_shape, architectures.init_params(table, key, feature_shape)


def _numpy_rng(key) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                 else np.asarray(key))


def calibrate_feature_scale(feature, source: data.ImageSource, seed: int, encoder_params=None) -> float:
    """1 / RMS of the features of CALIBRATION_IMAGES training crops (drawn with `seed`)."""
    crops = source.sample(np.random.default_rng([seed, 7]), CALIBRATION_IMAGES)
    phi = np.concatenate([features.compute(feature, crops[i:i + 64], encoder_params) for i in range(0, len(crops), 64)])
    rms = float(np.sqrt(np.mean(np.square(phi, dtype=np.float64))))
    if not np.isfinite(rms) or rms <= 0:
        raise ValueError(f"features of {feature.name!r} on training crops are all zero or non-finite: cannot scale them")
    return 1.0 / rms


def _check_config(output_dir: str, config: TrainConfig) -> None:
    checkpoints.check_fingerprint(output_dir, dataclasses.asdict(config), "a training run with another configuration",
                                  CONFIG_FILE)


def evaluate(inverter: Inverter, source: data.ImageSource, num_images: int | None = None) -> dict:
    """Held-out image-space errors (colour, and grey as for grey-only methods) on the test split."""
    test, _ = source.test_images(num_images)
    reconstructions = inverter.invert_images(test)
    return dict(inverter_metrics.colour_and_grey_errors(reconstructions, test), num_test_images=len(test),
                test_split=source.dataset)


def train(config: TrainConfig, output_dir: str, *, images_dir: str | None = None, data_dir: str | None = None,
          eval_images: int | None = None, checkpoint_every: int = 100, log_every: int = 20,
          stop_after: int | None = None, log: Callable[[str], None] = print,
          extra_metadata: dict | None = None) -> Inverter | None:
    """Trains (or resumes) the inverter of `config` in `output_dir`, then evaluates it on the test split
    (`eval_images` of it; None: the default number, 0: no evaluation) and saves it there (`model.load(output_dir)`). `stop_after` ends the run
    after that many steps with a checkpoint and returns None (an interruption, for tests). Under
    `jax.distributed` with several processes: data-parallel (see the module docstring); process 0 evaluates and
    saves, every process returns the trained Inverter (the others' without evaluation, not saved)."""
    feature = features.representation(config.representation, config.image_size)
    if config.finetune_encoder and feature.params is None:
        raise ValueError(f"representation {config.representation!r} has no encoder weights to fine-tune")
    with distributed.lock_folder(output_dir, replaced=True) as output_dir:
        return _train_locked(config, output_dir, feature, images_dir=images_dir, data_dir=data_dir,
                             eval_images=eval_images, checkpoint_every=checkpoint_every, log_every=log_every,
                             stop_after=stop_after, log=log, extra_metadata=extra_metadata)


class _Run(NamedTuple):
    """What a training run needs besides its state: the decoder table, the encoder's fixed weights,
    the checkpoints, the precomputed pool (host features), the compiled step and the validation split."""
    table: list
    family: str
    feature_shape: tuple
    encoder: Any
    manager: checkpoints.RunCheckpoints
    pool: feature_pool.FeaturePool | None
    step_fn: Callable
    validation: "Validation | None"
    processes: distributed.Processes = distributed.Processes()
    parallel: "distributed.DataParallel | None" = None


def _train_locked(config: TrainConfig, output_dir: str, feature, *, images_dir, data_dir, eval_images,
                  checkpoint_every, log_every, stop_after, log, extra_metadata) -> Inverter | None:
    processes = distributed.current()
    processes.agree(lambda: _check_config(output_dir, config))
    source = data.ImageSource(config.dataset_name, config.image_size, images_dir=images_dir, data_dir=data_dir,
                              max_train_images=config.max_train_images, crops=config.crops,
                              min_crop_scale=config.min_crop_scale, validation_images=config.validation_images,
                              cifar10_fraction=config.cifar10_fraction)
    run, state = _start(config, output_dir, feature, source, log)
    trained = _loop(config, output_dir, feature, source, run, state, checkpoint_every, log_every, stop_after, log)
    if trained is None:
        return None
    params, scale, seconds, done, selection = trained
    params = distributed.local_copy(params)
    inverter = Inverter(representation=config.representation, image_size=config.image_size, family=run.family,
                        feature_shape=run.feature_shape, width=config.width, params=params,
                        feature_scale=float(scale), metadata={})
    if not processes.primary:
        return inverter  # process 0 evaluates and saves
    held_out = None if eval_images == 0 else evaluate(inverter, source, eval_images or data.DEFAULT_TEST_IMAGES[source.dataset])
    inverter.metadata = dict(extra_metadata or {}, steps=config.steps, steps_run=done,
                             training_seconds=round(seconds, 1), held_out=held_out, validation=selection,
                             selected_step=selection["best_step"] if selection else done,
                             num_train_images=source.num_train, config=dataclasses.asdict(config),
                             decoder_parameters=architectures.num_params(params["decoder"]),
                             table=[layer.as_dict() for layer in run.table])
    save(output_dir, inverter)
    chosen = (f"the best validation step {selection['best_step']} of {done}" if selection else f"step {done}")
    if held_out is None:
        log(f"inverter ({chosen}) written to {output_dir} (no held-out evaluation: eval_images=0)")
    else:
        log(f"held-out image error {held_out['image_error']:.3f} (grey {held_out['image_error_grey']:.3f}) on "
            f"{held_out['num_test_images']} {source.dataset} test images at {chosen}; inverter written to {output_dir}")
    return inverter


def _start(config: TrainConfig, output_dir: str, feature, source, log) -> tuple[_Run, dict]:
    """The decoder, a fresh state (feature scale calibrated) or the latest checkpoint's, the pool and the step."""
    init_key, data_key = jax.random.split(jax.random.PRNGKey(config.seed))
    table, family, feature_shape, decoder_params = new_decoder(feature, config.image_size, config.width, init_key)
    if not feature.traceable and config.pool_size:  # before the calibration computes the crops' features
        feature_pool.check_pool_fits(config, feature_shape, feature_pool.physical_memory_bytes(), cell_fraction=0.0)
    # Fresh and restored arrays alike uncommitted: otherwise the step would compile a second time.
    encoder = checkpoints.uncommitted(feature.params)
    trainable = {"decoder": decoder_params}
    if config.finetune_encoder:
        trainable["encoder"] = encoder
    zero = lambda dtype=jnp.float32: jnp.zeros((), dtype)
    state = {"params": trainable, "opt_state": make_optimizer().init(trainable), "step": zero(jnp.int32),
             "rng": data_key, "feature_scale": zero(), "seconds": zero(),
             "best_params": trainable, "best_error": jnp.asarray(np.inf, jnp.float32), "best_step": zero(jnp.int32),
             "loss_sum": zero(), "loss_count": zero(jnp.int32)}
    processes = distributed.current()
    manager = None
    if processes.primary:  # process 0 reads and writes the checkpoints; the others get its state
        manager = checkpoints.RunCheckpoints(os.path.join(output_dir, CHECKPOINTS_DIR))
        if manager.latest_step() is not None:
            state = manager.restore(state)
            log(f"resuming at step {int(state['step'])} from {manager.directory}")
        else:
            scale = calibrate_feature_scale(feature, source, config.seed, encoder)
            state["feature_scale"] = jnp.asarray(scale, jnp.float32)
    parallel = None
    if processes.several:
        parallel = distributed.DataParallel(config.batch_size)
        state = checkpoints.uncommitted(processes.broadcast(state))
        for name in ("params", "opt_state", "best_params", "feature_scale"):  # the step's replicated arguments
            state[name] = parallel.replicate(state[name])
        encoder = parallel.replicate(encoder)
    pool = None
    if not feature.traceable:  # process 0 makes (or reads) the pool file, then the others read it
        pool = processes.agree(lambda: feature_pool.build(config, feature, source, output_dir, log))
        pool = pool if processes.primary else feature_pool.build(config, feature, source, output_dir, log)
    validation = Validation(config, feature, source, family, feature_shape, compute=processes.primary)
    log(f"{config.representation} inverter ({family} family, features {feature_shape}, "
        f"{architectures.num_params(state['params']['decoder']):,} decoder parameters) on {source.dataset} "
        f"{config.image_size}x{config.image_size} ({source.num_train} training images, "
        f"{config.crops if source.dataset == 'imagenet' else 'flipped'} crops; {len(validation)} validation images), "
        f"batch {config.batch_size}, steps {int(state['step'])}/{config.steps}")
    step_fn = cached_train_step(table, feature, config.finetune_encoder, parallel and parallel.mesh)
    return _Run(table, family, feature_shape, encoder, manager, pool, step_fn, validation if len(validation) else None,
                processes, parallel), state


def _batch(run: _Run, feature, source, rng: np.random.Generator, batch_size: int):
    """Training images and their features (None: computed inside the step) for one step."""
    if run.pool is not None:
        return run.pool.batch(rng.integers(0, len(run.pool), batch_size))
    images = source.sample(rng, batch_size)
    return images, None if feature.traceable else features.compute(feature, images)


def _validate(config: TrainConfig, output_dir: str, run: _Run, state: dict, done: int, history: list[dict],
              log) -> dict:
    """Validation at step `done`: the errors appended to `history` (written with its plot); the state's best
    parameters, error and step updated; the training-loss accumulator reset."""
    # Process 0 validates (on its own copy of the parameters); every process takes its errors, exactly.
    errors = run.processes.agree(lambda: run.validation.errors(
        distributed.local_copy(state["params"]), distributed.local_copy(state["feature_scale"])), share=True)
    count = int(state["loss_count"])
    train_loss = float(state["loss_sum"]) / max(count, 1)
    entry = dict(step=done, **errors, train_loss=train_loss, train_rms=128 * float(np.sqrt(train_loss)),
                 learning_rate=float(learning_rate_schedule(config)(done - 1)), seconds=round(float(state["seconds"]), 1))
    history.append(entry)
    value = errors[run.validation.metric]
    if value < float(state["best_error"]):
        state = dict(state, best_params=state["params"], best_error=jnp.asarray(value, jnp.float32),
                     best_step=jnp.asarray(done, jnp.int32))
    state = dict(state, loss_sum=jnp.zeros((), jnp.float32), loss_count=jnp.zeros((), jnp.int32))
    if not run.processes.primary:
        return state
    outputs.write_json(os.path.join(output_dir, VALIDATION_FILE),
                       {"metric": run.validation.metric, "images": run.validation.names, "history": history})
    plot_validation(history, os.path.join(output_dir, VALIDATION_PLOT), run.validation.metric,
                    f"{config.representation} inverter, {config.image_size}x{config.image_size}, width {config.width}, "
                    f"{config.steps} steps ({len(run.validation)} validation images)")
    log(f"validation at step {done}: {run.validation.metric} {value:.4f} (best {float(state['best_error']):.4f} "
        f"at step {int(state['best_step'])})")
    return state


def _loop(config: TrainConfig, output_dir: str, feature, source, run: _Run, state: dict, checkpoint_every: int,
          log_every: int, stop_after: int | None, log):
    """Steps from the state's to config.steps (or an early stop) with progress, validations and checkpoints:
    (selected params, scale, seconds, steps run, selection record), or None when stopped after `stop_after` steps."""
    schedule = learning_rate_schedule(config)
    params, opt_state, key = state["params"], state["opt_state"], state["rng"]
    scale, seconds_before, run_start = state["feature_scale"], float(state["seconds"]), time.perf_counter()
    encoder_params = None if config.finetune_encoder else run.encoder
    first = int(state["step"])
    history = [h for h in read_history(output_dir) if h["step"] <= first] if run.validation else []
    patience_steps = config.patience * config.validate_every
    window, window_start, last = [], time.perf_counter(), first
    lowest, warned = np.inf, False  # the lowest logged mean loss; a divergence is reported once
    loss_sum, loss_count = state["loss_sum"], state["loss_count"]
    done = first
    steps_bar = bars.bar(config.steps, "steps", "step", enabled=bars.wanted(None), initial=first)
    # The next step's crops are made on a thread while this step runs (PIL's resize releases the GIL); the
    # key sequence, and so every batch, is the one a loop without prefetching would draw.
    loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inverter-batches")

    def prefetch(key_before):  # (the key after this step's split, the future batch)
        key_after, sub = jax.random.split(key_before)
        return key_after, loader.submit(_batch, run, feature, source, _numpy_rng(sub), config.batch_size)

    with loader:  # on any exit: waits for the one batch in flight
        if first < config.steps:
            key_next, pending = prefetch(key)
        for t in range(first, config.steps):
            if run.validation and patience_steps and t - int(state["best_step"]) >= patience_steps and t > 0:
                log(f"stopping early at step {t}: no better validation error in {config.patience} validations "
                    f"(best at step {int(state['best_step'])})")
                break
            images, phi = pending.result()
            key = key_next
            if t + 1 < config.steps:
                key_next, pending = prefetch(key)
            if run.parallel:  # each process feeds its rows of the global batch
                images, phi = run.parallel.batch(images), run.parallel.batch(phi)
            params, opt_state, loss = run.step_fn(params, opt_state, np.float32(schedule(t)), encoder_params, scale,
                                                  images, phi)
            loss = distributed.local_copy(loss)
            loss_sum, loss_count = loss_sum + loss, loss_count + 1
            window.append(loss)
            done = t + 1
            steps_bar.update()
            if done % log_every == 0 or done == config.steps:
                elapsed = time.perf_counter() - window_start
                mean_loss = float(np.mean(np.asarray(window)))
                rate = (done - last) * config.batch_size / elapsed
                eta = (config.steps - done) * config.batch_size / rate
                log(f"step {done}/{config.steps}: loss {mean_loss:.5f} (RMS error {128 * np.sqrt(mean_loss):.1f} grey levels) "
                    f"{rate:.1f} images/s, ETA {eta / 60:.1f} min")
                if not warned and not mean_loss <= DIVERGENCE_FACTOR * lowest:
                    warned = True
                    log(f"warning: the training loss rose from {lowest:.5f} to {mean_loss:.5f}: the run is diverging "
                        f"(the saved inverter keeps the best validation step); a lower learning rate "
                        f"({config.learning_rate:g} now) avoids it")
                lowest = min(lowest, mean_loss)
                window, window_start, last = [], time.perf_counter(), done
            seconds = seconds_before + time.perf_counter() - run_start
            state = dict(state, params=params, opt_state=opt_state, step=jnp.asarray(done, jnp.int32), rng=key,
                         seconds=jnp.asarray(seconds, jnp.float32), loss_sum=loss_sum, loss_count=loss_count)
            validating = run.validation is not None and (done % config.validate_every == 0 or done == config.steps)
            if validating:
                state = _validate(config, output_dir, run, state, done, history, log)
                loss_sum, loss_count = state["loss_sum"], state["loss_count"]
            if (validating or done % checkpoint_every == 0 or done == config.steps or done == stop_after) and run.manager:
                run.manager.save(done, distributed.local_copy(state))
            if done == stop_after:
                steps_bar.close()
                log(f"stopped after step {done} (checkpoint in {os.path.join(output_dir, CHECKPOINTS_DIR)})")
                return None
    steps_bar.close()
    seconds = seconds_before + time.perf_counter() - run_start
    if run.validation is None:
        return params, scale, seconds, done, None
    selection = dict(metric=run.validation.metric, num_images=len(run.validation),
                     best_step=int(state["best_step"]), best_error=float(state["best_error"]),
                     validate_every=config.validate_every, stopped_early=done < config.steps,
                     history=VALIDATION_FILE, plot=VALIDATION_PLOT)
    return state["best_params"], scale, seconds, done, selection
