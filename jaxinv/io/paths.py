"""The paths a run reads and writes: one writer per output folder, outputs checked for writability before any
computation, inputs that are regular files.

- `lock_folder(DIR)` (a context manager) holds an exclusive lock on DIR for one run: an `fcntl.flock` on DIR/.lock,
  which records the holder's pid. A second writer, in another process or in this one, is refused at once with an
  `OutputBusyError` naming DIR and that pid. The kernel releases the lock when its process ends, however it ends,
  so a killed run leaves no stale lock (at most a `.lock` file, which the next run takes over).
- `lock_file(PATH)`: the same for a single output file, on PATH's folder's `.NAME.lock`.
- `hold_folder` / `hold_file`: the lock for the rest of the process (the binaries' output, released at exit).

Taking a lock is the writability check: the folder (or the file's folder) is created and the lock file written
there, so an output that is a file, lies under a file, or cannot be written fails with a ValueError saying so,
before any computation. A new lock also removes the temporary files of killed atomic writers from the folder
(`outputs.remove_stale_temporaries`). A lock may wait (`wait` seconds) instead of refusing: caches that another
process is filling are waited for and then read.

`input_file(PATH)` checks that an input is a regular file (a named pipe or a device would block the reader).
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import stat
import threading
import time

from jaxinv.io.outputs import OutputBusyError, current_umask, remove_stale_temporaries

LOCK_FILE = ".lock"
CACHE_WAIT = 900.0
"""Seconds a process that needs a cache file waits for another one writing it (then reads its file)."""


def _creation_error(path: str, error: OSError) -> ValueError:
    """A clear error for an output folder that cannot be created."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.lexists(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    if isinstance(error, NotADirectoryError) or (os.path.lexists(parent) and not os.path.isdir(parent)):
        return ValueError(f"cannot create the output folder {path}: {parent} is a file, not a folder")
    return ValueError(f"cannot create the output folder {path}: {error.strerror or error}")


def writable_folder(directory: str) -> bool:
    """Makes sure `directory` is a folder (creating it and its parents); a ValueError says why it cannot be one.
    Returns whether it was created."""
    directory = os.path.abspath(directory)
    if os.path.lexists(directory) and not os.path.isdir(directory):
        kind = "a broken symbolic link" if not os.path.exists(directory) else "a file"
        raise ValueError(f"the output folder {directory} is {kind}, not a folder")
    if os.path.isdir(directory):
        return False
    try:
        os.makedirs(directory)
    except FileExistsError:
        return False  # made meanwhile by another process
    except OSError as e:
        raise _creation_error(directory, e) from None
    return True


