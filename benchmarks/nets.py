"""Per-iteration time of the pre-image engine's own step on deep networks, next to PyTorch eager.

    python -m benchmarks.nets [--cases=caffe-ref:pool5,...] [--batches=1,8] [--loops=python,scan] [--iterations=5]
                              [--rounds=3] [--convolutions=auto,direct] [--cpu_kernels=library,xla]

The JAX side is the engine's compiled step itself (`jaxinv.engine.preimage.solve`, no jitter): value_and_grad
of IJCV Eq. 1 with the normalised L2 loss at the layer (Eq. 2) plus the regularisers R_alpha and R_TV,
then the solver update (Algorithm 1 with the Eq. 6 projection), with either loop: 'python' calls the
jitted step once per iteration, 'scan' runs all timed iterations in one XLA program (the library's
default). The PyTorch side computes the loss and the same update but not the two regularisers, so the
ratio slightly favours PyTorch. Batch 8 is 8 independent restarts: vmapped in JAX, a batch of images in
PyTorch. Weights are random; both frameworks use the same ones (torchvision ResNet-50 converted from a
random state_dict through `jaxinv.conversion`, its batch norms folded in JAX and kept in PyTorch).

With --convolutions=auto,xla,direct every JAX row is timed three times: with `jaxinv.nets.layers.conv2d`'s rule
(Winograd F(2x2, 3x3) for stride-1 3x3 layers through the custom call `jaxinv.nets.winograd_kernel` where it
builds, space-to-depth for strided input layers), with that rule's XLA-only fallback (Winograd written as XLA
operations for layers of 256 channels or more), and with XLA's direct convolution only.

With --cpu_kernels=library,xla every JAX row is also timed with XLA CPU's default kernels (YNNPACK convolutions)
instead of those the library's steps compile with on CPU (`jaxinv.engine.compilation.CPU_OPTIONS`: Eigen
convolutions, YNNPACK matmuls and reductions).

Each JAX row is timed in --rounds runs of --iterations steps, alternating with runs of as many PyTorch steps
(`timing.interleaved`), so both frameworks see the same state of a machine whose speed drifts between minutes.
Printed per case, batch, loop and convolution choice: the median ms per iteration of each framework, JAX's ms per
restart, the median over rounds of the JAX/PyTorch ratio (the speed issue's target: <= 0.8) with its range
over rounds, the per-restart time at this batch over that at batch 1 (target
<= 1.1), the seconds the first call spent compiling, and the XLA buffer assignment's temporary memory
of the compiled step as configured in that row (the peak working set above arguments and outputs; the
Winograd custom call's scratch, kept per thread between calls, is not in it), and the step's floating-point
operations (XLA's cost analysis, direct convolution) with the rate each framework reaches on that count;
the dense-matmul rate printed first is the machine's practical peak, so a PyTorch rate above it means
PyTorch does fewer operations (oneDNN's Winograd convolutions), not that XLA's are slow. A PyTorch reference
whose threads or matmul rate look wrong on this machine is flagged (`torch_plausible`) rather than trusted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import statistics
import tempfile
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from benchmarks import timing
from benchmarks.timing import (CPU_KERNELS, CPU_KERNELS_HELP, check_choices, cpu_kernels, drop_compiled_steps,
                               engine_timer, interleaved, median_seconds, random_model, step_costs)
from jaxinv import nets
from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.nets import taps, winograd_kernel
from jaxinv.nets import layers as L

flags.DEFINE_list("cases", ["caffe-ref:pool5", "caffe-ref:fc8", "vgg-vd-16:conv5_3", "resnet-50:layer4"],
                  "NETWORK:LAYER cases to time (of those listed in CASES)")
flags.DEFINE_list("batches", ["1", "8"], "restarts per step")
flags.DEFINE_list("loops", ["python", "scan"], "the engine's loops to time")
flags.DEFINE_integer("iterations", 5, "steps per timed run")
flags.DEFINE_integer("rounds", 3, "timed runs per configuration, JAX and PyTorch alternating")
flags.DEFINE_list("convolutions", ["auto"], "convolution choices to time: auto (`layers.conv2d`'s rule: the Winograd "
                  "custom call for stride-1 3x3 layers, space-to-depth for strided input layers), xla (the rule "
                  "without the custom call), direct (XLA's convolution only)")
flags.DEFINE_list("cpu_kernels", ["library"], CPU_KERNELS_HELP)
FLAGS = flags.FLAGS

ETA0, RHO, BOUND_PLUS = 1e3, 0.9, 160.0  # the values do not change the timing


@dataclasses.dataclass
class Case:
    model: nets.Model
    layer: str
    torch_net: Callable  # network input (N, C, H, W) -> the layer's output


def sequential_torch(table, params, layer: str):
    """A layer-table network up to `layer` in PyTorch eager, weights copied from `params`."""
    import torch
    from torch import nn
    modules = []
    for spec in table:
        h = spec.hyper
        if spec.op is L.conv:
            w = np.asarray(params[spec.name]["w"])
            module = nn.Conv2d(w.shape[2] * h["groups"], h["out_channels"], h["kernel"], stride=h["stride"],
                               padding=h["pad"][0], groups=h["groups"])
            module.weight.data = torch.tensor(np.transpose(w, (3, 2, 0, 1)).copy())
        elif spec.op is L.fc:
            w = np.asarray(params[spec.name]["w"])
            module = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(w.shape[:3])), w.shape[3]))
            module[1].weight.data = torch.tensor(np.transpose(w, (3, 2, 0, 1)).reshape(w.shape[3], -1).copy())
        elif spec.op is L.maxpool:
            module = nn.MaxPool2d(h["kernel"], h["stride"], padding=h.get("pad", (0, 0))[0],
                                  ceil_mode=h["ceil_mode"])
        elif spec.op is L.lrn:
            module = nn.LocalResponseNorm(h["size"], h["alpha"], h["beta"], h["k"])
        elif spec.op is L.relu:
            module = nn.ReLU()
        else:
            module = nn.Softmax(dim=1)
        if spec.op in (L.conv, L.fc):
            bias = torch.tensor(np.asarray(params[spec.name]["b"]))
            (module if spec.op is L.conv else module[1]).bias.data = bias
        modules.append(module)
        if spec.name == layer:
            break
    return nn.Sequential(*modules).eval()


def table_case(arch: str, size: int, layer: str) -> Case:
    model = random_model(arch, size)
    return Case(model, layer, sequential_torch(model.table, model.params, layer))


def resnet_case(size: int, layer: str) -> Case:
    """torchvision's ResNet-50 (restated in tests/torchvision_reference.py: torchvision's C ops do not load
    against the CPU torch here), random weights, converted to jaxinv."""
    from torch import nn
    from tests import torchvision_reference
    with tempfile.TemporaryDirectory() as tmp:
        net, model = torchvision_reference.converted("torchvision-resnet50", tmp, size)
    stages = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    trunk = nn.Sequential(*[getattr(net, name) for name in stages[:stages.index(layer) + 1]]).eval()
    return Case(model, layer, trunk)


CASES = {
    "caffe-ref:pool5": lambda: table_case("caffe-ref", 227, "pool5"),
    "caffe-ref:fc8": lambda: table_case("caffe-ref", 227, "fc8"),
    "vgg-vd-16:conv5_3": lambda: table_case("vgg-vd-16", 224, "conv5_3"),
    "resnet-50:layer4": lambda: resnet_case(224, "layer4"),
}


def torch_step(network, target, x0):
    """One iteration in PyTorch: the normalised L2 loss at the layer, its input gradient, Algorithm 1."""
    import torch
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


def torch_timer(network, target, x0, iterations: int):
    """A timer (as `timing.interleaved` takes) of `torch_step`: after two warm-up steps, each call runs
    `iterations` steps and returns the seconds per step."""
    step = torch_step(network, target, x0)
    for _ in range(2):
        step()

    def timer():
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        return (time.perf_counter() - start) / iterations

    return timer


def matmul_rates(n: int = 2048) -> dict:
    """GFLOP/s of a dense float32 n x n matmul in numpy, jax and torch: the machine's practical peak."""
    import torch
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    t, j = torch.from_numpy(a), jnp.asarray(a)
    matmul = jax.jit(lambda x: x @ x)
    flops = 2 * n ** 3
    return {"numpy": flops / median_seconds(lambda: a @ a, repeats=5) / 1e9,
            "jax": flops / median_seconds(lambda: matmul(j), repeats=5) / 1e9,
            "torch": flops / median_seconds(lambda: t @ t, repeats=5) / 1e9}


