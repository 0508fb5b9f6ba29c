"""Progress bars (tqdm, on stderr) with the count, the total, the rate and the time left: the iterations of one
optimisation, the units of a study (layers, (layer, C) pairs, batches), training steps.

Library functions are silent by default and show bars on request: their `progress` argument is True (bars),
False (none), None (the process's default, `show_by_default`: off unless turned on) or, where an optimisation
runs, the engine's callback `progress(done, terms, elapsed)` (`jaxinv.engine.preimage.solve`), which
`solver_progress` makes of the others. The binaries turn the default on (`jaxinv.io.cli.run`), so every long
run shows bars without each binary asking. A bar inside another (an optimisation inside a study's unit) is
drawn below it and removed when done (tqdm's nesting); the outer one stays.
"""
from __future__ import annotations

import contextlib
import sys
import weakref

import numpy as np
from tqdm import tqdm

_OPEN: weakref.WeakSet = weakref.WeakSet()
_by_default = False


def show_by_default(show: bool = True) -> None:
    """Whether `progress=None` (the library's default) shows bars in this process: the binaries turn it on."""
    global _by_default
    _by_default = bool(show)


def quiet_logs() -> None:
    """absl's logging at WARNING unless the command line set --verbosity: INFO lines (orbax logs every checkpoint,
    JAX each backend it could not start, "Unable to initialize backend 'tpu'") would bury the progress and results."""
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def wanted(progress) -> bool:
    """Whether a `progress` argument asks for bars: True, or None while the process's default is on (an engine
    callback asks for none: it reports the iterations itself)."""
    return _by_default if progress is None else progress is True


def bar(total: int | None, desc: str, unit: str = "it", *, enabled: bool = True, leave: bool | None = None,
        initial: int = 0) -> tqdm:
    """A bar of `total` `unit`s on stderr (disabled: a bar that draws nothing). Redrawn at most every half
    second on a terminal, every 15 s into a file or pipe (logs stay short); the last state is always drawn.
    `leave` None: kept when it is the outermost bar, removed when drawn inside another."""
    interactive = bool(getattr(sys.stderr, "isatty", lambda: False)())
    made = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled, leave=leave,
                initial=initial, dynamic_ncols=True, mininterval=0.5 if interactive else 15.0)
    if enabled:
        _OPEN.add(made)
    return made


def units(total: int, desc: str, progress=None, *, initial: int = 0) -> tqdm:
    """A study's bar of `total` units (layers, (layer, C) pairs, batches), `initial` of them already done;
    drawn when `progress` asks for bars (`wanted`)."""
    return bar(total, desc, "unit", enabled=wanted(progress), initial=initial)


def each(items, desc: str, progress=None):
    """`items`, with a bar of units over them when `progress` asks for bars."""
    items = list(items)
    with units(len(items), desc, progress) as shown:
        for item in items:
            yield item
            shown.update()


def solver_progress(progress, stages, desc: str = "iterations"):
    """The engine's `progress` callback for a library function's `progress` argument: a callable -> itself;
    bars wanted (`wanted`) -> a bar over the iterations of `stages` (with the mean energy), closed at the
    last one; else None."""
    if callable(progress):
        return progress
    if not wanted(progress):
        return None
    total = sum(stage.iterations for stage in stages)
    shown = bar(total, desc)

    def update(done, terms, elapsed):
        shown.set_postfix(energy=f"{float(np.mean(terms['energy'])):.4g}", refresh=False)
        shown.update(done - shown.n)
        if done >= total:
            shown.close()
    return update


def close_all() -> None:
    """Closes every open bar (before an error message, so that it gets a line of its own)."""
    for made in list(_OPEN):
        made.close()


class _LinesBesideBars:
    """stdout that lifts the bars on stderr while it writes (on a terminal both share the screen). Text is
    written a whole line at a time: a redrawn bar would overwrite the start of a line written in pieces."""

    def __init__(self, stream):
        self._stream, self._pending = stream, ""

    def write(self, text):
        self._pending += text
        if "\n" in self._pending:
            lines, self._pending = self._pending.rsplit("\n", 1)
            self._write(lines + "\n")
        return len(text)

    def flush(self):
        if self._pending:
            self._write(self._pending)
            self._pending = ""
        self._stream.flush()

    def _write(self, text):
        with tqdm.external_write_mode(file=sys.stderr):
            self._stream.write(text)
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def lines_beside_bars():
    """While open, lines printed to stdout do not break the bars when stdout and stderr are one terminal."""
    stdout = sys.stdout
    if not (getattr(stdout, "isatty", lambda: False)() and getattr(sys.stderr, "isatty", lambda: False)()):
        yield
        return
    sys.stdout = lines = _LinesBesideBars(stdout)
    try:
        yield
    finally:
        lines.flush()
        sys.stdout = stdout
