"""Writing experiment outputs atomically: JSON metrics and matplotlib figures."""
from __future__ import annotations

import json
import os
import re
import tempfile
import threading


class OutputBusyError(RuntimeError):
    """An output folder is in use by another running process."""


# ---------------------------------------------------------------------------------------------------------------
# Files written atomically


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status); elsewhere it is read by setting
    and restoring it under a lock (os.umask has no read-only form)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()
# Temporary files of atomic_write: ".NAME.tmp-PID-RANDOM[SUFFIX]" beside the file NAME being written.
_TEMPORARY_FILE = re.compile(r"^\..+\.tmp-(\d+)-[a-z0-9_]{8}(\.[A-Za-z0-9]+)?$")


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temporaries(directory: str) -> list[str]:
    """Removes the temporary files that atomic_write left in `directory` when its process was killed: only names
    of its own pattern (".NAME.tmp-PID-XXXXXXXX[.ext]") whose process PID no longer runs. Returns their paths."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY_FILE.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        try:
            if os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
                removed.append(path)
        except OSError:
            pass
    return removed


def atomic_write(path: str, write, suffix: str) -> str:
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it to `path`.

    The file gets the mode of a newly created file (0666 less the umask). The temporary file is named
    ".NAME.tmp-PID-XXXXXXXX<suffix>" (it ends with `suffix`, for writers that infer the format from the name);
    those left behind by a killed process are removed the next time a file is written into the folder."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.tmp-{os.getpid()}-",
                               suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
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
    """The JSON in `path`; a file that is not valid JSON (or UTF-8) raises ValueError naming it."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is corrupt: not valid JSON ({e})") from None


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
