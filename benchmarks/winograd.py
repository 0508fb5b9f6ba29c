"""Does a Winograd F(2x2, 3x3) convolution written in JAX ops beat XLA CPU's direct convolution?

    python -m benchmarks.winograd [--layers=14x512,28x512,56x256,112x128,224x64] [--batches=1,8]

The VGG-16 target of issue #12 (0.8x PyTorch) needs fewer operations than a direct convolution
(docs/performance.md). Winograd F(2x2, 3x3) (Lavin & Gray, CVPR 2016) computes each 2x2 output tile
from a 4x4 input tile d as Y = A^T [(G g G^T) . (B^T d B)] A: 16 multiplications per tile and channel
pair instead of 36, i.e. 16 batched (tiles x C_in) @ (C_in x C_out) matmuls between cheap transforms. Here
the transforms are strided slices and additions (B, G and A hold only 0, +-1, +-1/2) and autodiff
gives the backward (the transposed transforms and matmuls, also 2.25x fewer multiplications).

For each VGG-16 3x3 layer geometry (H x C, C_in = C_out, stride 1, pad 1) it prints the median time of
value + input and kernel gradients of sum(conv(x, w)^2), direct (`jaxinv.nets.layers.conv2d`'s XLA
path) and Winograd, and the time of the 16 batched matmuls alone (the Winograd lower bound), after
checking the Winograd output against the direct one (max abs difference printed; inputs N(0, 1)).
This path is not in the library: it was measured slower or equal (docs/performance.md).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

from benchmarks.timing import median_seconds
from jaxinv.nets import layers

flags.DEFINE_list("layers", ["14x512", "28x512", "56x256", "112x128", "224x64"], "HxC of each 3x3 layer")
flags.DEFINE_list("batches", ["1", "8"], "batch sizes")
flags.DEFINE_integer("repeats", 5, "timed calls per measurement (median)")
FLAGS = flags.FLAGS


def _input_transform(z, axis: int, tiles: int):
    """B^T d along `axis`: the 4 rows of every stride-2 4-row window, combined (rows d0 - d2, d1 + d2, d2 - d1, d1 - d3)."""
    d0, d1, d2, d3 = (lax.slice_in_dim(z, i, i + 2 * tiles - 1, 2, axis) for i in range(4))
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _kernel_transform(w, axis: int):
    """G g along `axis` of a 3-tap kernel: g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2."""
    g0, g1, g2 = (lax.index_in_dim(w, i, axis, keepdims=False) for i in range(3))
    return [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]


def winograd_conv3x3(x, w, pad=(1, 1, 1, 1)):
    """Stride-1 3x3 convolution of x (N, H, W, C) with w (3, 3, C, K), `pad` (top, bottom, left, right)."""
    n, h, wd, c = x.shape
    k = w.shape[-1]
    ho, wo = h + pad[0] + pad[1] - 2, wd + pad[2] + pad[3] - 2
    th, tw = -(-ho // 2), -(-wo // 2)
    x = jnp.pad(x, ((0, 0), (pad[0], 2 * th + 2 - h - pad[0]), (pad[2], 2 * tw + 2 - wd - pad[2]), (0, 0)))
    v = jnp.stack([col for row in _input_transform(x, 1, th) for col in _input_transform(row, 2, tw)])
    u = jnp.stack([col for row in _kernel_transform(w, 0) for col in _kernel_transform(row, 0)])  # (16, C, K)
    m = jnp.einsum("spc,sck->spk", v.reshape(16, n * th * tw, c), u).reshape(4, 4, n, th, tw, k)
    rows = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]  # A^T M over the tile rows, each (4, n, th, tw, k)
    y = [[r[0] + r[1] + r[2], r[1] - r[2] - r[3]] for r in rows]  # then over the columns: y[row][col]
    y = jnp.stack([jnp.stack(y[0], -2), jnp.stack(y[1], -2)], 2)  # (n, th, 2, tw, 2, k)
    return y.reshape(n, 2 * th, 2 * tw, k)[:, :ho, :wo]


def _direct(x, w):
    return layers.conv2d(x, w, 1, (1, 1, 1, 1))


def _value_and_grads(conv):
    return jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__} on {jax.default_backend()}; value + input and kernel gradients, ms (median of "
          f"{FLAGS.repeats})")
    print(f"{'layer':>16} {'batch':>5} {'max |diff|':>10} {'direct':>8} {'Winograd':>9} {'ratio':>6} {'matmuls':>8}")
    for layer in FLAGS.layers:
        size, channels = (int(v) for v in layer.split("x"))
        for batch in (int(b) for b in FLAGS.batches):
            x = jnp.asarray(rng.normal(size=(batch, size, size, channels)), jnp.float32)
            w = jnp.asarray(rng.normal(size=(3, 3, channels, channels)) / np.sqrt(9 * channels), jnp.float32)
            difference = float(jnp.max(jnp.abs(jax.jit(winograd_conv3x3)(x, w) - jax.jit(_direct)(x, w))))
            direct = median_seconds(_value_and_grads(_direct), x, w, repeats=FLAGS.repeats)
            winograd = median_seconds(_value_and_grads(winograd_conv3x3), x, w, repeats=FLAGS.repeats)
            tiles = batch * ((size + 1) // 2) ** 2
            v = jnp.asarray(rng.normal(size=(16, tiles, channels)), jnp.float32)
            u = jnp.asarray(rng.normal(size=(16, channels, channels)), jnp.float32)
            matmuls = median_seconds(_value_and_grads(lambda a, b: jnp.einsum("spc,sck->spk", a, b)), v, u,
                                     repeats=FLAGS.repeats)
            print(f"{f'{size}x{size}x{channels}':>16} {batch:>5} {difference:>10.1e} {1e3 * direct:>8.1f} "
                  f"{1e3 * winograd:>9.1f} {winograd / direct:>6.2f} {1e3 * matmuls:>8.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
