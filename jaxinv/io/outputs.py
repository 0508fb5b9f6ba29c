"""Writing outputs so that nothing is silently wrong or lost: files written atomically (JSON metrics, figures)
with the user's umask, and folders of saved weights replaced atomically (`replace_directory`). What a saved
folder holds and how loading checks it is `jaxinv.io.checkpoints`."""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
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


def strict_json(data):
    """`data` with every NaN or infinite float as None: standard JSON has no NaN or Infinity (Python's
    json writes them, and strict readers such as JavaScript's JSON.parse reject the file). A statistic
    that is undefined (the spread of one restart) or a value that diverged reads as null."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(value) for value in data]
    return data


def write_json(path: str, data) -> str:
    """Writes `data` as indented, standard JSON (`strict_json`: no NaN or Infinity) to `path` atomically."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(strict_json(data), f, indent=2, sort_keys=False, allow_nan=False)
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


# ---------------------------------------------------------------------------------------------------------------
# Weights: fingerprints, finiteness


_REPLACE_LOCK = threading.RLock()
_IN_PROGRESS: set[str] = set()  # sibling folders this process is writing now
_SERIAL = itertools.count()


def _siblings(directory: str) -> list[tuple[str, str, int]]:
    """(kind, path, pid) of the folders that replace_directory made beside `directory`: DIR.tmp-PID-N (being
    written), DIR.new-PID-N (complete, not yet swapped in), DIR.old-PID-N (the previous version)."""
    parent, base = os.path.split(directory)
    pattern = re.compile(rf"^{re.escape(base)}\.(tmp|new|old)-(\d+)-(\d+)$")
    try:
        names = os.listdir(parent or ".")
    except OSError:
        return []
    found = []
    for name in sorted(names):
        match = pattern.match(name)
        if match:
            found.append((match.group(1), os.path.join(parent, name), int(match.group(2))))
    return found


def _stale(path: str, pid: int) -> bool:
    return path not in _IN_PROGRESS and (pid == os.getpid() or not _pid_alive(pid))


def _sibling(directory: str, kind: str) -> str:
    return f"{directory}.{kind}-{os.getpid()}-{next(_SERIAL)}"


def _swap_in(directory: str, new: str, owned, step) -> None:
    """Makes the complete folder `new` the folder `directory`: the entries of the current `directory` that are not
    `owned` (a training run's checkpoints, lock, logs...) move into `new` first, then two renames swap the folders
    and the old one is removed. Every step leaves a state that recover_directory completes."""
    if os.path.lexists(directory):
        for name in sorted(os.listdir(directory)):
            if name not in owned and not os.path.lexists(os.path.join(new, name)):
                os.rename(os.path.join(directory, name), os.path.join(new, name))
                step(f"moved {name}")
        old = _sibling(directory, "old")
        os.rename(directory, old)
        step("old renamed")
        os.rename(new, directory)
        step("new renamed")
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, directory)
        step("new renamed")


def _after_step(name: str) -> None:
    """Called after each step of replace_directory (tests replace it to interrupt a replacement there)."""


def recover_directory(directory: str, owned) -> bool:
    """Completes or undoes a replace_directory of `directory` that a killed process left unfinished: removes
    incomplete new versions (DIR.tmp-*), swaps in a complete one (DIR.new-*), removes a previous version
    (DIR.old-*) once DIR exists, and renames the previous version back to DIR if DIR is missing. Siblings of
    processes that still run are left alone. Returns whether anything was changed."""
    directory = os.path.realpath(directory)  # a symbolic link keeps pointing at the replaced folder
    with _REPLACE_LOCK:
        stale = [(kind, path) for kind, path, pid in _siblings(directory) if _stale(path, pid)]
        if not stale:
            return False
        for kind, path in stale:
            if kind == "tmp":
                shutil.rmtree(path, ignore_errors=True)
        complete = sorted((path for kind, path in stale if kind == "new"), key=os.path.getmtime)
        for path in complete[:-1]:
            shutil.rmtree(path, ignore_errors=True)
        if complete:
            _swap_in(directory, complete[-1], set(owned), lambda name: None)
        olds = sorted((path for kind, path in stale if kind == "old"), key=os.path.getmtime)
        if olds and not os.path.lexists(directory):
            os.rename(olds.pop(), directory)
        for path in olds:
            shutil.rmtree(path, ignore_errors=True)
        return True


def replace_directory(directory: str, write, owned) -> str:
    """Replaces the entries `owned` (names) of folder `directory` by those that `write(folder)` creates in an empty
    folder, so that a process killed at any moment leaves either the old or the new version complete.

    `write` fills a sibling folder DIR.tmp-PID-N; once it returns, that folder is renamed DIR.new-PID-N (the
    commit point), the other entries of the existing DIR (not `owned`) are moved into it, DIR is renamed
    DIR.old-PID-N, DIR.new-PID-N renamed DIR, and DIR.old-PID-N removed. What a killed process leaves is
    completed by recover_directory, which this calls first (and loaders should call before reading). If `write` or
    a rename fails with an exception, the attempt is cleaned up or completed before the exception propagates.
    Concurrent replacements of one folder by several processes are not coordinated."""
    given = os.path.abspath(directory)
    directory = os.path.realpath(directory)  # a symbolic link keeps pointing at the replaced folder
    owned = set(owned)

    def step(name):
        _after_step(name)

    with _REPLACE_LOCK:
        recover_directory(directory, owned)
        staging = _sibling(directory, "tmp")
        _IN_PROGRESS.add(staging)
        new = staging
        try:
            os.makedirs(staging)
            write(staging)
            extra = sorted(set(os.listdir(staging)) - owned)
            if extra:
                raise ValueError(f"replace_directory: writing {directory} created {extra}, not among {sorted(owned)}")
            step("written")
            new = _sibling(directory, "new")
            _IN_PROGRESS.add(new)
            os.rename(staging, new)
            step("committed")
            _swap_in(directory, new, owned, step)
        except Exception:
            _IN_PROGRESS.difference_update({staging, new})
            try:
                recover_directory(directory, owned)
            except Exception:
                pass
            raise
        finally:
            _IN_PROGRESS.difference_update({staging, new})
    return given


def pyplot():
    """matplotlib's pyplot with the non-interactive Agg backend (figures are written to files)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib, a dependency of jaxinv: pip install matplotlib") from None
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
