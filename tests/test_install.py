"""A plain install is a complete tool: a wheel built from a copy of the repository, installed (not editable)
into a fresh virtual environment with its dependencies from the package index, works from an empty folder:
the library and its shipped network import and load, every console script is there, one runs end to end
(plots included), and nothing but jaxinv lands in site-packages."""
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted("jaxinv-" + p.stem.replace("_", "-") for p in (ROOT / "jaxinv" / "binaries").glob("*.py")
                 if p.stem != "__init__")
NOT_INSTALLED = ("experiments", "weights_conversion", "benchmarks", "tests")
LEFT_OUT = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "outputs",
                                  ".pytest_cache")


def run(command, **kwargs):
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_wheel_installs_a_complete_tool(tmp_path):
    began = time.perf_counter()
    source = tmp_path / "source"  # a copy: building in place would leave build/ and *.egg-info in the clone
    shutil.copytree(ROOT, source, ignore=LEFT_OUT)
    run([sys.executable, "-m", "venv", tmp_path / "venv"])
    bin_dir = tmp_path / "venv" / "bin"
    python = bin_dir / "python"
    run([python, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "wheels", source])
    wheel, = (tmp_path / "wheels").glob("jaxinv-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"jaxinv"}
    run([python, "-m", "pip", "install", wheel])
    installed = time.perf_counter()

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "JAXINV_DATA")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", XDG_CACHE_HOME=str(tmp_path / "cache"))
    probe = run([python, "-c", """
import importlib.util, os, sys, sysconfig
import jaxinv
from jaxinv import nets
model = nets.load("cifar-ref")
site = sysconfig.get_paths()["purelib"]
print(os.path.dirname(jaxinv.__file__) == os.path.join(site, "jaxinv"), model.arch)
print(*sorted(name for name in os.listdir(site) if name.split(".")[0] in %r))
print(*sorted(name for name in %r if importlib.util.find_spec(name)))
""" % (NOT_INSTALLED, NOT_INSTALLED)], cwd=empty, env=env).stdout.splitlines()
    assert probe[0] == "True cifar-ref", probe
    assert probe[1:] == ["", ""], f"installed beside jaxinv: {probe[1:]}"
    assert all((bin_dir / script).is_file() for script in SCRIPTS), [s for s in SCRIPTS if not (bin_dir / s).is_file()]
    helped = subprocess.run(["jaxinv-invert", "--help"], cwd=empty, env=env, capture_output=True, text=True)
    assert "--representation" in helped.stdout, helped.stdout + helped.stderr  # (absl's --help exits with 1)

    out = empty / "out"
    done = run(["jaxinv-invert", "--iterations=5", "--refine_iterations=2", "--restarts=1", f"--output_dir={out}"],
               cwd=empty, env=env)
    assert sorted(os.listdir(out)) == ["energy.png", "grid.png", "metrics.json"], done.stdout
    assert "iterations: 100%" in done.stderr and "7/7 [" in done.stderr, done.stderr  # the progress bar
    assert os.listdir(empty) == ["out"]  # nothing written beside the outputs
    print(f"install {installed - began:.0f} s, checks {time.perf_counter() - installed:.0f} s")
