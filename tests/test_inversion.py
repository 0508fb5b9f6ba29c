"""Inverting HOG, HOGb and DSIFT of real images, the shallow study and the experiment binaries."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxinv import representations
from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.methods import inversion
from jaxinv.studies import shallow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = preimage.default_stages(60, 10)


@pytest.fixture(scope="module")
def grey_images():
    paths = images.imagenet_sample_paths(num_images=2)
    return [images.load_image(p, grey=True, size=64) for p in paths]


@pytest.mark.parametrize("name", representations.names())
def test_inversion_of_real_images_matches_the_code(name, grey_images):
    rep = representations.get(name)
    result = inversion.invert_images(rep, grey_images, problem=inversion.shallow_problem(), restarts=2,
                                     stages=QUICK)
    assert result.images.shape == (2, 2, 64, 64)
    assert result.errors.shape == (2, 2)
    # From noise (error near 1) to a close match of the code within 70 iterations.
    assert np.all(result.errors < 0.5), result.errors
    assert result.images.min() >= 0 and result.images.max() <= 255


def test_too_small_or_mixed_size_images_are_rejected(grey_images):
    rep = representations.get("dsift")
    with pytest.raises(ValueError, match="too small"):
        inversion.invert_images(rep, [np.zeros((20, 40), np.float32)])
    with pytest.raises(ValueError, match="share one size"):
        inversion.invert_images(rep, [grey_images[0], grey_images[1][:60]])


def test_shallow_study_resumes_from_its_cache(tmp_path, grey_images):
    run = lambda C=100: shallow.invert_in_batches("hog", grey_images, batch_size=1, restarts=1,
                                                  stages=preimage.default_stages(5, 0), C=C,
                                                  cache_dir=str(tmp_path), log=lambda s: None)
    first = run()
    assert sorted(os.listdir(tmp_path)) == ["hog_00000_1", "hog_00001_1", shallow.STUDY_FILE]  # no lock left
    with pytest.raises(ValueError, match=r"a different study \(differs in: C \(saved 100, asked 20\)"):
        run(C=20)  # batches of other settings are never mixed in
    second = run()  # served from the cache
    np.testing.assert_array_equal(first["errors"], second["errors"])
    summary = shallow.summarise(first)
    assert set(summary) == {"mean_error", "ci95", "cvpr_error", "seconds_per_image", "num_images"}


def run_binary(module, *flags):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_invert_binary_writes_grid_plot_and_metrics(tmp_path):
    stdout = run_binary("experiments.invert", "--iterations=20", "--refine_iterations=5", "--restarts=2",
                        "--size=64", f"--output_dir={tmp_path}")
    assert "normalised error per restart" in stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["errors"]) == 2 and metrics["representation"] == "hog"
    for name in ("grid.png", "energy.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_shallow_table_binary_writes_results(tmp_path):
    run_binary("experiments.shallow_table", "--num_images=2", "--iterations=10", "--refine_iterations=0",
               "--size=64", "--batch_size=2", f"--output_dir={tmp_path}")
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"hog", "hogb", "dsift"}
    for entry in results.values():
        assert 0 <= entry["mean_error"] and entry["seconds_per_image"] > 0
    assert (tmp_path / "figure.png").stat().st_size > 1000


def test_unknown_representation_flag_fails_with_the_valid_names(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "experiments.invert", "--representation=gist",
                          f"--output_dir={tmp_path}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "valid representations: hog, hogb, dsift" in out.stderr


def test_cvpr2015_formulation_inverts_hog(grey_images):
    rep = representations.get("hog")
    sigma = inversion.average_image_norm([rep.to_null_mean(im) for im in grey_images])
    preset = inversion.Cvpr2015(sigma=sigma, rate_drops=2, iterations_per_rate=40)
    result = inversion.invert_images(rep, grey_images[:1], cvpr2015=preset)
    assert result.history["loss"].shape == (80, 1)
    assert result.errors[0, 0] < 0.5, result.errors


def test_shallow_table_library_inverts_every_representation(tmp_path):
    config = shallow.TableConfig(num_images=2, size=32, representations=("hog", "dsift"), iterations=3,
                                 refine_iterations=0, batch_size=2)
    lines = []
    table = shallow.run_table(config, cache_dir=str(tmp_path / "cache"), log=lines.append)
    assert list(table.results) == ["hog", "dsift"] and table.results["hog"]["num_images"] == 2
    assert table.results["dsift"]["mean_error"] == pytest.approx(table.studies["dsift"]["errors"].mean())
    assert lines[0] == "2 images of 32x32, C=100.0, 3+0 iterations, 1 restart(s)"
    assert lines[-1] == shallow.table_line("dsift", table.results["dsift"]) and "(paper 0.094)" in lines[-1]
    results_path, figure, columns = shallow.write_table(table, str(tmp_path), figure_images=1)
    assert columns == ["original", "HOG glyphs", "hog^-1", "dsift^-1"]
    assert set(json.loads(open(results_path).read())) == {"hog", "dsift"}
    tile = np.zeros((32, 32))  # one row of 4 labelled tiles, the reconstructions captioned with their errors
    expected = images.labelled_grid([[tile] * 4], column_labels=columns, row_labels=["image 0"],
                                    tile_labels=[["", "", "e", "e"]], tile=(32, 32))
    assert images.load_image(figure).shape == expected.shape
    with pytest.raises(ValueError, match="valid representations"):
        shallow.run_table(shallow.TableConfig(representations=("gist",)))


def test_invert_image_library_metrics_and_files(tmp_path):
    config = shallow.InvertConfig(size=32, iterations=4, refine_iterations=1, restarts=2, seed=3)
    inverted = shallow.invert_image(config, log=lambda line: None)
    found = inverted.metrics
    assert found["image_size"] == [32, 32] and len(found["errors"]) == 2 and found["seed"] == 3
    assert found["mean_error"] == pytest.approx(np.mean(found["errors"])) and found["restart_std"] > 0
    assert inverted.history["loss"].shape[0] == 5
    assert shallow.error_line(found).startswith("normalised error per restart: ")
    written = shallow.write_inversion(inverted, str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in written] == ["grid.png", "energy.png", "metrics.json"]
