"""jaxinv.io.paths: one writer per output folder (flock, holder's pid, refused at once), outputs checked for
writability before any work, inputs that are regular files, temporaries of killed writers removed."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from jaxinv.io import checkpoints, paths
from jaxinv.io.outputs import OutputBusyError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def holder(target: str, *, file: bool = False, seconds: float = 60) -> subprocess.Popen:
    """A process that holds `target`'s lock and says so on stdout."""
    hold = "hold_file" if file else "hold_folder"
    code = textwrap.dedent(f"""
        import sys, time
        from jaxinv.io import paths
        paths.{hold}({target!r})
        print("held", flush=True)
        time.sleep({seconds})
    """)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_writer_is_refused_naming_the_folder_and_the_holders_pid(tmp_path):
    out = tmp_path / "out"
    child = holder(str(out))
    try:
        began = time.perf_counter()
        with pytest.raises(OutputBusyError, match=rf"{out} is in use by another run \(pid {child.pid}\)"):
            with paths.lock_folder(str(out)):
                pass
        assert time.perf_counter() - began < 1.0  # refused at once, not after waiting
        assert open(out / paths.LOCK_FILE).read().strip() == str(child.pid)
    finally:
        child.kill()
        child.wait()
    # The kernel released the killed holder's lock: the stale lock file is taken over, then removed.
    with paths.lock_folder(str(out)) as directory:
        assert directory == str(out) and open(out / paths.LOCK_FILE).read().strip() == str(os.getpid())
    assert not (out / paths.LOCK_FILE).exists()


def test_a_lock_is_exclusive_within_one_process_too(tmp_path):
    with paths.lock_folder(str(tmp_path)):
        with pytest.raises(OutputBusyError, match=rf"pid {os.getpid()}"):
            with paths.lock_folder(str(tmp_path)):
                pass
    with paths.lock_folder(str(tmp_path)):  # released
        pass


def test_released_locks_leave_nothing_behind(tmp_path):
    with paths.lock_folder(str(tmp_path / "new")):
        assert os.listdir(tmp_path / "new") == [paths.LOCK_FILE]
    assert os.listdir(tmp_path) == []  # the folder it created stayed empty: removed
    with paths.lock_folder(str(tmp_path / "kept")):
        (tmp_path / "kept" / "result.json").write_text("{}")
    assert os.listdir(tmp_path / "kept") == ["result.json"]
    with paths.lock_file(str(tmp_path / "kept" / "d.npz")):
        assert sorted(os.listdir(tmp_path / "kept")) == [".d.npz.lock", "result.json"]
    assert os.listdir(tmp_path / "kept") == ["result.json"]


def test_a_waiting_lock_gets_the_folder_when_its_holder_ends(tmp_path):
    child = holder(str(tmp_path), seconds=1.0)
    began = time.perf_counter()
    with paths.lock_folder(str(tmp_path), wait=30):
        waited = time.perf_counter() - began
    child.wait()
    assert 0.2 < waited < 20


def test_a_file_lock_refuses_a_second_writer_of_that_file_only(tmp_path):
    target = tmp_path / "dictionary.npz"
    child = holder(str(target), file=True)
    try:
        with pytest.raises(OutputBusyError, match=rf"{target} is being written by another run \(pid {child.pid}\)"):
            with paths.lock_file(str(target)):
                pass
        with paths.lock_file(str(tmp_path / "other.npz")), paths.lock_folder(str(tmp_path)):
            pass
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("where, message", [
    ("file.txt", r"the output folder .*file.txt is a file, not a folder"),
    ("file.txt/sub/out", r"cannot create the output folder .*file.txt/sub/out: .*file.txt is a file, not a folder"),
])
def test_outputs_that_cannot_be_folders_are_refused(tmp_path, where, message):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=message):
        with paths.lock_folder(str(tmp_path / where)):
            pass
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        paths.hold_file(str(tmp_path))


def unwritable(tmp_path):
    """A folder that cannot be written (chattr +i for root, a 0555 folder for other users), or a skip; it holds
    one writable folder, `net`."""
    path = tmp_path / "locked"
    path.mkdir()
    (path / "net").mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return path
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i: no folder is unwritable")
    return path


def writable_again(path):
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


def test_unwritable_outputs_are_refused(tmp_path):
    locked = unwritable(tmp_path)
    try:
        with pytest.raises(ValueError, match=rf"cannot write to the output folder {locked}: "):
            paths.hold_folder(str(locked))
        with pytest.raises(ValueError, match=rf"cannot create the output folder {locked}/out: "):
            paths.hold_folder(str(locked / "out"))
        with pytest.raises(ValueError, match=rf"cannot write to the output folder {locked}: "):
            paths.hold_file(str(locked / "d.npz"))
        # A folder saved whole (replace_directory) is written beside: its parent must be writable too.
        with paths.lock_folder(str(locked / "net")):
            pass
        with pytest.raises(ValueError, match=rf"cannot write to the folder {locked}: "):
            paths.hold_folder(str(locked / "net"), replaced=True)
        # orbax is not started on a folder it cannot write (a failed save would keep the process from exiting).
        with pytest.raises(ValueError, match=rf"cannot write to the folder {locked}: "):
            checkpoints.write_tree(str(locked / "params"), {"w": np.ones(3, np.float32)})
        with pytest.raises(ValueError, match=rf"cannot write to the checkpoint folder {locked}: "):
            checkpoints.RunCheckpoints(str(locked))
    finally:
        writable_again(locked)


def test_taking_a_folder_removes_the_temporaries_of_killed_writers(tmp_path):
    dead = dead_pid()
    stale = [f".grid.png.tmp-{dead}-abcd1234.png", f".metrics.json.tmp-{dead}-x_y0z9ab.json"]
    kept = ["tmpabcd1234.png", "grid.png", f".grid.png.tmp-{os.getppid()}-abcd1234.png"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"\x89PNG truncated")
    with paths.lock_folder(str(tmp_path)):
        pass
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


def test_inputs_must_be_regular_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "image.png").write_bytes(b"x")
    os.symlink(tmp_path / "image.png", tmp_path / "link.png")
    outcome = {}

    def check():  # in a thread, so that a blocking open could not hang the test
        try:
            paths.input_file(str(fifo), "image file")
        except ValueError as e:
            outcome["error"] = str(e)
    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(10)
    assert outcome.get("error") == f"the image file {fifo} is a named pipe (FIFO), not a regular file"
    with pytest.raises(ValueError, match="is a folder, not a regular file"):
        paths.input_file(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="PyTorch file not found: .*missing.pth"):
        paths.input_file(str(tmp_path / "missing.pth"), "PyTorch file")
    assert paths.input_file(str(tmp_path / "link.png")) == str(tmp_path / "link.png")


def test_a_killed_holder_releases_its_lock(tmp_path):
    child = holder(str(tmp_path))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with paths.lock_folder(str(tmp_path)):
        pass