def torch_plausible(rates: dict) -> str | None:
    """None, or why PyTorch's timings here cannot be trusted: fewer threads than cores, or a dense matmul
    far below numpy's on the same machine (denormals, a debug build, another job pinned to its threads)."""
    import torch
    cores = len(os.sched_getaffinity(0))
    if torch.get_num_threads() < cores:
        return f"torch uses {torch.get_num_threads()} threads on {cores} cores"
    if rates["torch"] < 0.5 * rates["numpy"]:
        return f"torch's matmul runs at {rates['torch']:.0f} GFLOP/s against numpy's {rates['numpy']:.0f}"
    return None


CONVOLUTIONS = ("auto", "xla", "direct")


@contextlib.contextmanager
def convolution_choice(name: str):
    """`layers.conv2d` with its own rule ("auto"), without the Winograd custom call (`winograd_kernel`; "xla": XLA
    operations only), or never Winograd or space-to-depth ("direct"); compiled programs are dropped on entry and
    exit, as the rule is read when a program is traced."""
    saved = L.FUSED_WINOGRAD_MIN_CHANNELS, L.WINOGRAD_MIN_CHANNELS, L.SPACE_TO_DEPTH_MAX_CHANNELS
    if name in ("xla", "direct"):
        L.FUSED_WINOGRAD_MIN_CHANNELS = float("inf")
    if name == "direct":
        L.WINOGRAD_MIN_CHANNELS, L.SPACE_TO_DEPTH_MAX_CHANNELS = float("inf"), 0
    drop_compiled_steps()
    try:
        yield
    finally:
        L.FUSED_WINOGRAD_MIN_CHANNELS, L.WINOGRAD_MIN_CHANNELS, L.SPACE_TO_DEPTH_MAX_CHANNELS = saved
        drop_compiled_steps()


