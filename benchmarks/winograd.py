"""Does a Winograd F(2x2, 3x3) convolution written in JAX ops beat XLA CPU's direct convolution?

    python -m benchmarks.winograd [--layers=14x512,28x512,56x256,112x128,224x64] [--batches=1,8]

The VGG-16 target of issue #12 (0.8x PyTorch) needs fewer operations than a direct convolution
(docs/performance.md). Winograd F(2x2, 3x3) (Lavin & Gray, CVPR 2016) computes each 2x2 output tile
from a 4x4 input tile d as Y = A^T [(G g G^T) . (B^T d B)] A: 16 multiplications per tile and channel
pair instead of 36, i.e. 16 batched (tiles x C_in) @ (C_in x C_out) matmuls between cheap transforms. The
convolution is `jaxinv.nets.layers.winograd_conv3x3`.

For each VGG-16 3x3 layer geometry (H x C, C_in = C_out, stride 1, pad 1) it prints the median time of
value + input and kernel gradients of sum(conv(x, w)^2), direct (XLA's convolution, `layers._conv_xla`)
and Winograd, and the time of the 16 batched matmuls alone (the Winograd lower bound), after
checking the Winograd output against the direct one (max abs difference printed; inputs N(0, 1)).
Where the custom call `jaxinv.nets.winograd_kernel` builds, the same measurement through it follows (its kernel
gradient is XLA's). `layers.conv2d` takes the custom call, or without it the XLA Winograd path, where these
tables show them winning; `benchmarks.nets --convolutions=auto,xla,direct` measures the effect on whole networks.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import timing
from benchmarks.timing import median_seconds
from jaxinv.nets import layers, winograd_kernel

flags.DEFINE_list("layers", ["14x512", "28x512", "56x256", "112x128", "224x64"], "HxC of each 3x3 layer")
flags.DEFINE_list("batches", ["1", "8"], "batch sizes")
flags.DEFINE_integer("repeats", 5, "timed calls per measurement (median)")
FLAGS = flags.FLAGS


def _direct(x, w):
    return layers._conv_xla(x, w, 1, (1, 1, 1, 1))


def _winograd(x, w):
    return layers.winograd_conv3x3(x, w, (1, 1, 1, 1))


def _custom_call(x, w):
    return winograd_kernel.conv3x3(x, w, (1, 1, 1, 1))


def _value_and_grads(conv):
    return jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__} on {jax.default_backend()}; value + input and kernel gradients, ms (median of "
          f"{FLAGS.repeats})")
    custom = winograd_kernel.available()
    if not custom:
        print(f"Winograd custom call not available ({winograd_kernel.unavailable_reason()})")
    print(f"{'layer':>16} {'batch':>5} {'max |diff|':>10} {'direct':>8} {'Winograd':>9} {'ratio':>6} {'matmuls':>8}"
          + (f" {'custom call':>11} {'ratio':>6} {'max |diff|':>10}" if custom else ""))
    for layer in FLAGS.layers:
        size, channels = (int(v) for v in layer.split("x"))
        for batch in (int(b) for b in FLAGS.batches):
            x = jnp.asarray(rng.normal(size=(batch, size, size, channels)), jnp.float32)
            w = jnp.asarray(rng.normal(size=(3, 3, channels, channels)) / np.sqrt(9 * channels), jnp.float32)
            difference = float(jnp.max(jnp.abs(jax.jit(_winograd)(x, w) - jax.jit(_direct)(x, w))))
            direct = median_seconds(_value_and_grads(_direct), x, w, repeats=FLAGS.repeats)
            winograd = median_seconds(_value_and_grads(_winograd), x, w, repeats=FLAGS.repeats)
            tiles = batch * ((size + 1) // 2) ** 2
            v = jnp.asarray(rng.normal(size=(16, tiles, channels)), jnp.float32)
            u = jnp.asarray(rng.normal(size=(16, channels, channels)), jnp.float32)
            matmuls = median_seconds(_value_and_grads(lambda a, b: jnp.einsum("spc,sck->spk", a, b)), v, u,
                                     repeats=FLAGS.repeats)
            row = (f"{f'{size}x{size}x{channels}':>16} {batch:>5} {difference:>10.1e} {1e3 * direct:>8.1f} "
                   f"{1e3 * winograd:>9.1f} {winograd / direct:>6.2f} {1e3 * matmuls:>8.1f}")
            if custom:
                seconds = median_seconds(_value_and_grads(_custom_call), x, w, repeats=FLAGS.repeats)
                custom_difference = float(jnp.max(jnp.abs(jax.jit(_custom_call)(x, w) - jax.jit(_direct)(x, w))))
                row += f" {1e3 * seconds:>11.1f} {seconds / direct:>6.2f} {custom_difference:>10.1e}"
            print(row, flush=True)


if __name__ == "__main__":
    timing.run(main)
