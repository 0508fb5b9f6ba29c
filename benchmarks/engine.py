"""Seconds per HOG inversion (350 iterations, 256x256 grey) for 1 and 8 vmapped restarts,
both iteration loops, against the papers' ~60 s per HOG inversion on CPU.

    python -m benchmarks.engine [--representation=hog] [--size=256] [--restarts=1,8] [--cpu_kernels=library,xla]

With --cpu_kernels=library,xla each row is timed with the library's CPU kernels (`compilation.CPU_OPTIONS`) and
with XLA's default ones.
"""
from __future__ import annotations

import jax
from absl import flags

from benchmarks import timing
from benchmarks.timing import CPU_KERNELS, CPU_KERNELS_HELP, check_choices, cpu_kernels, inversion_seconds
from jaxinv.engine import preimage

FLAGS = flags.FLAGS
flags.DEFINE_string("representation", "hog", "representation to invert")
flags.DEFINE_integer("size", 256, "square grey image size")
flags.DEFINE_list("restarts", ["1", "8"], "restart counts to time")
flags.DEFINE_list("loops", ["python", "scan"], "iteration loops to time")
flags.DEFINE_integer("iterations", 300, "first-stage iterations (plus 50 refinement)")
flags.DEFINE_list("cpu_kernels", ["library"], CPU_KERNELS_HELP)
PAPER_SECONDS = 60.0


def main(argv):
    del argv
    check_choices("cpu_kernels", FLAGS.cpu_kernels, CPU_KERNELS)
    stages = preimage.default_stages(FLAGS.iterations, 50)
    iterations = sum(s.iterations for s in stages)
    print(f"{FLAGS.representation} inversion, {FLAGS.size}x{FLAGS.size} grey, {iterations} iterations, "
          f"jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s))")
    print(f"{'loop':7s} {'kernels':>8s} {'restarts':>8s} {'compile+run s':>14s} {'warm run s':>11s} {'s/restart':>10s} "
          f"{'ms/iter':>8s} {'paper 60 s / ours':>18s}")
    for loop in FLAGS.loops:
        for restarts in map(int, FLAGS.restarts):
            for kernels in FLAGS.cpu_kernels:
                with cpu_kernels(kernels):
                    first, warm = inversion_seconds(FLAGS.representation, FLAGS.size, stages, restarts, loop)
                per_restart = warm / restarts
                print(f"{loop:7s} {kernels:>8s} {restarts:8d} {first:14.2f} {warm:11.2f} {per_restart:10.3f} "
                      f"{1e3 * warm / iterations:8.2f} {PAPER_SECONDS / per_restart:18.0f}x")


if __name__ == "__main__":
    timing.run(main)
