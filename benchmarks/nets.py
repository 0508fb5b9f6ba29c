"""Per-iteration time of the pre-image engine's own step on caffe-ref, next to PyTorch eager.

    python -m benchmarks.nets [--iterations=10]

The JAX side is the engine's compiled step itself (`jaxinv.engine.preimage.solve`, Python loop over its
jitted step, no jitter): value_and_grad of IJCV Eq. 1 with the normalised L2 loss at the layer
(Eq. 2) plus the regularisers R_alpha and R_TV, then the solver update (Algorithm 1 with the Eq. 6
projection). The PyTorch side computes the loss and the same update but not the two regularisers,
so the ratio slightly favours PyTorch. Batch 8 is 8 independent restarts: vmapped in JAX, a batch of
images in PyTorch. Weights are random (He-normal); both frameworks use the same ones. Times are
per iteration over --iterations steps after a warm-up run that compiles the step.
"""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxinv import nets
from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.nets import taps
from jaxinv.nets import layers as L

flags.DEFINE_integer("iterations", 10, "timed steps per configuration")
FLAGS = flags.FLAGS

ETA0, RHO, BOUND_PLUS = 1e3, 0.9, 160.0  # the values do not change the timing

ARCH, SIZE, LAYERS, BATCHES = "caffe-ref", 227, ("pool5", "fc8"), (1, 8)


def engine_seconds(representation, problem, target, batch: int, iterations: int) -> float:
    """Seconds per iteration of the engine's jitted step for `batch` restarts (compiled beforehand)."""
    def run(n):
        return preimage.solve(representation, problem, target, image_shape=(SIZE, SIZE), key=jax.random.key(0),
                              restarts=batch, stages=(preimage.Stage(n, 1.0, False),), loop="python",
                              progress_every=10 ** 9)
    run(iterations)  # compiles (the stages are part of the compiled step)
    return run(iterations).seconds / iterations


def torch_network(table, params):
    """The same network in PyTorch eager, weights copied from `params`."""
    import torch
    from torch import nn
    modules = []
    for layer in table:
        h = layer.hyper
        if layer.op is L.conv:
            w = np.asarray(params[layer.name]["w"])
            module = nn.Conv2d(w.shape[2] * h["groups"], h["out_channels"], h["kernel"], stride=h["stride"],
                               padding=h["pad"][0], groups=h["groups"])
            module.weight.data = torch.tensor(np.transpose(w, (3, 2, 0, 1)).copy())
        elif layer.op is L.fc:
            w = np.asarray(params[layer.name]["w"])
            module = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(w.shape[:3])), w.shape[3]))
            module[1].weight.data = torch.tensor(np.transpose(w, (3, 2, 0, 1)).reshape(w.shape[3], -1).copy())
        elif layer.op is L.maxpool:
            module = nn.MaxPool2d(h["kernel"], h["stride"], ceil_mode=h["ceil_mode"])
        elif layer.op is L.lrn:
            module = nn.LocalResponseNorm(h["size"], h["alpha"], h["beta"], h["k"])
        elif layer.op is L.relu:
            module = nn.ReLU()
        else:
            module = nn.Softmax(dim=1)
        if layer.op in (L.conv, L.fc):
            bias = torch.tensor(np.asarray(params[layer.name]["b"]))
            (module if layer.op is L.conv else module[1]).bias.data = bias
        modules.append((layer.name, module))
    return modules


def torch_step(modules, layer, target, x0):
    import torch
    stop = [name for name, _ in modules].index(layer) + 1
    network = torch.nn.Sequential(*[module for _, module in modules[:stop]]).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    target = torch.tensor(np.asarray(target)[None] if np.ndim(target) == 1 else np.transpose(target, (2, 0, 1))[None])
    x = torch.tensor(np.transpose(x0, (0, 3, 1, 2)).copy(), requires_grad=True)
    sum_of_squares, momentum = torch.zeros_like(x), torch.zeros_like(x)

    def step():
        x.grad = None
        code = network(x)
        dims = tuple(range(1, code.ndim))
        losses = ((code - target) ** 2).sum(dim=dims) / (target ** 2).sum()
        losses.sum().backward()
        with torch.no_grad():  # IJCV Algorithm 1, as jaxinv.engine.solver computes it
            sum_of_squares.mul_(RHO).add_(x.grad ** 2)
            momentum.mul_(RHO).sub_(x.grad / (1 / ETA0 + sum_of_squares.sqrt()))
            x.add_(momentum)
            norm = x.norm(dim=1, keepdim=True)
            x.mul_(torch.clamp(BOUND_PLUS / norm.clamp_min(1e-12), max=1.0))
        return losses

    return step


def median_seconds(step, iterations, block):
    for _ in range(2):
        block(step())
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        block(step())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv):
    del argv
    import torch
    table = nets.build(ARCH)
    params = nets.init_params(table, jax.random.PRNGKey(0), SIZE)
    model = nets.Model(arch=ARCH, table=table, params=params, input_size=SIZE,
                       convention=dict(nets.model.CAFFE_CONVENTION))
    sample = images.load_sample_image(size=SIZE)
    modules = torch_network(table, params)
    torch.set_flush_denormal(True)
    print(f"{ARCH} {SIZE}x{SIZE}, the engine's step (value_and_grad of Eq. 1 + Algorithm 1) vs PyTorch eager "
          f"(loss + update); {FLAGS.iterations} steps; jax {jax.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"{'layer':>6} {'batch':>5} {'jax ms':>9} {'torch ms':>9} {'jax/torch':>9} {'jax ms/image':>12}")
    for layer in LAYERS:
        representation = taps.representation(model, layer)
        problem = preimage.Problem(C=1.0, bound_plus=BOUND_PLUS, jitter=1)
        target = preimage.make_target(representation, problem, sample)
        reference = model.preprocess(sample)
        code = nets.apply(table, params, jnp.asarray(reference[None]), upto=layer)[layer][0]
        for batch in BATCHES:
            x0 = np.random.default_rng(0).normal(0, 10, (batch, SIZE, SIZE, 3)).astype(np.float32)
            jax_seconds = engine_seconds(representation, problem, target, batch, FLAGS.iterations)
            torch_seconds = median_seconds(torch_step(modules, layer, code, x0), FLAGS.iterations, lambda _: None)
            print(f"{layer:>6} {batch:>5} {1e3 * jax_seconds:9.1f} {1e3 * torch_seconds:9.1f} "
                  f"{jax_seconds / torch_seconds:9.2f} {1e3 * jax_seconds / batch:12.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
