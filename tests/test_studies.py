"""The deep-network studies: statistics on hand-built inputs, resumable units, results.json, the binary."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxinv import nets
from jaxinv.engine import preimage
from jaxinv.io import datasets, images
from jaxinv.studies import deep_network_outputs, deep_networks
from jaxinv.nets import tables
from jaxinv.nets.model import CAFFE_CONVENTION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = preimage.default_stages(4, 0)  # one scan chunk: one compilation per unit
REQUIRED = ("layers", "C", "error", "error_ci95", "restart_std", "class_consistency", "hist_intersection")


# ---------------------------------------------------------------- statistics on hand-built inputs

def test_histogram_intersection_of_hand_built_histograms():
    assert deep_networks.histogram_intersection([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert deep_networks.histogram_intersection([1, 2, 3], [3, 6, 9]) == pytest.approx(1.0)  # normalised first
    assert deep_networks.histogram_intersection([1, 0, 0], [0, 0, 5]) == 0.0
    assert deep_networks.histogram_intersection([1, 1, 0, 0], [0, 1, 1, 0]) == pytest.approx(0.5)
    assert deep_networks.histogram_intersection([3, 1], [1, 3]) == pytest.approx(0.25 + 0.25)
    with pytest.raises(ValueError, match="one length"):
        deep_networks.histogram_intersection([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="positive total"):
        deep_networks.histogram_intersection([0, 0], [1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        deep_networks.histogram_intersection([-1, 2], [1, 2])


def test_gradient_histogram_bins_hand_built_images():
    flat = np.full((2, 5, 6), 77.0)
    counts = deep_networks.gradient_magnitude_histogram(flat)
    assert counts.shape == (deep_networks.HIST_BINS,) and counts[0] == 2 * 4 * 5 and counts.sum() == 2 * 4 * 5
    ramp = np.tile(np.arange(6) * 10.0, (5, 1))[None]  # dx = 10, dy = 0 -> bin [8, 12)
    counts = deep_networks.gradient_magnitude_histogram(ramp)
    assert counts[2] == 4 * 5 and counts.sum() == 4 * 5
    diagonal = (np.arange(5)[:, None] * 3.0 + np.arange(6)[None, :] * 4.0)[None]  # |(4, 3)| = 5 -> bin [4, 8)
    assert deep_networks.gradient_magnitude_histogram(diagonal)[1] == 20
    checker = ((np.indices((4, 4)).sum(0) % 2) * 255.0)[None]  # |(255, 255)| > 256 -> the last bin
    assert deep_networks.gradient_magnitude_histogram(checker)[-1] == 9
    grey_rgb = np.repeat(ramp[..., None], 3, axis=-1)  # luma of equal channels is the grey level
    np.testing.assert_array_equal(deep_networks.gradient_magnitude_histogram(grey_rgb),
                                  deep_networks.gradient_magnitude_histogram(ramp))
    beyond = deep_networks.gradient_magnitude_histogram(ramp * 100)  # clipped to [0, 255] before differencing
    assert beyond.sum() == 20 and beyond[-1] == 4 and beyond[0] == 16
    with pytest.raises(ValueError, match="at least 2x2"):
        deep_networks.gradient_magnitude_histogram(np.zeros((1, 1, 5)))


def test_unit_statistics_on_synthetic_arrays():
    errors = np.array([[0.1, 0.3], [0.2, 0.2], [0.3, 0.1]])
    predictions = np.array([[1, 2], [3, 3], [0, 5]])
    stats = deep_networks.unit_statistics(errors, predictions, np.array([1, 3, 5]), [1, 1, 0], [1, 0, 1])
    assert stats["error"] == pytest.approx(0.2)
    assert stats["error_ci95"] == pytest.approx(0.0)  # every image's restart mean is 0.2
    assert stats["restart_std"] == pytest.approx(2 * np.std([0.1, 0.3], ddof=1) / 3)
    assert stats["class_consistency"] == pytest.approx(4 / 6)
    assert stats["hist_intersection"] == pytest.approx(0.5)
    spread = deep_networks.unit_statistics([[0.1], [0.3]], [[0], [0]], [0, 0], [1], [1])
    assert np.isnan(spread["restart_std"]) and spread["class_consistency"] == 1.0
    assert spread["error_ci95"] == pytest.approx(1.959964 * np.std([0.1, 0.3], ddof=1) / np.sqrt(2))
    with pytest.raises(ValueError, match="one reference prediction per image"):
        deep_networks.unit_statistics(errors, predictions, [1, 3], [1], [1])
    with pytest.raises(ValueError, match="images, restarts"):
        deep_networks.unit_statistics(errors, predictions[:, :1], [1, 3, 5], [1], [1])


def test_seeds_depend_on_the_unit_only():
    assert deep_networks.unit_seed(0, "conv1", 20.0) == deep_networks.unit_seed(0, "conv1", 20)
    seeds = {deep_networks.unit_seed(s, layer, c) for s in (0, 1) for layer in ("conv1", "conv2") for c in (1, 20)}
    assert len(seeds) == 8


# ---------------------------------------------------------------- input checks

@pytest.fixture(scope="module")
def model():
    return nets.load("cifar-ref")


def test_bad_inputs_are_named(model, tmp_path):
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*conv1"):
        deep_networks.check_layers(model, ["conv1", "conv9"])
    assert deep_networks.check_layers(model, ["fc8", "conv1"]) == ("conv1", "fc8")  # table order
    assert len(deep_networks.check_layers(model, None)) == 17
    for bad, message in ((["20", "x"], "must be numbers"), ([], "at least one"), (["0", "20"], "positive"),
                         (["20", "20"], "repeat"), (["inf"], "finite")):
        with pytest.raises(ValueError, match=message):
            deep_networks.parse_C(bad)
    assert deep_networks.parse_C(["1", "20.0", "300"]) == (1.0, 20.0, 300.0)
    with pytest.raises(ValueError, match="images folder not found"):
        datasets.reference_images(model, 2, images_dir=str(tmp_path / "missing"))
    (tmp_path / "one").mkdir()
    with pytest.raises(FileNotFoundError, match="no .jpeg"):
        datasets.reference_images(model, 2, images_dir=str(tmp_path / "one"))
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        datasets.reference_images(model, 0)
    with pytest.raises(ValueError, match=r"must be \(N, 32, 32, 3\)"):
        deep_networks.run_study(model, np.zeros((2, 16, 16, 3)), layers=["conv1"], C=[20])


def test_cifar_reference_images_cover_the_classes(model):
    reference, names = datasets.reference_images(model, 10)
    assert reference.shape == (10, 32, 32, 3) and reference.dtype == np.float32
    assert len({name.split("(")[1] for name in names}) == 10  # one per class, not ten airplanes


def test_imagenet_networks_get_centre_crops_at_their_input_size():
    geometry = nets.Model("caffe-ref", tables.build("caffe-ref"), None, 227, dict(CAFFE_CONVENTION))
    try:
        reference, names = datasets.reference_images(geometry, 2)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert reference.shape == (2, 227, 227, 3) and names == [os.path.basename(p) for p in
                                                             images.imagenet_sample_paths(num_images=2)]
    np.testing.assert_array_equal(reference[1], images.load_image(images.imagenet_sample_paths()[1], size=227))


# ---------------------------------------------------------------- the study: resumable units

@pytest.fixture(scope="module")
def reference(model):
    return datasets.reference_images(model, 2)[0]


def tiny_study(model, reference, directory, **kwargs):
    kwargs = dict(dict(layers=["conv1", "pool1"], C=[20, 300], restarts=2, stages=TINY, seed=3,
                       checkpoint_dir=str(directory), log=lambda line: None), **kwargs)
    return deep_networks.run_study(model, reference, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(model, reference, tmp_path_factory):
    return tiny_study(model, reference, tmp_path_factory.mktemp("whole"))


def assert_same_units(a, b):
    assert set(a.units) == set(b.units)
    for key in a.units:
        for name in deep_networks.UNIT_KEYS:
            if name != "seconds":
                np.testing.assert_array_equal(a.units[key][name], b.units[key][name], err_msg=f"{key} {name}")


def test_study_units_hold_every_measurement(uninterrupted):
    assert uninterrupted.complete and len(uninterrupted.units) == 4
    unit = uninterrupted.units[("conv1", 300.0)]
    assert unit["errors"].shape == (2, 2) and unit["predictions"].shape == (2, 2)
    assert unit["first_restart"].shape == (2, 32, 32, 3) and unit["restarts"].shape == (2, 2, 32, 32, 3)
    assert unit["hist"].sum() == 2 * 2 * 31 * 31
    assert np.all(unit["errors"] > 0) and np.all(unit["errors"] < 2)
    # Different restarts start from different noise, different units from different seeds.
    assert not np.array_equal(unit["first_restart"], unit["restarts"][:, 1])
    assert not np.array_equal(unit["errors"], uninterrupted.units[("conv1", 20.0)]["errors"])
    np.testing.assert_array_equal(unit["first_restart"], unit["restarts"][:, 0])


def test_resume_after_interrupt_equals_uninterrupted(model, reference, uninterrupted, tmp_path):
    lines = []
    first = tiny_study(model, reference, tmp_path, max_units=1, log=lines.append)
    assert not first.complete and len(first.units) == 1 and "stopped after 1 unit" in lines[-1]

    class Crash(Exception):
        pass

    def crash_after_second(index, layer, C, unit):
        if index == 2:
            raise Crash

    with pytest.raises(Crash):  # an exception after the second unit was saved: as if killed there
        tiny_study(model, reference, tmp_path, on_unit=crash_after_second)
    lines.clear()
    resumed = tiny_study(model, reference, tmp_path, log=lines.append)
    assert sum("loaded from" in line for line in lines) == 2 and resumed.complete
    assert_same_units(resumed, uninterrupted)
    assert deep_network_outputs.summarise(resumed)["error"] == deep_network_outputs.summarise(uninterrupted)["error"]


def test_units_do_not_depend_on_which_others_run(model, reference, uninterrupted, tmp_path):
    alone = tiny_study(model, reference, tmp_path, layers=["pool1"], C=[300])
    np.testing.assert_array_equal(alone.units[("pool1", 300.0)]["errors"],
                                  uninterrupted.units[("pool1", 300.0)]["errors"])


def test_checkpoints_of_another_study_are_refused(model, reference, tmp_path):
    tiny_study(model, reference, tmp_path, layers=["conv1"], C=[20], max_units=0)
    with pytest.raises(ValueError, match="different study.*seed"):
        tiny_study(model, reference, tmp_path, layers=["conv1"], C=[20], seed=4, max_units=0)


def test_a_damaged_unit_checkpoint_is_recomputed(model, reference, uninterrupted, tmp_path):
    tiny_study(model, reference, tmp_path, layers=["conv1"], C=[20], max_units=0)
    path = deep_networks._unit_path(str(tmp_path), "conv1", 20.0)
    os.makedirs(path)  # a directory with no checkpoint in it
    lines = []
    again = tiny_study(model, reference, tmp_path, layers=["conv1"], C=[20], log=lines.append)
    assert any("discarding" in line for line in lines)
    np.testing.assert_array_equal(again.units[("conv1", 20.0)]["errors"], uninterrupted.units[("conv1", 20.0)]["errors"])


def test_results_json_schema_and_figures(uninterrupted, tmp_path):
    written = deep_network_outputs.write_outputs(uninterrupted, str(tmp_path), parameters={"command": "test"})
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results)[:len(REQUIRED)] == list(REQUIRED)
    assert results["layers"] == ["conv1", "pool1"] and results["C"] == [20, 300]
    for key in REQUIRED[2:]:
        assert set(results[key]) == {"conv1", "pool1"}
        for layer in results["layers"]:
            assert set(results[key][layer]) == {"20", "300"}
            assert all(isinstance(v, float) for v in results[key][layer].values())
    for layer in results["layers"]:
        assert 0 <= results["class_consistency"][layer]["20"] <= 1
        assert 0 < results["hist_intersection"][layer]["300"] <= 1
        best = results["best_C"][layer]
        assert results["error"][layer][str(best)] == min(results["error"][layer].values())
    assert results["rule_C"] == {"conv1": 300, "pool1": 300}
    assert results["parameters"]["command"] == "test" and results["parameters"]["restarts"] == 2
    for path in written["plots"] + written["grids"] + written["invariance"]:
        assert os.path.getsize(path) > 1000, path
    assert len(written["invariance"]) == 2 and len(written["grids"]) == 3
    page = (tmp_path / "index.html").read_text()
    assert "error_vs_layer.png" in page and "invariance_image1.png" in page and "results.json" in page


def test_summarise_refuses_an_incomplete_study(model, reference, tmp_path):
    partial = tiny_study(model, reference, tmp_path, max_units=0)
    with pytest.raises(ValueError, match="incomplete"):
        deep_network_outputs.summarise(partial)


# ---------------------------------------------------------------- the binary

def run_binary(*flags, env=None):
    env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([sys.executable, "-m", "experiments.deep_studies", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def test_binary_names_bad_input(tmp_path):
    out = run_binary("--layers=conv1,conv9", f"--output_dir={tmp_path}")
    assert out.returncode == 2 and "unknown layer 'conv9'" in out.stderr


@pytest.mark.slow
def test_binary_end_to_end_and_resume(tmp_path):
    flags = ["--num_images=2", "--restarts=2", "--layers=conv1,fc8", "--C=20,300", "--iterations=10",
             "--refine_iterations=0", f"--output_dir={tmp_path}"]
    out = run_binary(*flags, "--max_units=3")
    assert out.returncode == 0 and "incomplete: 3 of 4 units" in out.stdout, out.stderr[-2000:]
    out = run_binary(*flags)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("loaded from") == 3 and "at the best C per layer" in out.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["layers"] == ["conv1", "fc8"] and set(results["error"]["fc8"]) == {"20", "300"}
    for name in ("index.html", "error_vs_layer.png", "restart_std_vs_layer.png", "class_consistency_vs_layer.png",
                 "hist_intersection_vs_layer.png", "grid_rule_C.png", "grid_C20.png", "invariance_image0.png"):
        assert (tmp_path / name).stat().st_size > 500, name


@pytest.mark.slow
def test_binary_on_two_host_devices_matches_one(tmp_path):
    flags = ["--num_images=2", "--restarts=2", "--layers=pool1", "--C=100", "--iterations=10", "--refine_iterations=0"]
    one = run_binary(*flags, f"--output_dir={tmp_path / 'one'}")
    two = run_binary(*flags, f"--output_dir={tmp_path / 'two'}",
                     env=dict(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"))
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    assert "1 device(s)" in one.stdout and "2 device(s)" in two.stdout
    a, b = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    np.testing.assert_allclose(b["error"]["pool1"]["100"], a["error"]["pool1"]["100"], rtol=1e-4)
    assert b["class_consistency"] == a["class_consistency"]
