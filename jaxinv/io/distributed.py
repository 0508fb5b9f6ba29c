"""Running one study or training over several processes (hosts) with `jax.distributed`: the one place that
initialises it, the flags the binaries share for it, and the few cross-process steps jaxinv needs.

A multi-process run is asked for by any of (a flag wins over its environment variable):

- --coordinator_address=HOST:PORT  or $JAX_COORDINATOR_ADDRESS (process 0's host, any free port);
- --num_processes=N                or $JAX_NUM_PROCESSES;
- --process_id=I (0 <= I < N)      or $JAX_PROCESS_ID;
- --distributed: initialise with JAX's own detection of a cluster (SLURM, Open MPI, Cloud TPU, Kubernetes),
  which fills in whatever of the three is not given.

None of them (the default): one process, exactly as before; `jax.distributed` is not called at all. Every process
runs the same command; they share the output folder (a shared file system across hosts).

On CPU the cross-process collectives use gloo (`jax_cpu_collectives_implementation`, set before
`jax.distributed.initialize`; jax 0.10.2's default, set anyway). Tested only with 2 CPU processes on one host.

`Processes` (`current()`) is what the libraries ask: this process's index, the count, whether it is the primary
(process 0: the one writer of files), `barrier`, `broadcast` and `agree` (the primary does a step that may fail,
such as taking the output folder's lock or checking a fingerprint; every process then raises its error or goes on).
With one process every one of them is a no-op that calls no JAX function.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable, Sequence, TypeVar

import jax
import numpy as np
from absl import flags

from jaxinv.io.outputs import OutputBusyError

ENVIRONMENT = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
               "process_id": "JAX_PROCESS_ID"}
BARRIER_TIMEOUT = 7 * 24 * 3600
"""Seconds a barrier waits for the other processes (units of a study can take hours; a process that dies ends the
wait sooner: the coordination service reports it)."""
_MESSAGE_BYTES = 2048
_ERRORS = (None, ValueError, OutputBusyError, FileNotFoundError, OSError, FloatingPointError, RuntimeError)

T = TypeVar("T")


def define_flags(flag_values=None) -> None:
    """--coordinator_address, --num_processes, --process_id and --distributed, for the binaries that run on
    several processes; `jaxinv.io.cli.run` initialises from them (`initialize_from_flags`)."""
    from jaxinv.io import cli

    cli._define(flags.DEFINE_string, "coordinator_address", None, "several processes: HOST:PORT of process 0's "
                "coordination service, the same for every process (default: $JAX_COORDINATOR_ADDRESS)", flag_values)
    cli._define(flags.DEFINE_integer, "num_processes", None, "several processes: how many (default: "
                "$JAX_NUM_PROCESSES)", flag_values, lower_bound=1)
    cli._define(flags.DEFINE_integer, "process_id", None, "several processes: this one's index in [0, "
                "num_processes) (default: $JAX_PROCESS_ID); 0 writes the results", flag_values, lower_bound=0)
    cli._define(flags.DEFINE_boolean, "distributed", False, "several processes: initialise jax.distributed from "
                "the cluster (SLURM, Open MPI, Cloud TPU, Kubernetes) for what the three flags above leave unset",
                flag_values)


def settings(coordinator_address: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, environ=None) -> dict:
    """The three settings, each from its argument or else its environment variable (None when neither); a
    ValueError for an environment value that is not a number or a process id out of range."""
    environ = os.environ if environ is None else environ
    given = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    for name, variable in ENVIRONMENT.items():
        if given[name] is None and environ.get(variable, "") != "":
            value = environ[variable]
            if name != "coordinator_address":
                try:
                    value = int(value)
                except ValueError:
                    raise ValueError(f"${variable} must be an integer; got {value!r}") from None
            given[name] = value
    count, index = given["num_processes"], given["process_id"]
    if count is not None and count < 1:
        raise ValueError(f"num_processes must be >= 1; got {count}")
    if index is not None and (index < 0 or (count is not None and index >= count)):
        raise ValueError(f"process_id must be in [0, num_processes); got {index} of {count}")
    address = given["coordinator_address"]
    if address is not None and (":" not in address or not address.rsplit(":", 1)[1].isdigit()):
        raise ValueError(f"coordinator_address must be HOST:PORT; got {address!r}")
    return given


_INITIALIZED = False


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, detect: bool = False, environ=None) -> bool:
    """Initialises `jax.distributed` when a multi-process run is asked for (a setting given, by argument or
    environment variable, or `detect`: JAX's cluster detection), before any JAX computation; returns whether it
    did. Nothing asked: returns False without calling JAX."""
    global _INITIALIZED
    given = settings(coordinator_address, num_processes, process_id, environ)
    if not detect and all(value is None for value in given.values()):
        return False
    if _INITIALIZED:
        return True
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process collectives on CPU
    jax.distributed.initialize(**given)
    _INITIALIZED = True
    return True


def initialize_from_flags(flag_values=None) -> bool:
    """`initialize` from the flags of `define_flags` (their environment variables as defaults)."""
    values = flags.FLAGS if flag_values is None else flag_values
    return initialize(values.coordinator_address, values.num_processes, values.process_id,
                      detect=values.distributed)


def _client():
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


def split_units(work: Sequence[T], count: int, index: int) -> list[T]:
    """The share of process `index` of `count` in the ordered list `work`: items index, index + count, ...
    (round robin: every item goes to exactly one process, in the same order on every process)."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"need 0 <= index < count; got index {index} of {count}")
    return list(work)[index::count]


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place in the run: `index` of `count` (one process: 0 of 1)."""
    index: int = 0
    count: int = 1

    @property
    def primary(self) -> bool:
        """Process 0, the one that writes the run's files."""
        return self.index == 0

    @property
    def several(self) -> bool:
        return self.count > 1

    def share(self, work: Sequence[T]) -> list[T]:
        """This process's items of `work` (`split_units`)."""
        return split_units(work, self.count, self.index)

    def prefix(self) -> str:
        """'[process I/N] ' for the log lines of a multi-process run, else ''."""
        return f"[process {self.index}/{self.count}] " if self.several else ""

    def barrier(self, name: str, timeout: float = BARRIER_TIMEOUT) -> None:
        """Waits until every process has reached the barrier `name` (each name once per run)."""
        if not self.several:
            return
        client = _client()
        if client is not None and hasattr(client, "wait_at_barrier"):
            client.wait_at_barrier(f"jaxinv/{name}", int(timeout * 1000))
        else:  # a collective; it may time out sooner (gloo)
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxinv/{name}")

    def broadcast(self, tree):
        """The primary's pytree of arrays (numpy), on every process (the others pass arrays of the same shapes)."""
        if not self.several:
            return tree
        from jax.experimental import multihost_utils

        return multihost_utils.broadcast_one_to_all(tree)

    def agree(self, step: Callable[[], T], share: bool = False) -> T | None:
        """Runs `step` on the primary only; then every process raises the primary's error (the same type and
        message) or goes on. Returns the step's value on the primary; elsewhere None, or with `share` the
        primary's value (JSON: numbers exactly, tuples as lists)."""
        if not self.several:
            return step()
        import json


        value, error, payload = None, None, b""
        if self.primary:
            try:
                value = step()
                payload = json.dumps(value).encode() if share else b""
            except Exception as e:  # noqa: BLE001 - passed on to every process, then raised
                error = e
                payload = str(e).encode()[:_MESSAGE_BYTES]
        code = 0 if error is None else next((i for i, kind in enumerate(_ERRORS) if kind and type(error) is kind),
                                            len(_ERRORS))
        if len(payload) > _MESSAGE_BYTES:
            raise ValueError(f"a shared value takes at most {_MESSAGE_BYTES} bytes as JSON; got {len(payload)}")
        text = np.zeros(_MESSAGE_BYTES, np.int32)  # bytes summed as int32: exact
        text[:len(payload)] = np.frombuffer(payload, np.uint8)
        code, length, text = self.broadcast((np.int32(code), np.int32(len(payload)), text))
        if error is not None:
            raise error
        received = bytes(np.asarray(text[:int(length)]).astype(np.uint8))
        if int(code):
            kind = _ERRORS[int(code)] if int(code) < len(_ERRORS) else RuntimeError
            raise kind(f"{received.decode(errors='replace')} (process 0)")
        if self.primary or not share:
            return value
        return json.loads(received)


def current() -> Processes:
    """This process's `Processes`: JAX's process index and count once `jax.distributed` is initialised (here or
    by the caller), else 0 of 1 (no JAX call)."""
    if _client() is None:
        return Processes()

    return Processes(jax.process_index(), jax.process_count())


@contextlib.contextmanager
def lock_folder(directory: str, processes: Processes | None = None, **options):
    """`jaxinv.io.paths.lock_folder` for a run of several processes, one writer: the primary takes the lock (a
    second independent run is refused as ever), the others go on once it is held (or raise its error)."""
    from jaxinv.io import paths

    processes = current() if processes is None else processes
    if not processes.several:
        with paths.lock_folder(directory, **options) as held:
            yield held
        return
    with contextlib.ExitStack() as stack:
        processes.agree(lambda: stack.enter_context(paths.lock_folder(directory, **options)))
        yield os.path.abspath(directory)


def hold_folder(directory: str, processes: Processes | None = None, **options) -> str:
    """`jaxinv.io.paths.hold_folder` (the lock for the rest of the process) taken by the primary alone."""
    from jaxinv.io import paths

    processes = current() if processes is None else processes
    processes.agree(lambda: paths.hold_folder(directory, **options))
    return os.path.abspath(directory)


def orbax_options(**more) -> dict:
    """Keyword arguments for orbax checkpointers that this process uses on its own (a study unit, the primary's
    files): in a multi-process run, orbax's default protocol would wait for every process at each save; empty
    with one process. `more`: further options of a multi-process run only (a CheckpointManager's create=False:
    orbax refuses to create its folder for a subset of the processes; the caller creates it)."""
    processes = current()
    if not processes.several:
        return {}
    import orbax.checkpoint as ocp

    return dict(more, multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=processes.index, active_processes={processes.index}))


