"""The visualisation binaries end to end: on a random-weight CaffeNet at 99x99 (a converted network
given by directory) and, for bad input, on the shipped cifar-ref."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxinv import nets
from jaxinv.io import datasets
from jaxinv.methods import activation_max, hog_templates
from jaxinv.nets import tables
from jaxinv.nets.model import CAFFE_CONVENTION, Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--iterations=3", "--refine_iterations=0"]


def run_binary(module, args, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", module] + args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def small_caffenet(tmp_path_factory):
    """CaffeNet's table with random weights at a 99x99 input (fc6 sees 2x2x256), saved like a converted network."""
    directory = tmp_path_factory.mktemp("caffe-ref-99")
    table = tables.build("caffe-ref")
    model = Model("caffe-ref", table, tables.init_params(table, jax.random.key(0), 99), 99, dict(CAFFE_CONVENTION),
                  class_names=[f"class {i}" for i in range(1000)])
    nets.save(str(directory), model)
    return str(directory)


MODES = {
    "layers": ["--layers=conv1,fc8", "--num_images=2"],
    "restarts": ["--layers=pool1,fc7", "--restarts=2"],
    "window": ["--layers=conv1,conv2"],
    "channels": ["--layers=norm1,conv2"],
    "caricature": ["--layers=relu2,fc8", "--num_images=2"],
    "texture": ["--layers=relu1,relu2", "--size=67"],
    "style": ["--layers=relu1,relu2", "--content_layer=relu2", "--size=67", "--style_weights=1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_visualise_modes_on_a_converted_network(mode, small_caffenet, tmp_path):
    out = tmp_path / mode
    result = run_binary("experiments.visualise", [f"--mode={mode}", f"--net={small_caffenet}",
                                                  f"--output_dir={out}"] + TINY + MODES[mode], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / f"{mode}.png").stat().st_size > 0 and (out / "index.html").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["parameters"]["arch"] == "caffe-ref" and results["parameters"]["mode"] == mode
    if mode == "window":
        assert results["receptive_field_boxes"]["conv1"] == [36, 36, 63, 63]
    if mode == "channels":
        assert results["groups"]["conv2"] == [[0, 128], [128, 256]]
        assert results["group_source"]["norm1"] == "grouped convolution"


@pytest.mark.slow
def test_hog_template_mode_reads_template_files(tmp_path):
    np.save(tmp_path / "edges.npy", hog_templates.edge_template(4).weights)
    out = tmp_path / "hog"
    result = run_binary("experiments.visualise", ["--mode=hog_template", f"--template={tmp_path / 'edges.npy'}",
                                                  "--restarts=2", f"--output_dir={out}"] + TINY, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    entry = json.loads((out / "results.json").read_text())["templates"]["edges"]
    assert len(entry["responses"]) == 2 and entry["shape_cells"] == [4, 4]


@pytest.mark.slow
def test_activation_max_binary_on_a_converted_network(small_caffenet, tmp_path):
    model = nets.load(small_caffenet)
    reference, _ = datasets.reference_images(model, 12)
    maxima = activation_max.activation_maxima(model, "fc8", reference, directory=str(tmp_path / "cache"))
    positive, negative = np.flatnonzero(maxima > 0)[:2], int(np.flatnonzero(maxima <= 0)[0])
    args = [f"--net={small_caffenet}", "--layer=fc8", "--restarts=2", "--reference_images=12",
            f"--cache_dir={tmp_path / 'cache'}"] + TINY
    out = tmp_path / "am"
    result = run_binary("experiments.activation_max", args + [f"--units={positive[0]},{positive[1]}",
                                                              f"--output_dir={out}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [u["unit"] for u in results["units"]] == list(positive) and results["image_size"] == 99
    assert results["units"][0]["M"] == pytest.approx(float(maxima[positive[0]]), rel=1e-5)  # read from the cache
    assert len(results["units"][0]["probabilities"]) == 2 and "min_probability" in results
    assert results["reference_images"] == "imagenet_samples[:12]"
    assert (out / "grid.png").is_file() and (out / "index.html").is_file()
    # Random weights: some class scores are negative on every reference image; Z = M rho^2 is then refused.
    refused = run_binary("experiments.activation_max", args + [f"--units={negative}", f"--output_dir={out}"], tmp_path)
    assert refused.returncode == 2 and f"unit {negative} of layer 'fc8' never activates" in refused.stderr
    conv = run_binary("experiments.activation_max", [f"--net={small_caffenet}", "--layer=relu1", "--units=0",
                                                     "--restarts=1", "--reference_images=12", f"--cache_dir={tmp_path / 'cache'}",
                                                     f"--output_dir={tmp_path / 'conv'}"] + TINY, tmp_path)
    assert conv.returncode == 0, conv.stderr[-3000:]
    conv_results = json.loads((tmp_path / "conv" / "results.json").read_text())
    assert conv_results["image_size"] == 19 and "probabilities" not in conv_results["units"][0]
    assert len(os.listdir(tmp_path / "cache")) == 2  # fc8 and relu1


def test_binaries_report_bad_input_in_one_line(tmp_path):
    result = run_binary("experiments.activation_max", ["--units=10", f"--output_dir={tmp_path}"], tmp_path)
    assert result.returncode == 2
    assert "unit index 10 out of range for layer 'fc8' of network 'cifar-ref' (10 units: 0..9)" in result.stderr
    result = run_binary("experiments.visualise", ["--mode=window", "--layers=conv9", f"--output_dir={tmp_path}"],
                        tmp_path)
    assert result.returncode == 2 and "unknown layer 'conv9'" in result.stderr
