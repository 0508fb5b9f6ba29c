"""The binaries' output folders end to end: one writer per folder (a second run is refused at once, naming the
first's pid, and the first's results are those of a run alone), a study's settings checked under the lock before
any unit, outputs that cannot be written and inputs that are not regular files refused before any work, and the
temporaries of killed writers removed by the next run."""
import os
import subprocess
import sys
import time

import pytest

from jaxinv.io import outputs, paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEP = ("--net=cifar-ref", "--num_images=2", "--restarts=2", "--layers=conv1,fc8", "--C=20", "--iterations=20",
        "--refine_iterations=5", "--figure_images=2", "--invariance_images=1")


def command(module, *args):
    return [sys.executable, "-m", module, *args]


def start(module, *args) -> subprocess.Popen:
    return subprocess.Popen(command(module, *args), cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(module, *args, timeout=300):
    began = time.perf_counter()
    done = subprocess.run(command(module, *args), cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done, time.perf_counter() - began


def wait_for_lock(folder, process: subprocess.Popen, timeout=120):
    """Waits until `process` holds `folder` (its pid in the lock file)."""
    lock = os.path.join(folder, paths.LOCK_FILE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ended before taking {folder}: {process.communicate()}"
        try:
            if open(lock).read().strip() == str(process.pid):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{folder} was not locked within {timeout} s")


def refused_line(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return errors[0]


def test_a_second_invert_into_one_folder_is_refused(tmp_path):
    out = str(tmp_path / "out")
    first = start("experiments.invert", f"--output_dir={out}", "--size=64", "--restarts=1", "--iterations=300",
                  "--refine_iterations=50")
    try:
        wait_for_lock(out, first)
        done, seconds = run("experiments.invert", f"--output_dir={out}", "--size=64", "--restarts=1", "--seed=1")
        assert refused_line(done) == (f"error: {out} is in use by another run (pid {first.pid}) writing there; wait "
                                      "for it to finish or choose another output folder")
        assert "inverting" not in done.stdout and seconds < 60
        assert first.poll() is None  # refused while the first was running
        stdout, stderr = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, stderr[-2000:]
    assert sorted(os.listdir(out)) == ["energy.png", "grid.png", "metrics.json"]  # no lock file left
    assert outputs.read_json(os.path.join(out, "metrics.json"))["seed"] == 0


def comparable(results: dict) -> dict:
    """results.json less what differs between equal runs (timings, the command line)."""
    return {key: value for key, value in results.items() if key not in ("seconds", "seconds_per_problem", "parameters")}


def test_concurrent_deep_studies_one_refused_the_other_as_if_alone(tmp_path):
    shared, alone = str(tmp_path / "shared"), str(tmp_path / "alone")
    first = start("experiments.deep_studies", *DEEP, "--seed=0", f"--output_dir={shared}")
    try:
        wait_for_lock(shared, first)
        done, seconds = run("experiments.deep_studies", *DEEP, "--seed=1", f"--output_dir={shared}")
        assert refused_line(done).startswith(f"error: {shared} is in use by another run (pid {first.pid})")
        assert "unit 1/" not in done.stdout and first.poll() is None
        stdout, stderr = first.communicate(timeout=900)
    finally:
        first.kill()
    assert first.returncode == 0, stderr[-2000:]
    solo, _ = run("experiments.deep_studies", *DEEP, "--seed=0", f"--output_dir={alone}", timeout=900)
    assert solo.returncode == 0, solo.stderr[-2000:]
    shared_results = outputs.read_json(os.path.join(shared, "results.json"))
    assert comparable(shared_results) == comparable(outputs.read_json(os.path.join(alone, "results.json")))
    assert shared_results["parameters"]["seed"] == 0
    # The finished study's settings are checked under the lock before any unit: another seed is refused.
    done, _ = run("experiments.deep_studies", *DEEP, "--seed=1", f"--output_dir={shared}")
    assert "holds units of a different study (differs in: seed (saved 0, asked 1))" in refused_line(done)
    assert "unit 1/" not in done.stdout


@pytest.mark.parametrize("where", ["file", "file/out"])
def test_an_output_folder_that_cannot_be_one_fails_before_any_work(tmp_path, where):
    (tmp_path / "file").write_text("x")
    done, seconds = run("experiments.invert", f"--output_dir={tmp_path / where}")
    assert f"{tmp_path / 'file'} is a file" in refused_line(done)
    assert "inverting" not in done.stdout and seconds < 20  # start-up only (about 2-3 s on a quiet CPU)


def cifar_pth(tmp_path) -> str:
    torch = pytest.importorskip("torch")
    from tests.test_conversion_errors import cifar_ref_torch
    torch.manual_seed(0)
    path = str(tmp_path / "cifar.pth")
    torch.save(cifar_ref_torch().state_dict(), path)
    return path


def test_convert_to_an_unwritable_folder_fails_promptly(tmp_path):
    from tests.test_paths import unwritable, writable_again
    weights = cifar_pth(tmp_path)
    locked = unwritable(tmp_path)
    try:
        for output, message in ((locked, "cannot write to the output folder"),
                                (locked / "new", "cannot create the output folder"),
                                (locked / "net", f"cannot write to the folder {locked}")):  # saved beside: refused
            done, seconds = run("weights_conversion.convert", "--format=torch", "--arch=cifar-ref",
                                f"--input={weights}", f"--output={output}", timeout=60)
            assert message in refused_line(done) and seconds < 10
    finally:
        writable_again(locked)


def test_an_input_that_is_a_named_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    done, seconds = run("experiments.invert", f"--image={tmp_path / 'fifo'}", f"--output_dir={tmp_path / 'out'}",
                        timeout=60)
    assert refused_line(done) == f"error: the image file {tmp_path / 'fifo'} is a named pipe (FIFO), not a regular file"
    assert not (tmp_path / "out").exists()  # the output folder it took was empty: removed at exit


def test_the_next_run_removes_the_temporaries_of_a_killed_writer(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".hog.png.tmp-{child.pid}-k1ll3d0x.png"
    stale.write_bytes(b"\x89PNG\r\n\x1a\n truncated by a kill")
    foreign = out / "tmpk1ll3d0x.png"  # not the atomic writer's pattern: left alone
    foreign.write_bytes(b"x")
    done, _ = run("experiments.render_features", f"--output_dir={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["dsift.png", "hog.png", "hogb.png", "image.png", "tmpk1ll3d0x.png"]
