"""Nothing silently wrong, nothing lost: the atomic file writer honours the umask and cleans up after killed
processes."""
import os
import subprocess
import sys

import pytest

from jaxinv import outputs


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ----------------------------------------------------------------------------------------------------------------
# The atomic file writer


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = outputs.write_json(str(tmp_path / "results.json"), {"a": 1})
        umask_read = outputs.current_umask()
    finally:
        os.umask(previous)
    assert os.stat(path).st_mode & 0o777 == mode and umask_read == umask


def test_temporary_files_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    stale = [f".results.json.tmp-{dead}-abcd1234.json", f".energy.png.tmp-{dead}-x_y0z9ab.png"]
    kept = [f".results.json.tmp-{alive}-abcd1234.json", "tmpabcd1234.png", "results.json.tmp-1-abcd1234.json",
            f".notes.tmp-{dead}-too_long_name.txt", "figure.png"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    outputs.write_json(str(tmp_path / "metrics.json"), {})
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["metrics.json"])


def test_temporary_file_names_are_recognisable(tmp_path, monkeypatch):
    seen = []

    def write(tmp):
        seen.append(os.path.basename(tmp))
        open(tmp, "w").close()
    outputs.atomic_write(str(tmp_path / "figure.png"), write, ".png")
    assert seen[0].startswith(f".figure.png.tmp-{os.getpid()}-") and seen[0].endswith(".png")
    assert outputs._TEMPORARY_FILE.match(seen[0])
