"""Writing outputs so that nothing is silently wrong or lost: files written atomically (JSON metrics, figures),
folders of saved weights replaced atomically, and the checks that loading saved weights makes
(weights_fingerprint, finiteness, metadata fields)."""
from __future__ import annotations

import hashlib
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


# ---------------------------------------------------------------------------------------------------------------
# Weights: fingerprints, finiteness


FINGERPRINT_VERSION = 1


def weights_fingerprint(tree) -> str:
    """SHA-256 (hex) identifying the values of a pytree of arrays (parameters, a mean image, any array).

    The hash covers, for every leaf in the order of its sorted key path (`jax.tree_util.keystr`, e.g.
    "['conv1']['w']"): the key path, the shape, the dtype name and the C-order little-endian bytes. It is therefore
    independent of dict insertion order, of where the arrays live (NumPy or any JAX device) and of the container
    types that spell the same key paths (a dict or a FrozenDict, a list or a tuple), and it changes with any
    renamed, reshaped, retyped or modified leaf. A bare array is a tree of one leaf with the empty key path. None
    leaves are ignored (as by jax.tree_util). Version FINGERPRINT_VERSION; stored fingerprints name it.
    """
    import jax
    import numpy as np

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    keyed = sorted(((jax.tree_util.keystr(path), leaf) for path, leaf in leaves), key=lambda item: item[0])
    digest = hashlib.sha256(b"jaxinv-weights-v1\0")
    for key, leaf in keyed:
        array = np.asarray(leaf)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        array = np.ascontiguousarray(array)
        header = json.dumps([key, list(array.shape), array.dtype.name]).encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        digest.update(array.nbytes.to_bytes(8, "little"))
        digest.update(array.tobytes())
    return digest.hexdigest()


def non_finite_leaves(tree) -> list[str]:
    """Key paths of the floating-point (or complex) leaves of `tree` that hold a NaN or an infinity, each with the
    count, e.g. "['conv1']['w'] (12 of 864 values)"."""
    import jax
    import numpy as np

    found = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        array = np.asarray(leaf)
        if not (np.issubdtype(array.dtype, np.inexact) or array.dtype.name == "bfloat16"):
            continue
        bad = int(array.size - np.count_nonzero(np.isfinite(array.astype(np.float32)
                                                            if array.dtype.name == "bfloat16" else array)))
        if bad:
            found.append(f"{jax.tree_util.keystr(path) or 'the array'} ({bad} of {array.size} values)")
    return found


def fingerprints(**trees) -> dict:
    """{"version": FINGERPRINT_VERSION, name: weights_fingerprint(tree)} for the trees that are not None: what saved
    networks and inverters record in their metadata under "fingerprints"."""
    return dict(version=FINGERPRINT_VERSION, **{name: weights_fingerprint(tree) for name, tree in trees.items()
                                                 if tree is not None})


def read_checkpoint(params_dir: str):
    """The pytree in the orbax checkpoint `params_dir`: a missing folder raises FileNotFoundError, an unreadable
    one ValueError naming it (instead of tensorstore's errors)."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(params_dir):
        raise FileNotFoundError(f"{params_dir} not found: the parameters of the saved model are missing")
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            return checkpointer.restore(params_dir)
    except Exception as e:  # orbax/tensorstore raise assorted types (ValueError, FileNotFoundError, RuntimeError...)
        raise ValueError(f"{params_dir}: cannot read the saved parameters, corrupt or incomplete "
                         f"({type(e).__name__}: {str(e)[:300]})") from e


def check_weights(tree, path: str, metadata: dict, name: str, metadata_path: str) -> None:
    """Raises ValueError naming `path` if `tree` (read from `path`) holds a NaN or an infinity, or if its fingerprint
    differs from metadata["fingerprints"][name]. Metadata without fingerprints (folders saved by older versions)
    skip the comparison."""
    bad = non_finite_leaves(tree)
    if bad:
        raise ValueError(f"{path}: non-finite values (NaN or infinity) in {', '.join(bad[:5])}"
                         f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}: corrupt or diverged weights")
    recorded = metadata.get("fingerprints")
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise ValueError(f"{metadata_path}: 'fingerprints' should be a dict, got {type(recorded).__name__}")
    if recorded.get("version") != FINGERPRINT_VERSION:
        raise ValueError(f"{metadata_path}: fingerprints of version {recorded.get('version')!r}; this jaxinv "
                         f"checks version {FINGERPRINT_VERSION} (saved by another jaxinv version?)")
    if name not in recorded:
        raise ValueError(f"{metadata_path} records no fingerprint of {name!r} but {path} exists")
    actual = weights_fingerprint(tree)
    if actual != recorded[name]:
        raise ValueError(f"{path} does not match its checksum in {metadata_path} (recorded sha256 "
                         f"{str(recorded[name])[:16]}..., read {actual[:16]}...): the files are corrupt or were modified")


def check_fields(metadata, path: str, fields: dict) -> None:
    """Raises ValueError naming `path` unless `metadata` is a dict whose keys in `fields` (name: check) pass their
    check. A check is a type or tuple of types (bool never passes for int or float), or a function of the value
    returning an error text (or None); a field whose check is wrapped as `optional(check)` may be absent or None."""
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(metadata).__name__}")
    for name, check in fields.items():
        is_optional = isinstance(check, _Optional)
        if is_optional:
            check = check.check
        if name not in metadata or metadata[name] is None:
            if is_optional:
                continue
            raise ValueError(f"{path}: required key {name!r} is missing")
        value = metadata[name]
        if isinstance(check, (type, tuple)):
            types = check if isinstance(check, tuple) else (check,)
            problem = (None if isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
                       else f"should be {' or '.join(t.__name__ for t in types)}, got {type(value).__name__} {value!r}")
        else:
            problem = check(value)
        if problem:
            raise ValueError(f"{path}: key {name!r} {problem}")


class _Optional:
    def __init__(self, check):
        self.check = check


def optional(check):
    """Marks a field of check_fields as optional."""
    return _Optional(check)


def number_list(length: int | None = None):
    """A check_fields check: a list of finite numbers (of `length`, if given)."""
    def check(value):
        if (not isinstance(value, list) or (length is not None and len(value) != length)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            return f"should be a list of {length or 'some'} finite numbers, got {value!r}"
        return None
    return check


# ---------------------------------------------------------------------------------------------------------------
# Folders replaced atomically (saved networks and inverters)

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
