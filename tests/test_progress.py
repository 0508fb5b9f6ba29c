"""Progress bars (jaxinv.io.progress): the binaries show them on stderr with count, total, rate and time left;
the library only on request; undefined statistics print as "-", never nan."""
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from jaxinv import representations
from jaxinv.engine import preimage
from jaxinv.io import progress
from jaxinv.methods import inversion, metrics
from jaxinv.studies import shallow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFO = re.compile(r"(?m)^I\d{4} ")  # absl's INFO lines


def bar_line(name, total, unit):
    """A finished tqdm bar: NAME: 100%|...| TOTAL/TOTAL [elapsed<left, rate]."""
    return re.compile(rf"{name}: 100%\|[^|]*\| {total}/{total} \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(s/)?{unit}")


def run_binary(name, *flags, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT, XDG_CACHE_HOME=str(cwd / "cache"))
    done = subprocess.run([sys.executable, "-m", f"experiments.{name}", *flags], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_invert_shows_an_iteration_bar_on_stderr(tmp_path):
    done = run_binary("invert", "--size=64", "--iterations=10", "--refine_iterations=3", "--restarts=1",
                      f"--output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert bar_line("iterations", 13, "it").search(done.stderr), done.stderr
    assert "energy=" in done.stderr
    assert "|" not in done.stdout and "iter " not in done.stdout  # results on stdout, the bar on stderr only
    assert "normalised error per restart" in done.stdout
    assert not INFO.search(done.stdout + done.stderr)


def test_a_study_shows_its_units_and_stays_quiet(tmp_path):
    """The shallow table: a bar of (representation, batch) units over the iteration bars; its checkpoints
    (orbax, which logs at INFO) print nothing."""
    done = run_binary("shallow_table", "--num_images=2", "--size=32", "--iterations=3", "--refine_iterations=0",
                      "--batch_size=1", "--representations=hog", "--figure_images=1",
                      f"--output_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert bar_line("batches", 2, "unit").search(done.stderr), done.stderr
    assert re.search(r"iterations: +\d+%\|[^|]*\| \d/3 ", done.stderr), done.stderr
    assert not INFO.search(done.stdout + done.stderr), done.stderr
    assert "nan" not in done.stdout


def tiny_inversion(**kwargs):
    rep = representations.get("hog")
    image = np.random.default_rng(0).uniform(0, 255, (32, 32)).astype(np.float32)
    return inversion.invert_images(rep, [image], problem=inversion.shallow_problem(100.0),
                                   stages=preimage.default_stages(3, 1), **kwargs)


def test_the_library_shows_bars_only_on_request(capfd):
    tiny_inversion()
    assert capfd.readouterr().err == ""
    tiny_inversion(progress=True)
    assert bar_line("iterations", 4, "it").search(capfd.readouterr().err)
    seen = []
    tiny_inversion(progress=lambda done, terms, elapsed: seen.append(done))  # the engine's own callback
    assert seen == [3, 4] and capfd.readouterr().err == ""


def test_binaries_turn_the_default_on(capfd, monkeypatch):
    monkeypatch.setattr(progress, "_by_default", False)
    progress.show_by_default()
    assert progress.wanted(None) and progress.wanted(True) and not progress.wanted(False)
    assert not progress.wanted(lambda *a: None)
    tiny_inversion()
    assert bar_line("iterations", 4, "it").search(capfd.readouterr().err)
    assert list(progress.each("abc", "letters")) == ["a", "b", "c"]
    assert bar_line("letters", 3, "unit").search(capfd.readouterr().err)


def test_undefined_statistics_print_as_a_dash():
    assert metrics.shown(float("nan")) == metrics.shown(None) == metrics.shown(math.inf) == "-"
    assert metrics.shown(0.12345) == "0.123" and metrics.shown(2.5, ".1f") == "2.5"
    one_image = {"mean_error": 0.1, "ci95": float("nan"), "cvpr_error": float("nan"), "seconds_per_image": 1.0}
    line = shallow.table_line("hog", one_image)
    assert "nan" not in line and "+- -" in line and "cvpr -" in line


@pytest.fixture(autouse=True)
def default_off(monkeypatch):
    monkeypatch.setattr(progress, "_by_default", False)
