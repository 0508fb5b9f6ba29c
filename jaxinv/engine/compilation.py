"""Compiling once: counting XLA compilations (tests and benchmarks check that compiled steps are reused), and
the persistent compilation cache that lets a second run of a binary skip compiling what the first compiled."""
from __future__ import annotations

import contextlib
import dataclasses
import os

import jax

from jaxinv.io import cache

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
