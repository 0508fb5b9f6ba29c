"""Start-up of the binaries with JAX's persistent compilation cache: a first run and a second run.

    python -m benchmarks.startup

Each binary runs with one iteration (start-up, compilation, one step, outputs) twice in a fresh
$XDG_CACHE_HOME, and once more with --nocompilation_cache; the table prints their wall times. The
difference between the first and the second run is the compilation the cache saved.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from benchmarks import timing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = {
    "invert": ("HOG 256x256, 4 restarts", ["experiments.invert", "--iterations=1", "--refine_iterations=0"]),
    "visualise": ("--mode=layers, cifar-ref", ["experiments.visualise", "--mode=layers", "--iterations=1",
                                            "--refine_iterations=0"]),
    "shallow_table": ("1 image, 128 px", ["experiments.shallow_table", "--num_images=1", "--size=128", "--iterations=1",
                                        "--refine_iterations=0", "--batch_size=1"]),
    "deep_studies": ("cifar-ref, 2 layers", ["experiments.deep_studies", "--num_images=1", "--restarts=1",
                                           "--layers=conv1,fc8", "--C=20", "--iterations=1", "--refine_iterations=0"]),
    "activation_max": ("cifar-ref", ["experiments.activation_max", "--restarts=1", "--iterations=1",
                                   "--refine_iterations=0"]),
    "train_inverter": ("HOG 64 px, 1 step", ["experiments.train_inverter", "--representation=hog", "--size=64", "--steps=1",
                                   "--max_train_images=16", "--eval_images=4"]),
}

flags.DEFINE_list("binaries", list(RUNS), "which of the runs to time")
FLAGS = flags.FLAGS


def seconds(command, cache_home, out, *extra) -> float:
    env = dict(os.environ, XDG_CACHE_HOME=cache_home, PYTHONPATH=ROOT)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *command, f"--output_dir={out}", *extra], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main(argv):
    del argv
    print(f"{'binary':<38} {'first s':>8} {'second s':>9} {'no cache s':>11}")
    unknown = sorted(set(FLAGS.binaries) - set(RUNS))
    if unknown:
        raise app.UsageError(f"unknown --binaries {unknown}; valid: {list(RUNS)}")
    for name in FLAGS.binaries:
        what, command = RUNS[name]
        with tempfile.TemporaryDirectory() as tmp:
            first = seconds(command, os.path.join(tmp, "cache"), os.path.join(tmp, "a"))
            second = seconds(command, os.path.join(tmp, "cache"), os.path.join(tmp, "b"))
            off = seconds(command, os.path.join(tmp, "off"), os.path.join(tmp, "c"), "--nocompilation_cache")
        print(f"{name + ' (' + what + ')':<38} {first:8.1f} {second:9.1f} {off:11.1f}", flush=True)


if __name__ == "__main__":
    timing.run(main)
