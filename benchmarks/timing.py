"""Wall-clock timing of warm (already compiled) calls, and of the pre-image engine's step: shared by the benchmarks."""
from __future__ import annotations

import contextlib
import statistics
import time

import jax
import numpy as np
from absl import app

from jaxinv import nets, representations
from jaxinv.engine import compilation, preimage
from jaxinv.io import images, progress
from jaxinv.methods import inversion


CPU_KERNELS = {"library": compilation.CPU_OPTIONS, "xla": None,
               "eigen": {"xla_cpu_experimental_ynn_fusion_type": ""}}
"""Kernel choices the benchmarks time on CPU: the library's default (`compilation.CPU_OPTIONS`: Eigen
convolutions, YNNPACK matmuls and reductions), XLA's default (YNNPACK for all three), and Eigen for all."""


def drop_compiled_steps() -> None:
    """Forgets the engine's compiled steps (jit's caches and `preimage`'s), so that the next run traces and
    compiles them again under changed settings (convolution rules and XLA options are read then)."""
    preimage._compiled_steps.cache_clear()
    jax.clear_caches()


def run(main) -> None:
    """`app.run(main)` for a benchmark, with the binaries' quiet logs (`progress.quiet_logs`: INFO lines only with
    --verbosity=0). The compilation cache stays off: the benchmarks report compile seconds."""
    def quietly(argv):
        progress.quiet_logs()
        return main(argv)
    app.run(quietly)


def check_choices(flag: str, values, valid) -> None:
    """Refuses (absl UsageError) values of the list flag `--flag` that are not among `valid`, naming them."""
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise app.UsageError(f"unknown --{flag} {unknown}; valid: {', '.join(valid)}")


CPU_KERNELS_HELP = ("on CPU, the kernels to time: library (`compilation.CPU_OPTIONS`, the library's default), xla "
                    "(XLA's default), eigen (Eigen for convolutions and matmuls)")
"""Help of the --cpu_kernels flag that the benchmarks timing the engine's steps declare."""


@contextlib.contextmanager
def cpu_kernels(name: str):
    """The engine's steps compiled with the CPU_KERNELS choice `name`; compiled steps are dropped on entry and
    exit."""
    if name not in CPU_KERNELS:
        raise ValueError(f"unknown CPU kernels {name!r}; valid: {', '.join(CPU_KERNELS)}")
    saved = compilation.cpu_options
    compilation.cpu_options = CPU_KERNELS[name]
    drop_compiled_steps()
    try:
        yield
    finally:
        compilation.cpu_options = saved
        drop_compiled_steps()


def median_seconds(fn, *args, repeats: int = 20, warmup: int = 2) -> float:
    """Median seconds of `fn(*args)` (outputs blocked on), after `warmup` untimed calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def engine_timer(representation, problem, target, size: int, batch: int, loop: str, iterations: int):
    """(timer, seconds spent compiling): the engine's step of `batch` restarts, compiled by a first run of
    `iterations` steps; each timer() call runs `iterations` more and returns the seconds per iteration."""
    def run():
        return preimage.solve(representation, problem, target, image_shape=(size, size), key=jax.random.key(0),
                              restarts=batch, stages=(preimage.Stage(iterations, 1.0, False),), loop=loop,
                              progress_every=iterations)
    with compilation.counting() as compiled:
        run()
    return (lambda: run().seconds / iterations), compiled.seconds


def engine_run(representation, problem, target, size: int, batch: int, loop: str, iterations: int):
    """(seconds per iteration, the best of two warm runs; seconds spent compiling) of the engine's step."""
    timer, compile_seconds = engine_timer(representation, problem, target, size, batch, loop, iterations)
    return min(timer() for _ in range(2)), compile_seconds


def interleaved(timers: dict, rounds: int) -> dict:
    """{name: [seconds of each round]}: the timers (callables returning seconds) called in turn, `rounds` times.
    Alternating them gives every timer the same machine: on this CPU the same step drifts by up to 35% between
    minutes, so timers run one after the other compare the minutes as much as the code."""
    seconds = {name: [] for name in timers}
    for _ in range(rounds):
        for name, timer in timers.items():
            seconds[name].append(timer())
    return seconds


def step_costs(representation, problem, target, size: int, batch: int) -> tuple[int, float]:
    """(temporary buffer bytes XLA assigns to one compiled step of `batch` restarts, i.e. its working set above
    arguments and outputs; the step's floating-point operations by XLA's cost analysis)."""
    compiled = preimage.compile_step(representation, problem, target, (size, size), batch)
    costs = compiled.cost_analysis()
    costs = costs[0] if isinstance(costs, (list, tuple)) else costs
    return compiled.memory_analysis().temp_size_in_bytes, float(costs.get("flops", float("nan")))


def random_model(arch: str, size: int) -> nets.Model:
    """A layer-table network of `arch` at `size` px with random (He-normal) weights and the Caffe convention."""
    table = nets.build(arch)
    params = nets.init_params(table, jax.random.PRNGKey(0), size)
    return nets.Model(arch=arch, table=table, params=params, input_size=size,
                      convention=dict(nets.model.CAFFE_CONVENTION))


def inversion_seconds(representation_name: str, size: int, stages, restarts: int, loop: str = "scan"):
    """(first, warm) wall seconds of a whole inversion of the grey sample image at size x size by the named
    shallow representation (`representations.get`): the first run compiles, the second is warm."""
    image = images.load_sample_image(grey=True, size=size)
    representation = representations.get(representation_name)
    problem = inversion.shallow_problem()
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        inversion.invert_images(representation, [image], problem=problem, restarts=restarts, stages=stages,
                                loop=loop)
        timings.append(time.perf_counter() - start)
    return timings[0], timings[1]


def crop_rates(size: int, batch: int, repeats: int) -> dict | None:
    """Training crops per second at `size` (None without the ImageNet samples): {"one thread": rate of
    `ImageSource.sample(threads=False)` (one crop after another in the calling thread), "threads": rate of
    `ImageSource.sample` (resizing in one thread per CPU)}; both make the same crops."""
    from jaxinv.inverters import data

    try:
        source = data.ImageSource("imagenet", size)
    except FileNotFoundError:
        return None

    one_by_one = lambda: source.sample(np.random.default_rng(0), batch, threads=False)
    threaded = lambda: source.sample(np.random.default_rng(0), batch)
    return {name: batch / median_seconds(make, repeats=repeats)
            for name, make in (("one thread", one_by_one), ("threads", threaded))}
