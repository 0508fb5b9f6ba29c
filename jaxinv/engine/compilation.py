"""Compiling: the XLA options jaxinv's own steps compile with (`jit`), counting XLA compilations (tests and
benchmarks check that compiled steps are reused), and the persistent compilation cache that lets a second run
of a binary skip compiling what the first compiled."""
from __future__ import annotations

import contextlib
import dataclasses
import os

import jax

from jaxinv.io import cache

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
"""XLA CPU's default hands convolutions, matmuls and reductions to YNNPACK. For jaxinv's float32 steps on this
project's CPU, convolutions ran faster through Eigen (XLA's other kernels) and matmuls faster through
YNNPACK (caffe-ref's fully connected layers at 8 restarts), so the steps keep YNNPACK for matmuls and
reductions only (docs/performance.md, "XLA CPU kernels"). The options are set per program, not
process-wide with XLA_FLAGS, because float64 programs (the conversion checks) ran 2.5x slower with Eigen
convolutions."""

cpu_options: dict | None = CPU_OPTIONS
"""What `jit` compiles with on CPU (benchmarks set other options, or None for XLA's default, to time them)."""


def compiler_options() -> dict | None:
    """The options `jit` passes to XLA: `cpu_options` (CPU_OPTIONS unless a benchmark set others) on the CPU
    backend, unless the user's XLA_FLAGS name one of them themselves (their choice wins); None elsewhere."""
    if cpu_options is None or jax.default_backend() != "cpu":
        return None
    if any(name in os.environ.get("XLA_FLAGS", "") for name in cpu_options):
        return None
    return dict(cpu_options)


def jit(fun, **kwargs):
    """`jax.jit` with `compiler_options()`: how jaxinv compiles its float32 steps (pre-image solvers, inverter
    training). The options are read when the function is wrapped."""
    return jax.jit(fun, compiler_options=compiler_options(), **kwargs)


PERSISTENT_MIN_COMPILE_SECONDS = 0.5
"""Programs that took less to compile are not written to the persistent cache (reading one costs ~10 ms)."""

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_active: list["Compilations"] = []
_listening = False


@dataclasses.dataclass
class Compilations:
    """XLA backend compilations seen inside a `counting()` block: how many, and their total seconds."""
    count: int = 0
    seconds: float = 0.0


def _listener(event: str, duration: float, **_) -> None:
    if event == BACKEND_COMPILE_EVENT:
        for record in _active:
            record.count += 1
            record.seconds += duration


@contextlib.contextmanager
def counting():
    """`with counting() as c: ...` counts every XLA compilation in the block (jit and eager ops alike)."""
    global _listening
    if not _listening:  # jax.monitoring has no way to unregister one listener: register once, filter by _active
        jax.monitoring.register_event_duration_secs_listener(_listener)
        _listening = True
    record = Compilations()
    _active.append(record)
    try:
        yield record
    finally:
        _active.remove(record)


def persistent_cache_dir() -> str:
    """<cache root>/xla: where the binaries keep compiled programs between runs."""
    return os.path.join(cache.cache_root(), "xla")


def enable_persistent_cache(directory: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache in `directory` (default `persistent_cache_dir()`) for
    this process: a later process compiling the same program (same shapes, flags, jax version) reads
    it instead. Returns the directory."""
    directory = directory or persistent_cache_dir()
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", PERSISTENT_MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
