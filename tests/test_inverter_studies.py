"""experiments/inverter_studies.py end to end (slow: tiny inverters trained for a few steps) and its
error for a missing checkpoint (fast); `jaxinv.studies.inverter_layers` directly on an exact toy inverter."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxinv import inverters
from jaxinv.studies import inverter_layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_studies(*flags):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "experiments.inverter_studies", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)


def test_missing_inverter_names_the_checkpoint_and_the_training_command(tmp_path):
    result = run_studies(f"--inverters_dir={tmp_path}", "--layers=pool2", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 2, result.stderr
    expected_dir = os.path.join(str(tmp_path), os.path.basename(inverters.default_dir("cifar-ref:pool2", 32)))
    assert f"no trained inverter of cifar-ref:pool2 in {expected_dir}" in result.stderr
    assert (f"jaxinv-train-inverter --representation=cifar-ref:pool2 --output_dir={expected_dir}"
            in result.stderr)
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
def test_ci_size_study_end_to_end(tmp_path):
    from jaxinv.nets import cifar10
    try:
        cifar10.load()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    layers = ["pool3", "fc8"]
    for layer in layers:
        for finetune in (False, True):
            representation = f"cifar-ref:{layer}"
            directory = os.path.join(str(tmp_path), os.path.basename(
                inverters.default_dir(representation, 32, finetune)))
            config = inverters.TrainConfig(representation=representation, image_size=32, width=0.125, steps=3,
                                           batch_size=8, finetune_encoder=finetune)
            inverters.train(config, directory, eval_images=8, log=lambda line: None)
    out = tmp_path / "out"
    result = run_studies(f"--inverters_dir={tmp_path}", f"--layers={','.join(layers)}", "--num_images=8",
                         "--grid_images=4", "--fit_images=64", "--random_samples=2", "--interpolation_pairs=1",
                         "--interpolation_steps=3", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    perturbations = results["perturbations"]
    assert list(perturbations) == ["unperturbed", "binarised", "dropout50", "drop50-smallest",
                                   "drop50-smallest-binarised"]
    for name, per_layer in perturbations.items():
        assert set(per_layer) == set(layers) and all(0 < e < 10 for e in per_layer.values()), name
    assert set(results["fc8_topk"]) == {"unperturbed", "top5", "all-but-top5", "top1", "all-but-top1"}
    assert set(results["autoencoder"]["autoencoder"]) == set(layers)
    assert results["autoencoder"]["fixed encoder"] == perturbations["unperturbed"]
    zero = results["random_zero_fraction"]["pool3"]
    assert zero["real"] > 0.2 and abs(zero["histogram"] - zero["real"]) < 0.1  # pool3 is sparse
    for name in ["errors.png", "autoencoder.png", "autoencoder_grid.png", "fc8_topk.png", "interpolation_0.png",
                 "perturbations_pool3.png", "perturbations_fc8.png", "random_histogram.png",
                 "random_gaussian-diagonal.png", "random_gaussian-full.png", "index.html"]:
        assert (out / name).stat().st_size > 0, name
    html = (out / "index.html").read_text()
    assert "errors.png" in html and "results.json" in html


class ExactInverter:
    """A toy 'inverter' of 4x4 RGB images whose features are the pixels: decoding is exact."""
    representation = "toy"
    metadata = {}

    def features(self, x):
        return np.asarray(x, np.float32).reshape(len(x), -1)

    def __call__(self, phi):
        return np.asarray(phi, np.float32).reshape((len(phi), 4, 4, 3))

    def invert_images(self, x):
        return self(self.features(x))


@pytest.fixture
def toy_study(monkeypatch):
    rng = np.random.default_rng(0)
    sparse = lambda n: (rng.random((n, 4, 4, 3)) * 255 * (rng.random((n, 4, 4, 3)) < 0.5)).astype(np.float32)
    monkeypatch.setattr(inverter_layers, "trained_inverter", lambda config, layer, autoencoder=False: ExactInverter())
    monkeypatch.setattr(inverter_layers, "load_images", lambda config: (sparse(config.num_images),
                                                                      sparse(config.fit_images)))
    config = inverter_layers.StudyConfig(layers=("pool3", "fc8"), num_images=6, grid_images=3, fit_images=32,
                                       random_samples=4, histogram_bins=8, interpolation_pairs=1,
                                       interpolation_steps=3, top_k=(2,), batch_size=4)
    return inverter_layers.run(config, log=lambda line: None)


def test_layer_studies_run_on_an_exact_inverter(toy_study):
    results = toy_study.results
    assert list(results["perturbations"]) == ["unperturbed", "binarised", "dropout50", "drop50-smallest",
                                              "drop50-smallest-binarised"]
    assert results["perturbations"]["unperturbed"] == {"pool3": pytest.approx(0.0, abs=1e-6),
                                                       "fc8": pytest.approx(0.0, abs=1e-6)}
    assert results["perturbations"]["dropout50"]["pool3"] > 0.1
    assert set(results["fc8_topk"]) == {"unperturbed", "top2", "all-but-top2"}
    assert results["fc8_topk"]["top2"] > 0.1
    assert results["autoencoder"]["autoencoder"]["fc8"] == pytest.approx(0.0, abs=1e-6)
    assert results["autoencoder"]["fixed encoder"] == results["perturbations"]["unperturbed"]
    # An exact decoder of a linear interpolation moves in equal steps.
    assert results["interpolation_step_ratio"]["pool3"] == pytest.approx(1.0, abs=1e-4)
    zero = results["random_zero_fraction"]["pool3"]
    assert 0.3 < zero["real"] < 0.7 and abs(zero["histogram"] - zero["real"]) < 0.2
    assert results["parameters"]["top_k"] == (2,)


def test_layer_studies_write_outputs(toy_study, tmp_path):
    written = inverter_layers.write_outputs(toy_study, str(tmp_path))
    for name in ["errors.png", "autoencoder.png", "autoencoder_grid.png", "fc8_topk.png", "interpolation_0.png",
                 "perturbations_pool3.png", "perturbations_fc8.png", "random_histogram.png", "index.html"]:
        assert (tmp_path / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "results.json").read_text())["parameters"]["layers"] == ["pool3", "fc8"]
    assert len(written["figures"]["interpolation"]) == 1


def test_layer_studies_config_checks():
    with pytest.raises(ValueError, match="--interpolation_steps must be at least 2"):
        inverter_layers.StudyConfig(interpolation_steps=1).check()
    with pytest.raises(ValueError, match="--layers is empty"):
        inverter_layers.StudyConfig(layers=()).check()
    config = inverter_layers.StudyConfig(inverters_dir="/x")
    assert inverter_layers.inverter_dir(config, "cifar-ref:fc8", True) == os.path.join(
        "/x", os.path.basename(inverters.default_dir("cifar-ref:fc8", 32, True)))