def main(argv):
    del argv
    import torch
    check_choices("cases", FLAGS.cases, sorted(CASES))
    check_choices("convolutions", FLAGS.convolutions, CONVOLUTIONS)
    check_choices("cpu_kernels", FLAGS.cpu_kernels, CPU_KERNELS)
    torch.set_flush_denormal(True)
    batches = [int(b) for b in FLAGS.batches]
    rates = matmul_rates()
    print("dense 2048x2048 float32 matmul, GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    print("Winograd custom call (jaxinv.nets.winograd_kernel): "
          + ("in use" if winograd_kernel.available() else f"not available, {winograd_kernel.unavailable_reason()}"))
    problem_with_torch = torch_plausible(rates)
    if problem_with_torch:
        print(f"PyTorch reference implausible ({problem_with_torch}): its times and the ratios are not meaningful")
    print(f"The engine's step (value_and_grad of Eq. 1 + Algorithm 1) vs PyTorch eager (loss + update); "
          f"{FLAGS.rounds} alternating runs of {FLAGS.iterations} steps each (medians); jax {jax.__version__} on "
          f"{jax.devices()[0].platform}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"{'case':<18} {'batch':>5} {'loop':>20} {'jax ms':>8} {'torch ms':>9} {'ms/restart':>10} {'jax/torch':>9} "
          f"{'range':>9} {'vs batch 1':>10} {'compile s':>9} {'temp MiB':>8} {'GFLOP':>6} {'jax GF/s':>8} "
          f"{'torch GF/s':>10}")
    for name in FLAGS.cases:
        case = CASES[name]()
        model, size = case.model, case.model.input_size
        representation = taps.representation(model, case.layer)
        problem = preimage.Problem(C=1.0, bound_plus=BOUND_PLUS, jitter=1)
        sample = images.load_sample_image(size=size)
        target = preimage.make_target(representation, problem, sample)
        network_input = model.preprocess(sample)
        code = nets.apply(model.table, model.params, jnp.asarray(network_input[None]), upto=case.layer)[case.layer][0]
        single = {}
        for batch in batches:
            x0 = np.random.default_rng(0).normal(0, 10, (batch, size, size, 3)).astype(np.float32)
            torch_run = torch_timer(case.torch_net, code, x0, FLAGS.iterations)
            with convolution_choice("direct"):  # FLOPs of the direct convolutions in every row, as PyTorch's
                _, flops = step_costs(representation, problem, target, size, batch)
            for loop, convolutions, kernels in ((lp, cv, k) for lp in FLAGS.loops for cv in FLAGS.convolutions
                                                for k in FLAGS.cpu_kernels):
                with convolution_choice(convolutions), cpu_kernels(kernels):
                    jax_run, compile_seconds = engine_timer(representation, problem, target, size, batch, loop,
                                                            FLAGS.iterations)
                    temp, _ = step_costs(representation, problem, target, size, batch)
                    times = interleaved({"jax": jax_run, "torch": torch_run}, FLAGS.rounds)
                seconds, torch_seconds = statistics.median(times["jax"]), statistics.median(times["torch"])
                ratios = [j / t for j, t in zip(times["jax"], times["torch"])]
                single.setdefault((loop, convolutions, kernels), seconds if batch == 1 else None)
                base = single[(loop, convolutions, kernels)]
                versus = "" if base is None else f"{seconds / batch / base:10.2f}"
                label = "/".join([loop] + ([convolutions] if FLAGS.convolutions != ["auto"] else [])
                                 + ([kernels] if FLAGS.cpu_kernels != ["library"] else []))
                print(f"{name:<18} {batch:>5} {label:>20} {1e3 * seconds:8.1f} {1e3 * torch_seconds:9.1f} "
                      f"{1e3 * seconds / batch:10.1f} {statistics.median(ratios):9.2f} "
                      f"{f'{min(ratios):.2f}-{max(ratios):.2f}':>9} {versus:>10} {compile_seconds:9.1f} "
                      f"{temp / 2 ** 20:8.0f} {flops / 1e9:6.1f} {flops / seconds / 1e9:8.0f} "
                      f"{flops / torch_seconds / 1e9:10.0f}", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10
    print(f"peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    timing.run(main)
