"""Absolute times on whatever device JAX finds (made for a GPU or TPU; runs anywhere): the engine's deep-network
step, HOG inversion, and learned-inverter training throughput.

    python -m benchmarks.accelerator             # the full tables (use on an accelerator)
    python -m benchmarks.accelerator --quick     # tiny sizes: checks the script end to end (CPU, tests)
    python -m benchmarks.accelerator --cpu_training   # the training step at the CPU defaults instead

Three tables:
1. The engine's step (`preimage.solve`, value_and_grad of IJCV Eq. 1 + Algorithm 1, no jitter) per
   network case of `benchmarks.nets` (caffe-ref pool5 and fc8 at 227 px, VGG-VD-16 conv5_3 and
   torchvision ResNet-50 layer4 at 224 px; random weights, no PyTorch needed) at 1 and 8 restarts, with
   the compile seconds and the step's temporary memory (XLA buffer assignment).
2. HOG inversion of the built-in sample at 256x256 grey, 300 + 50 iterations, 1 and 8 restarts (the
   paper's CPU figure is about 60 s per inversion).
3. Training throughput of the learned HOG, LBP and SIFT inverters (`--training`) at
   `run_config.ACCELERATOR_DEFAULTS` (256 px, full width, batch 64): the step's GFLOP (XLA's cost analysis),
   images per second of the compiled train step on random batches, and what bounds the default 20,000 steps:
   the steps themselves, the host's fresh crops (`ImageSource.sample`, one thread per CPU) and, for LBP and
   SIFT, the features of their pool (one thread).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import timing
from benchmarks.timing import check_choices, crop_rates, engine_run, inversion_seconds, random_model, step_costs
from jaxinv.engine import preimage
from jaxinv.inverters import features, run_config, training
from jaxinv.io import images
from jaxinv.nets import taps

flags.DEFINE_boolean("quick", False, "tiny sizes and few iterations: checks the script, measures nothing useful")
flags.DEFINE_boolean("cpu_training", False, "time the inverter's training step at the CPU defaults (64 px, width 0.5) "
                     "instead of ACCELERATOR_DEFAULTS")
flags.DEFINE_list("tables", ["networks", "hog", "training"], "which tables to print")
flags.DEFINE_list("training", ["hog", "lbp", "sift"], "representations whose inverter training step to time")
flags.DEFINE_integer("iterations", 10, "timed engine steps per deep-network configuration")
FLAGS = flags.FLAGS

# (name, architecture, input size, layer); torchvision-resnet50 is the converted family's table.
NETWORK_CASES = (("caffe-ref:pool5", "caffe-ref", 227, "pool5"), ("caffe-ref:fc8", "caffe-ref", 227, "fc8"),
                 ("vgg-vd-16:conv5_3", "vgg-vd-16", 224, "conv5_3"),
                 ("resnet-50:layer4", "torchvision-resnet50", 224, "layer4"))
QUICK_NETWORK_CASES = (("cifar-ref:conv3", "cifar-ref", 32, "conv3"), ("cifar-ref:fc8", "cifar-ref", 32, "fc8"))
BATCHES = (1, 8)


def network_rows(cases, batches, iterations: int) -> list[dict]:
    """One row per (case, batch): ms per step and per restart, compile seconds, temporary MiB."""
    rows = []
    for name, arch, size, layer in cases:
        model = random_model(arch, size)
        representation = taps.representation(model, layer)
        problem = preimage.Problem(C=1.0, bound_plus=160.0, jitter=1)
        target = preimage.make_target(representation, problem, images.load_sample_image(size=size))
        for batch in batches:
            seconds, compile_seconds = engine_run(representation, problem, target, size, batch, "scan", iterations)
            temp, _ = step_costs(representation, problem, target, size, batch)
            rows.append(dict(case=name, batch=batch, ms=1e3 * seconds, ms_per_restart=1e3 * seconds / batch,
                             compile_s=compile_seconds, temp_mib=temp / 2 ** 20))
    return rows


def hog_rows(size: int, iterations: int, restarts_list) -> list[dict]:
    """Seconds of a whole HOG inversion (compiled beforehand) per restart count."""
    stages = preimage.default_stages(iterations, max(iterations // 6, 1))
    rows = []
    for restarts in restarts_list:
        first, warm = inversion_seconds("hog", size, stages, restarts)
        rows.append(dict(restarts=restarts, iterations=sum(s.iterations for s in stages), first_s=first, warm_s=warm))
    return rows


def training_throughput(representation: str, settings: dict, batch_size: int, steps: int) -> dict:
    """Images per second of the inverter's compiled train step on random batches (no data loading), its FLOPs
    (XLA's cost analysis), and the host's side: multiscale crops per second (`timing.crop_rates`, the crops of
    fresh batches) and, for host features (LBP, SIFT), seconds per crop of their features (the pool's cost)."""
    size, width = settings["image_size"], settings["width"]
    feature = features.representation(representation, size)
    table, _, _, params = training.new_decoder(feature, size, width, jax.random.PRNGKey(0))
    trainable = {"decoder": params}
    opt_state = training.make_optimizer().init(trainable)
    step = training.make_train_step(table, feature)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (batch_size, size, size, 3)).astype(np.float32)
    start = time.perf_counter()
    phi = None if feature.traceable else features.compute(feature, batch)
    feature_s = None if feature.traceable else (time.perf_counter() - start) / batch_size
    lr, scale = jnp.float32(1e-4), jnp.float32(1.0)
    start = time.perf_counter()
    compiled = step.lower(trainable, opt_state, lr, feature.params, scale, batch, phi).compile()
    cost = compiled.cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost).get("flops", float("nan"))
    trainable, opt_state, loss = compiled(trainable, opt_state, lr, feature.params, scale, batch, phi)
    jax.block_until_ready(loss)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        trainable, opt_state, loss = compiled(trainable, opt_state, lr, feature.params, scale, batch, phi)
    jax.block_until_ready(loss)
    seconds = (time.perf_counter() - start) / steps
    crops = crop_rates(size, batch_size, repeats=3 if steps <= 2 else 10) or {}
    return dict(representation=representation, image_size=size, width=width, batch=batch_size,
                gflop_per_step=flops / 1e9, first_step_s=compile_seconds, step_ms=1e3 * seconds,
                images_per_s=batch_size / seconds, default_run_hours=settings["steps"] * seconds / 3600,
                crops_per_s=crops.get("threads"), feature_ms_per_crop=None if feature_s is None else 1e3 * feature_s,
                pool_size=settings.get("pool_size", 0), steps=settings["steps"])


