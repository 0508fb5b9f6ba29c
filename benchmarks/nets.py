"""Per-iteration time of one pre-image optimisation step on caffe-ref, JAX next to PyTorch eager.

    python -m benchmarks.nets [--iterations=10]

A step is value_and_grad of the normalised L2 distance to a target code at a layer,
||phi(x) - phi0||^2 / ||phi0||^2, with respect to the image, followed by the engine's solver update
(IJCV Algorithm 1: `jaxinv.solver.projected(preimage_adagrad)`; the same arithmetic in PyTorch). Batch 8 is 8 independent restarts:
vmapped in JAX, a batch of images in PyTorch. Weights are random (He-normal); both frameworks use
the same ones. Times are medians over --iterations steps after warm-up (and, for JAX, compilation).
"""
from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from jaxinv import images, nets
from jaxinv import solver as solvers
from jaxinv.nets import layers as L
from jaxinv.objectives import project_bounded_range

flags.DEFINE_integer("iterations", 10, "timed steps per configuration")
FLAGS = flags.FLAGS

ETA0, RHO, BOUND_PLUS = 1e3, 0.9, 160.0  # the values do not change the timing

ARCH, SIZE, LAYERS, BATCHES = "caffe-ref", 227, ("pool5", "fc8"), (1, 8)


def jax_step(table, layer, optimizer):
    def loss(params, target, x):  # one image (H, W, C)
        code = nets.apply(table, params, x[None], upto=layer)[layer][0]
        return jnp.sum((code - target) ** 2) / jnp.sum(target ** 2)

    def batch_loss(x, params, target):  # restarts are independent: the sum's gradient is each one's own
        losses = jax.vmap(loss, in_axes=(None, None, 0))(params, target, x)
        return losses.sum(), losses

    @jax.jit  # weights are arguments, not constants: XLA would spend seconds constant-folding them
    def step(params, target, x, opt_state):
        (_, losses), grad = jax.value_and_grad(batch_loss, has_aux=True)(x, params, target)
        updates, opt_state = optimizer.update(grad, opt_state, x)
        return optax.apply_updates(x, updates), opt_state, losses

    return step


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
        with torch.no_grad():  # IJCV Algorithm 1, as jaxinv.solver computes it
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
    reference = model.preprocess(images.load_sample_image(size=SIZE))
    modules = torch_network(table, params)
    torch.set_flush_denormal(True)
    optimizer = solvers.projected(solvers.preimage_adagrad(ETA0, RHO),
                                  lambda x: project_bounded_range(x, BOUND_PLUS))
    print(f"{ARCH} {SIZE}x{SIZE}, value_and_grad w.r.t. the image + IJCV Algorithm 1 update; "
          f"median of {FLAGS.iterations} steps; jax {jax.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"{'layer':>6} {'batch':>5} {'jax ms':>9} {'torch ms':>9} {'jax/torch':>9} {'jax ms/image':>12}")
    for layer in LAYERS:
        target = nets.apply(table, params, jnp.asarray(reference[None]), upto=layer)[layer][0]
        for batch in BATCHES:
            x0 = np.random.default_rng(0).normal(0, 10, (batch, SIZE, SIZE, 3)).astype(np.float32)
            step = jax_step(table, layer, optimizer)
            state = {"x": jnp.asarray(x0), "opt": optimizer.init(jnp.asarray(x0))}

            def run_jax():
                state["x"], state["opt"], losses = step(params, target, state["x"], state["opt"])
                return losses

            jax_seconds = median_seconds(run_jax, FLAGS.iterations, jax.block_until_ready)
            torch_seconds = median_seconds(torch_step(modules, layer, target, x0), FLAGS.iterations, lambda _: None)
            print(f"{layer:>6} {batch:>5} {1e3 * jax_seconds:9.1f} {1e3 * torch_seconds:9.1f} "
                  f"{jax_seconds / torch_seconds:9.2f} {1e3 * jax_seconds / batch:12.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
