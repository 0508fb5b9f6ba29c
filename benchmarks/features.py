"""HOG, HOGb and DSIFT on a 512x512 image: JAX forward and forward+backward (jit, warm) vs VLFeat.

    python -m benchmarks.features [--size=512] [--repeats=20]
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import timing
from benchmarks.timing import median_seconds
from jaxinv import features, vlfeat
from jaxinv.io import images

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", 512, "square image size")
flags.DEFINE_integer("repeats", 20, "timed repetitions (median reported)")


def main(argv):
    del argv
    image = images.load_sample_image(grey=True, size=FLAGS.size)
    x = jnp.asarray(image)
    graphs = {
        "hog": lambda im: features.hog(im, 8),
        "hogb": lambda im: features.hog(im, 8, bilinear=True),
        "dsift": lambda im: features.dsift(im, bin_size=8, step=8),
    }
    references = {}
    if vlfeat.available():
        from jaxinv.vlfeat import dsift as vl_dsift, hog as vl_hog
        references = {
            "hog": lambda: vl_hog.vlfeat_hog(image, 8),
            "hogb": lambda: vl_hog.vlfeat_hog(image, 8, bilinear=True),
            "dsift": lambda: vl_dsift.vlfeat_dsift(image, 8, 8),
        }
    else:
        print(f"VLFeat not available ({vlfeat.INSTALL_HINT}): JAX times only")
    print(f"{FLAGS.size}x{FLAGS.size} grey image, cell/bin 8, median of {FLAGS.repeats}, jax {jax.__version__} "
          f"on {jax.devices()[0].platform}")
    print(f"{'':6s} {'jax fwd ms':>11s} {'jax fwd+bwd ms':>15s} {'vlfeat fwd ms':>14s} {'fwd ratio':>10s} {'fwd+bwd ratio':>14s}")
    for name, graph in graphs.items():
        forward = jax.jit(graph)
        weights = jnp.asarray(np.random.default_rng(0).normal(size=forward(x).shape), jnp.float32)
        backward = jax.jit(jax.value_and_grad(lambda im: jnp.sum(graph(im) * weights)))
        t_fwd = median_seconds(forward, x, repeats=FLAGS.repeats)
        t_bwd = median_seconds(backward, x, repeats=FLAGS.repeats)
        line = f"{name:6s} {1e3 * t_fwd:11.2f} {1e3 * t_bwd:15.2f}"
        if name in references:
            t_vl = median_seconds(references[name], repeats=FLAGS.repeats, warmup=1)
            line += f" {1e3 * t_vl:14.2f} {t_fwd / t_vl:10.2f} {t_bwd / t_vl:14.2f}"
        print(line)
    print("ratios are JAX time / VLFeat forward time (below 1: JAX faster)")


if __name__ == "__main__":
    timing.run(main)