def training_line(row: dict) -> str:
    """The printed summary of a `training_throughput` row: the step, then what bounds a default run's time."""
    line = (f"{row['representation'].upper()} inverter training step ({row['image_size']} px, width {row['width']}, "
            f"batch {row['batch']}): {row['gflop_per_step']:.0f} GFLOP, {row['step_ms']:.1f} ms, "
            f"{row['images_per_s']:.0f} images/s (first step {row['first_step_s']:.1f} s); {row['steps']} steps: "
            f"{row['default_run_hours']:.2f} h of steps")
    if row["pool_size"]:
        line += (f"; pool of {row['pool_size']} crops: {row['pool_size'] * row['feature_ms_per_crop'] / 6e4:.1f} min "
                 f"of features ({row['feature_ms_per_crop']:.1f} ms per crop, one thread)")
    elif row["feature_ms_per_crop"] is not None:
        line += (f"; fresh features: {row['steps'] * row['batch'] * row['feature_ms_per_crop'] / 3.6e6:.2f} h "
                 f"({row['feature_ms_per_crop']:.1f} ms per crop, one thread)")
    if row["crops_per_s"] and not row["pool_size"]:
        line += (f"; fresh crops: {row['steps'] * row['batch'] / row['crops_per_s'] / 3600:.2f} h "
                 f"({row['crops_per_s']:.0f} crops/s)")
    return line


def main(argv):
    del argv
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.platform} ({device.device_kind}, {len(jax.devices())} device(s))")
    quick = FLAGS.quick
    cases = QUICK_NETWORK_CASES if quick else NETWORK_CASES
    iterations = 2 if quick else FLAGS.iterations
    check_choices("tables", FLAGS.tables, ("networks", "hog", "training"))
    check_choices("training", FLAGS.training, ("hog", "lbp", "sift"))
    if "networks" in FLAGS.tables:
        print("\nThe engine's step (scan loop), random weights")
        print(f"{'case':<18} {'batch':>5} {'ms/step':>9} {'ms/restart':>10} {'compile s':>9} {'temp MiB':>8}")
        for row in network_rows(cases, BATCHES, iterations):
            print(f"{row['case']:<18} {row['batch']:>5} {row['ms']:9.1f} {row['ms_per_restart']:10.1f} "
                  f"{row['compile_s']:9.1f} {row['temp_mib']:8.0f}", flush=True)
    if "hog" in FLAGS.tables:
        size, hog_iterations = (64, 12) if quick else (256, 300)
        print(f"\nHOG inversion, {size}x{size} grey")
        print(f"{'restarts':>8} {'iterations':>10} {'first run s':>11} {'warm run s':>10} {'s/restart':>9}")
        for row in hog_rows(size, hog_iterations, BATCHES):
            print(f"{row['restarts']:>8} {row['iterations']:>10} {row['first_s']:11.2f} {row['warm_s']:10.2f} "
                  f"{row['warm_s'] / row['restarts']:9.3f}", flush=True)
    if "training" not in FLAGS.tables:
        return
    for representation in FLAGS.training:
        table = run_config.CPU_DEFAULTS if FLAGS.cpu_training else run_config.ACCELERATOR_DEFAULTS
        settings = dict(table[representation])
        if quick:
            settings.update(image_size=64, width=0.25)
        row = training_throughput(representation, settings, batch_size=8 if quick else 64, steps=2 if quick else 20)
        print("\n" + training_line(row), flush=True)


if __name__ == "__main__":
    timing.run(main)
