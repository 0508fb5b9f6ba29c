"""Binaries keep compiled programs under <cache root>/xla, so a second run compiles less; the results do not change."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--size=64", "--iterations=10", "--refine_iterations=0", "--restarts=1"]


def invert(cache_home, out, *extra):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home), PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-m", "experiments.invert", *TINY, f"--output_dir={out}", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.load(open(os.path.join(out, "metrics.json")))["errors"]


def test_the_second_run_reads_compiled_programs_from_the_cache(tmp_path):
    xla = tmp_path / "cache" / "jaxinv" / "xla"
    first = invert(tmp_path / "cache", tmp_path / "a")
    entries = set(os.listdir(xla))
    assert any(name.startswith("jit_scan") for name in entries), entries  # the engine's step was stored
    second = invert(tmp_path / "cache", tmp_path / "b")
    assert second == first
    assert set(os.listdir(xla)) == entries  # nothing new to compile and store
    assert invert(tmp_path / "off", tmp_path / "c", "--nocompilation_cache") == first
    assert not (tmp_path / "off" / "jaxinv" / "xla").exists()


def test_binaries_are_quiet_unless_asked(tmp_path):
    """No absl/orbax INFO lines by default (they buried the results); --verbosity=0 brings them back."""
    import re

    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "experiments.invert", *TINY, f"--output_dir={tmp_path / 'out'}"]
    quiet = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    loud = subprocess.run(command + ["--verbosity=0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    info = re.compile(r"(?m)^I\d{4} ")
    assert quiet.returncode == loud.returncode == 0
    assert not info.search(quiet.stderr + quiet.stdout), quiet.stderr[-1000:]
    assert info.search(loud.stderr + loud.stdout)
