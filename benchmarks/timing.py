"""Wall-clock timing of warm (already compiled) calls: the median of repeated runs."""
from __future__ import annotations

import statistics
import time

import jax


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