def check_writable(directory: str, what: str = "output folder") -> str:
    """Makes sure new entries can be made in the folder `directory` (created if missing): a ValueError otherwise.
    Writers that fail late and badly call it first: orbax, whose background thread keeps a process from exiting
    after a failed save, and replacements of a whole folder, which write beside it."""
    directory = os.path.abspath(directory)
    writable_folder(directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to the {what} {directory}: permission denied or read-only")
    return directory


def _holder(lock_path: str) -> str:
    """The pid recorded in a lock file (a holder that has not written it yet reads as 'unknown')."""
    for _ in range(20):
        try:
            with open(lock_path) as f:
                text = f.read().strip()
        except OSError:
            text = ""
        if text:
            return text.split()[0]
        time.sleep(0.01)
    return "unknown"


_HELD: dict[str, "_Lock"] = {}  # lock paths held for the rest of the process (hold_folder, hold_file)
_HELD_GUARD = threading.Lock()


class _Lock:
    """An flock on `lock_path` (created in `folder`), the holder's pid written in it."""

    def __init__(self, lock_path: str, folder: str, created: bool, busy: str, wait: float):
        self.path, self.folder, self.created = lock_path, folder, created
        deadline = time.monotonic() + wait
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~current_umask())
            except OSError as e:
                raise ValueError(f"cannot write to the output folder {folder}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                raise OutputBusyError(busy.format(pid=_holder(lock_path))) from None
            # The lock file may have been removed by its previous holder between open and flock: then this lock
            # guards nothing and the path is opened again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        remove_stale_temporaries(folder)

    def release(self) -> None:
        """Removes the lock file (if it is still this lock's), then unlocks; a folder this lock created and that
        stayed empty is removed too."""
        if self.fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                os.remove(self.path)
        except OSError:
            pass
        os.close(self.fd)  # closing the only descriptor releases the flock
        self.fd = None
        if self.created:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass


def _busy_folder(directory: str) -> str:
    return (f"{directory} is in use by another run (pid {{pid}}) writing there; wait for it to finish or choose "
            "another output folder")


def _folder(directory: str, replaced: bool) -> tuple[str, bool]:
    directory = os.path.abspath(directory)
    created = writable_folder(directory)
    if replaced:  # saved by outputs.replace_directory, which writes a sibling folder and renames
        check_writable(os.path.dirname(directory), "folder")
    return directory, created


@contextlib.contextmanager
def lock_folder(directory: str, wait: float = 0, replaced: bool = False):
    """Holds the exclusive lock on the folder `directory` (created if missing) for the `with` block; yields its
    absolute path. Another holder makes this wait up to `wait` seconds, then raise OutputBusyError. `replaced`:
    the folder will be saved whole (`outputs.replace_directory`, saved networks and inverters), so its parent
    must be writable too."""
    directory, created = _folder(directory, replaced)
    lock = _Lock(os.path.join(directory, LOCK_FILE), directory, created, _busy_folder(directory), wait)
    try:
        yield directory
    finally:
        lock.release()


def _file_lock(path: str, wait: float) -> _Lock:
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ValueError(f"the output file {path} is a folder; give a file name")
    folder = os.path.dirname(path)
    created = writable_folder(folder)
    busy = f"{path} is being written by another run (pid {{pid}}); wait for it to finish or choose another file"
    return _Lock(os.path.join(folder, f".{os.path.basename(path)}.lock"), folder, created, busy, wait)


@contextlib.contextmanager
def lock_file(path: str, wait: float = 0):
    """Holds the exclusive lock on the output file `path` (its folder created if missing) for the `with` block;
    yields its absolute path. Caches pass `wait`: a second process waits for the first to write the file."""
    lock = _file_lock(path, wait)
    try:
        yield os.path.abspath(path)
    finally:
        lock.release()


def _hold(lock: _Lock) -> None:
    with _HELD_GUARD:
        _HELD[lock.path] = lock


def hold_folder(directory: str, replaced: bool = False) -> str:
    """`lock_folder` for the rest of the process (released at exit): a binary's output folder, taken before any
    computation. Returns the absolute path."""
    directory, created = _folder(directory, replaced)
    _hold(_Lock(os.path.join(directory, LOCK_FILE), directory, created, _busy_folder(directory), 0))
    return directory


def hold_file(path: str) -> str:
    """`lock_file` for the rest of the process (released at exit). Returns the absolute path."""
    _hold(_file_lock(path, 0))
    return os.path.abspath(path)


@atexit.register
def _release_held() -> None:
    with _HELD_GUARD:
        for lock in _HELD.values():
            lock.release()
        _HELD.clear()


def input_file(path: str, what: str = "input file") -> str:
    """`path` if it is a regular file (or a link to one); FileNotFoundError when it is missing, ValueError when it is
    a folder, a named pipe, a socket or a device (reading those would block or never end)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except OSError as e:
        raise ValueError(f"cannot read the {what} {path}: {e.strerror or e}") from None
    if stat.S_ISREG(mode):
        return path
    kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file")
    raise ValueError(f"the {what} {path} is {kind}, not a regular file")


__all__ = ["LOCK_FILE", "CACHE_WAIT", "OutputBusyError", "writable_folder", "check_writable", "lock_folder",
           "lock_file", "hold_folder", "hold_file", "input_file"]
