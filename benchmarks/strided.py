"""Does a strided convolution run faster rewritten as a stride-1 one on space-to-depth folded input?

    python -m benchmarks.strided [--layers=...] [--batches=1,8] [--repeats=5]

The input gradient of a stride-s convolution is a convolution of the output gradient dilated by s, which
XLA CPU computes on the zeros too; `jaxinv.nets.layers.space_to_depth_conv` folds each s x s block of pixels
into channels and computes the same convolution at stride 1, at the cost of a kernel zero-padded to a
multiple of s ((ceil(k/s) s / k)^2 more multiplications). For each strided geometry of the papers'
networks (NAME:HxCin:k/s:pad:Cout) it prints the median time of the value + input gradient (the pre-image
engine's need) and of the value + input and kernel gradients (training), XLA's convolution
(`layers._conv_xla`) against the rewrite, after checking the outputs agree (max relative difference).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import timing
from benchmarks.timing import check_choices, median_seconds
from jaxinv.engine import compilation
from jaxinv.nets import layers

LAYERS = {
    "caffe-ref:conv1": "227x3:11/4:0:96",
    "vgg-m:conv1": "224x3:7/2:0:96",
    "vgg-m:conv2": "55x96:5/2:1:256",
    "resnet-50:conv1": "224x3:7/2:3:64",
    "resnet-50:layer2-3x3": "56x128:3/2:1:128",
    "resnet-50:layer3-3x3": "28x256:3/2:1:256",
    "inverter:5x5/2": "64x128:5/2:2:256",
}
flags.DEFINE_list("layers", list(LAYERS), "geometries to time (of LAYERS)")
flags.DEFINE_list("batches", ["1", "8"], "batch sizes")
flags.DEFINE_integer("repeats", 5, "timed calls per measurement (median)")
FLAGS = flags.FLAGS


def parse(spec: str):
    """'HxCin:k/s:pad:Cout' -> (H, Cin, k, s, pad, Cout)."""
    size, kernel, pad, cout = spec.split(":")
    h, cin = (int(v) for v in size.split("x"))
    k, s = (int(v) for v in kernel.split("/"))
    return h, cin, k, s, int(pad), int(cout)


def main(argv):
    del argv
    check_choices("layers", FLAGS.layers, sorted(LAYERS))
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__} on {jax.default_backend()}; ms (median of {FLAGS.repeats}); 'x' grads: value + "
          f"input gradient, 'x,w': value + input and kernel gradients")
    print(f"{'layer':>22} {'geometry':>18} {'batch':>5} {'rel diff':>8} {'direct x':>9} {'s2d x':>7} {'ratio':>6} "
          f"{'direct x,w':>10} {'s2d x,w':>8} {'ratio':>6}")
    for name in FLAGS.layers:
        h, cin, k, s, pad, cout = parse(LAYERS[name])
        convs = {"direct": lambda x, w: layers._conv_xla(x, w, s, (pad,) * 4),
                 "s2d": lambda x, w: layers.space_to_depth_conv(x, w, s, (pad,) * 4)}
        for batch in (int(b) for b in FLAGS.batches):
            x = jnp.asarray(rng.normal(size=(batch, h, h, cin)), jnp.float32)
            w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
            direct, folded = (compilation.jit(c)(x, w) for c in convs.values())
            difference = float(jnp.max(jnp.abs(folded - direct)) / jnp.max(jnp.abs(direct)))
            times = {}
            for label, conv in convs.items():
                for argnums in ((0,), (0, 1)):
                    grad = compilation.jit(jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=argnums))
                    times[label, argnums] = median_seconds(grad, x, w, repeats=FLAGS.repeats)
            cells = []
            for argnums in ((0,), (0, 1)):
                d, f = times["direct", argnums], times["s2d", argnums]
                cells.append(f"{1e3 * d:>9.1f} {1e3 * f:>7.1f} {f / d:>6.2f}")
            print(f"{name:>22} {LAYERS[name]:>18} {batch:>5} {difference:>8.1e} {cells[0]} {' ' + cells[1]}",
                  flush=True)


if __name__ == "__main__":
    timing.run(main)
