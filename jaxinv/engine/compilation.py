"""Counting XLA compilations, to check (in tests) and report (in benchmarks) that compiled steps are reused."""
from __future__ import annotations

import contextlib
import dataclasses

import jax

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
