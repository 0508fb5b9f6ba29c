"""Quantitative studies of deep-network pre-images (IJCV Figs. 6, 7 and 12; CVPR 2015 Table 3).

    jaxinv-deep-studies --num_images=8 --restarts=4 --output_dir=outputs/deep_studies
    jaxinv-deep-studies --net=DIR --num_images=24 --restarts=24   # the paper's study

For every layer (default: all named layers) and every C (default 1, 20, 100, 300), inverts the
layer's code of N reference images from K random restarts each (one vmapped run of N * K
problems per (layer, C), sharded over devices when several), with the per-layer jitter rule and
300 + 50 iterations. Reference images: the CIFAR-10 test set for a CIFAR-10 network (N evenly
spaced), else the first N of DATA/imagenet_samples (DATA: --data_dir), resized and centre-cropped to the
network's input size (or --images_dir). See jaxinv/deep_networks.py for the exact statistics.

Writes OUTPUT_DIR/results.json ({"layers", "C", "error", "error_ci95", "restart_std",
"class_consistency", "hist_intersection"}, each {layer: {C: value}}, plus "best_C", "rule_C",
"at_best_C", "seconds", "parameters"), error/std/consistency/naturalness plots vs layer,
reconstruction grids (images down, layers across) for the rule's C and for every C, invariance
grids (restarts down, layers across) for the first --invariance_images images, and index.html.
Every finished (layer, C) unit is checkpointed (orbax) under OUTPUT_DIR/checkpoints: rerunning
the same command resumes an interrupted study with the same results.

Several processes or hosts (--coordinator_address, --num_processes, --process_id or their $JAX_*
variables, or --distributed; see docs/scaling.md and `jaxinv.io.distributed`) share the units: each
computes its share into OUTPUT_DIR/checkpoints (a shared folder), then process 0 writes the results.
"""
from __future__ import annotations

import os
import shlex
import sys
import time

import jax
from absl import flags

from jaxinv import nets
from jaxinv.io import cli, datasets, distributed
from jaxinv.studies import deep_network_outputs, deep_networks

FLAGS = flags.FLAGS
cli.define_net()
flags.DEFINE_integer("num_images", 8, "reference images N (the paper: 24 for consistency, 100 for the error)")
cli.define_restarts(4, "random restarts K per image (the paper: 24)")
flags.DEFINE_list("layers", None, "layers to study (default: every named layer)")
flags.DEFINE_list("C", [str(deep_networks.c_number(c)) for c in deep_networks.DEFAULT_C], "loss weights C")
cli.define_iterations()
cli.define_seed("seed; each (layer, C) unit derives its own from it")
flags.DEFINE_bool("jitter", True, "jitter by the layer rule (T = stride / 4); --nojitter sets T = 1")
flags.DEFINE_integer("images_per_call", 0, "images per vmapped run (0: all N in one run of N * K problems)")
flags.DEFINE_integer("invariance_images", 2, "images whose every restart is kept for the invariance grids")
flags.DEFINE_integer("figure_images", 8, "rows of the reconstruction grids", lower_bound=1)
cli.define_images_dir("folder of reference images (default: by network, see above)")
cli.define_data_dir()
flags.DEFINE_integer("max_units", 0, "stop after computing this many (layer, C) units (0: no limit); rerun resumes")
cli.define_output_dir("outputs/deep_studies", "where results, figures and checkpoints go")
distributed.define_flags()
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    began = time.perf_counter()
    model = nets.load(FLAGS.net)
    layers = deep_networks.check_layers(model, FLAGS.layers)
    C = deep_networks.parse_C(FLAGS.C)
    stages = cli.stages()
    reference, names = datasets.reference_images(model, FLAGS.num_images, images_dir=FLAGS.images_dir,
                                                 data_dir=FLAGS.data_dir)
    processes = distributed.current()
    prefix = processes.prefix()
    shared = f", {processes.count} processes" if processes.several else ""
    print(f"{prefix}{model.arch}: {len(reference)} images x {FLAGS.restarts} restarts, {len(layers)} layers x "
          f"{len(C)} C = {len(layers) * len(C)} units, {FLAGS.iterations}+{FLAGS.refine_iterations} iterations, "
          f"{jax.local_device_count()} device(s){shared}", flush=True)
    study = deep_networks.run_study(
        model, reference, reference_names=names, layers=layers, C=C, restarts=FLAGS.restarts, stages=stages,
        seed=FLAGS.seed, jitter=FLAGS.jitter, images_per_call=FLAGS.images_per_call or None,
        invariance_images=FLAGS.invariance_images, checkpoint_dir=os.path.join(FLAGS.output_dir, "checkpoints"),
        max_units=FLAGS.max_units or None, log=lambda line: print(prefix + line, flush=True), processes=processes)
    if not processes.primary:
        print(f"{prefix}{len(study.units)} unit(s) done; process 0 writes the results", flush=True)
        return
    if not study.complete:
        print(f"incomplete: {len(study.units)} of {len(layers) * len(C)} units done; rerun the same command to resume")
        return
    command = "jaxinv-deep-studies " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    written = deep_network_outputs.write_outputs(study, FLAGS.output_dir, figure_images=FLAGS.figure_images,
                                    parameters=dict(command=command, net=FLAGS.net))
    results = written["summary"]
    print("at the best C per layer (lowest error):")
    for layer in study.layers:
        row = results["at_best_C"][layer]
        std = "-" if row["restart_std"] is None else f"{row['restart_std']:.3f}"
        print(f"  {layer:8s} C={results['best_C'][layer]:<4g} error {row['error']:.3f}  consistency "
              f"{row['class_consistency']:.2f}  restart std {std}  hist. intersection {row['hist_intersection']:.3f}")
    for key in ("results", "index"):
        print(f"wrote {written[key]}")
    print(f"wrote {len(written['plots'])} plots, {len(written['grids']) + len(written['invariance'])} grids; "
          f"{time.perf_counter() - began:.1f} s in all", flush=True)


def run():
    """The console script jaxinv-deep-studies."""
    cli.run(main)


if __name__ == "__main__":
    run()
