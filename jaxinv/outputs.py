"""Writing experiment outputs atomically: JSON metrics and matplotlib figures."""
from __future__ import annotations

import json
import os
import tempfile


class OutputBusyError(RuntimeError):
    """An output folder is in use by another running process."""


def atomic_write(path: str, write, suffix: str) -> str:
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it to `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json(path: str, data) -> str:
    """Writes `data` as indented JSON to `path` atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
    return atomic_write(path, write, ".json")


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def pyplot():
    """matplotlib's pyplot with the non-interactive Agg backend (figures are written to files)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'jaxinv[experiments]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(path: str, figure) -> str:
    """Saves a matplotlib figure as PNG atomically and closes it."""
    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"), ".png")
    finally:
        pyplot().close(figure)


def plot_energy_terms(history: dict, path: str, title: str = "") -> str:
    """Per-iteration energy, C*loss-free loss, and regularisers (mean over restarts, log scale)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("energy", "loss", "range", "tv"):
        values = history[name]
        ax.plot(values.mean(axis=1), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("value (mean over restarts)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(path, fig)
