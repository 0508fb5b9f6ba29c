"""Compilation saved by passing weights into the compiled step: the first and a second set of weights.

    python -m benchmarks.compile_reuse

Cases: two HOG templates of one size (`hog_templates.visualise_template`), and two networks of one
architecture (the shipped cifar-ref and a random-weight copy; `inversion.invert_images` of conv3).
For each run it prints the XLA compilations, their seconds and the wall time; the second run
compiles nothing, so its wall time is the optimisation alone.
"""
from __future__ import annotations

import dataclasses
import time

import jax
from absl import flags

from benchmarks import timing
from jaxinv import nets
from jaxinv.engine import compilation, preimage
from jaxinv.io import images
from jaxinv.methods import hog_templates, inversion, layer_rules
from jaxinv.nets import taps

flags.DEFINE_integer("iterations", 20, "solver iterations per run (the first stage; 5 more refine)")
FLAGS = flags.FLAGS


def timed(run) -> tuple[compilation.Compilations, float]:
    start = time.perf_counter()
    with compilation.counting() as record:
        run()
    return record, time.perf_counter() - start


def main(argv):
    del argv
    stages = preimage.default_stages(FLAGS.iterations, 5)
    templates = [hog_templates.edge_template(6, "vertical"), hog_templates.edge_template(6, "horizontal")]
    shipped = nets.load("cifar-ref")
    networks = [shipped, dataclasses.replace(shipped, params=nets.init_params(shipped.table, jax.random.PRNGKey(1),
                                                                              shipped.input_size))]
    image = images.load_sample_image(size=32)
    cases = {
        "HOG template 48x48, 4 restarts": [
            lambda t=t: hog_templates.visualise_template(t, restarts=4, stages=stages) for t in templates],
        "cifar-ref conv3 inversion, 1 image": [
            lambda m=m: inversion.invert_images(taps.representation(m, "conv3"), [image], stages=stages,
                                                problem=layer_rules.inversion_problem(m, "conv3")) for m in networks],
    }
    print(f"{'case':<36} {'weights':>8} {'compiles':>8} {'compile s':>9} {'wall s':>7}")
    for name, runs in cases.items():
        for which, run in zip(("first", "second"), runs):
            record, wall = timed(run)
            print(f"{name:<36} {which:>8} {record.count:>8} {record.seconds:9.2f} {wall:7.2f}", flush=True)


if __name__ == "__main__":
    timing.run(main)
