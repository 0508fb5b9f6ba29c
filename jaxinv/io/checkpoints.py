"""Checkpoints: the one way jaxinv stores pytrees of arrays (orbax), and the checks loading makes.

- `write_tree` / `read_tree`: one pytree in one folder (a saved network's or inverter's params, a study
  unit); orbax writes a temporary folder and renames it when complete.
- `RunCheckpoints`: the latest states of a resumable run (training), restored as uncommitted arrays so
  that a resumed run hits the compiled step of a fresh one.
- `weights_fingerprint` (the one weights hash), `fingerprints`, `check_weights` (finite, fingerprint) and
  `check_fields` (metadata schema): what saved networks and inverters record and verify.
- `check_fingerprint`: the one rule of resumable runs and studies (a folder of checkpoints or cached batches
  records every setting that changes its results; a run with other settings is refused before it computes).
"""
from __future__ import annotations

import hashlib
import json
import math
import os

from jaxinv.io import distributed, outputs, paths

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


def read_tree(params_dir: str):
    """The pytree in the orbax checkpoint `params_dir`: a missing folder raises FileNotFoundError, an unreadable
    one ValueError naming it (instead of tensorstore's errors)."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(params_dir):
        raise FileNotFoundError(f"{params_dir} not found: the parameters of the saved model are missing")
    try:
        with ocp.StandardCheckpointer(**distributed.orbax_options()) as checkpointer:
            if distributed.current().several:  # saved by another topology: read as NumPy arrays, from the shapes
                return checkpointer.restore(params_dir, _numpy_target(checkpointer.metadata(params_dir)))
            return checkpointer.restore(params_dir)
    except Exception as e:  # orbax/tensorstore raise assorted types (ValueError, FileNotFoundError, RuntimeError...)
        raise ValueError(f"{params_dir}: cannot read the saved parameters, corrupt or incomplete "
                         f"({type(e).__name__}: {str(e)[:300]})") from e


def _numpy_target(metadata):
    """Zeros of the shapes and dtypes a checkpoint's metadata records: the target that restores it as NumPy."""
    import jax
    import numpy as np

    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    return jax.tree_util.tree_map(lambda m: np.zeros(m.shape, m.dtype) if hasattr(m, "shape") else m, tree)


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


def check_fingerprint(directory: str, fingerprint: dict, holds: str, file: str) -> None:
    """Records `fingerprint` (every setting that changes the results kept in `directory`, as JSON) in
    `directory`/`file` on a first run; on a later run, raises ValueError naming the keys that differ (saved and
    asked values) unless they agree, before anything is computed. `holds` says what the folder holds ("units of a
    different study"). Callers hold the folder's lock (`jaxinv.io.paths.lock_folder`) around the check and the run."""
    wanted = json.loads(json.dumps(outputs.strict_json(fingerprint)))  # as it reads back: tuples as lists, NaN None
    path = os.path.join(directory, file)
    if not os.path.isfile(path):
        outputs.write_json(path, wanted)
        return
    stored = outputs.read_json(path)
    if stored == wanted:
        return
    stored = stored if isinstance(stored, dict) else {}
    keys = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    shown = ", ".join(f"{k} (saved {_short(stored.get(k))}, asked {_short(wanted.get(k))})" for k in keys)
    raise ValueError(f"{directory} holds {holds} (differs in: {shown}); use another output folder, or the same "
                     f"settings to resume")


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------------------------------
# Folders replaced atomically (saved networks and inverters)


def write_tree(path: str, tree) -> None:
    """Saves a pytree of arrays in the folder `path`, replacing one there (orbax: a temporary folder
    renamed when complete, so a killed write leaves no half-written checkpoint under `path`). A folder that cannot
    be written is a ValueError before orbax starts (a failed orbax save leaves a thread that keeps the process
    from exiting). In a run of several processes, the calling process writes alone (study units: each its own)."""
    import orbax.checkpoint as ocp

    paths.check_writable(os.path.dirname(os.path.abspath(path)), "folder")
    with ocp.StandardCheckpointer(**distributed.orbax_options()) as checkpointer:
        checkpointer.save(os.path.abspath(path), _own(tree), force=True)


def uncommitted(tree):
    """Host copies of a tree's arrays as fresh (uncommitted) jax arrays: restored and freshly made states
    then hit the same compiled program (jit's cache tells committed from uncommitted arrays)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)), tree)


class RunCheckpoints:
    """The latest `keep` states of a resumable run, numbered by step, under `directory`. In a run of several
    processes (`jaxinv.io.distributed`) it is one process's own (the primary's: training writes from process 0)."""

    def __init__(self, directory: str, keep: int = 2):
        import orbax.checkpoint as ocp

        paths.check_writable(directory, "checkpoint folder")  # before orbax (see write_tree)
        self._ocp = ocp
        self.manager = ocp.CheckpointManager(os.path.abspath(directory),
                                             options=ocp.CheckpointManagerOptions(
                                                 max_to_keep=keep, **distributed.orbax_options(create=False)))
        self.directory = str(self.manager.directory)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore(self, like):
        """The latest state, shaped like `like`, as uncommitted arrays."""
        state = self.manager.restore(self.latest_step(), args=self._ocp.args.StandardRestore(_own(like)))
        return uncommitted(state)

    def save(self, step: int, state) -> None:
        """Saves `state` as `step` and waits until it is on disk."""
        self.manager.save(step, args=self._ocp.args.StandardSave(_own(state)))
        self.manager.wait_until_finished()


def _own(tree):
    """In a run of several processes, a tree that this process saves or restores alone as NumPy arrays (orbax
    refuses to write a process's own jax.Arrays there; replicated ones are taken from this process's copy);
    with one process the tree itself."""
    if not distributed.current().several:
        return tree
    import jax
    import numpy as np

    return jax.tree_util.tree_map(np.asarray, distributed.local_copy(tree))
