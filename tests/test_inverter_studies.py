"""experiments/inverter_studies.py end to end (slow: tiny inverters trained for a few steps) and its
error for a missing checkpoint (fast)."""
import json
import os
import subprocess
import sys

import pytest

from jaxinv import inverters

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
    assert (f"python -m experiments.train_inverter --representation=cifar-ref:pool2 --output_dir={expected_dir}"
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