def local_copy(tree):
    """The arrays of a pytree that span several processes (replicated) as this process's own copy (a local
    jax.Array, committed to a local device); other leaves as they are."""

    def local(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                raise ValueError("only replicated arrays have a local copy of the whole value")
            return leaf.addressable_data(0)
        return leaf
    return jax.tree_util.tree_map(local, tree)


__all__ = ["ENVIRONMENT", "BARRIER_TIMEOUT", "define_flags", "settings", "initialize", "initialize_from_flags",
           "split_units", "Processes", "current", "lock_folder", "hold_folder", "orbax_options", "local_copy"]


class DataParallel:
    """The placement of a data-parallel run over every device of several processes: a mesh over
    `jax.devices()`, the batch split along its first axis, everything else replicated."""

    def __init__(self, batch_size: int):
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devices = jax.devices()
        if batch_size % len(devices):
            raise ValueError(f"batch_size ({batch_size}) must be a multiple of the number of devices of all "
                             f"processes ({len(devices)}) to split it across them")
        self.mesh = Mesh(np.array(devices), ("batch",))
        self.split = NamedSharding(self.mesh, PartitionSpec("batch"))
        self.whole = NamedSharding(self.mesh, PartitionSpec())

    def rows(self, batch_size: int) -> slice:
        """This process's rows of a global batch of `batch_size` (those of its devices: one block)."""
        bounds = [index[0] for index in self.split.addressable_devices_indices_map((batch_size,)).values()]
        start, stop = min(b.start or 0 for b in bounds), max(b.stop or batch_size for b in bounds)
        if stop - start != sum((b.stop or batch_size) - (b.start or 0) for b in bounds):
            raise ValueError("this process's devices do not hold one block of the batch")
        return slice(start, stop)

    def batch(self, array):
        """The global batch `array` (the same on every process) as one array split over the processes, each
        feeding its own rows."""
        if array is None:
            return None
        array = np.asarray(array)
        return jax.make_array_from_process_local_data(self.split, array[self.rows(len(array))], array.shape)

    def replicate(self, tree):
        """A pytree (the same values on every process) as arrays replicated over every device."""
        return jax.tree_util.tree_map(
            lambda a: jax.make_array_from_process_local_data(self.whole, np.asarray(a)), tree)
