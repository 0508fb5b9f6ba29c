"""The one-call API (`jaxinv.invert`, `maximise`, `caricature`): same numbers as the methods it calls,
the papers' rules as defaults, results that save and display, and clear errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import jaxinv
from jaxinv import models
from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.methods import layer_rules, visualise
from tests import doc_blocks

FEW = dict(iterations=20, refine_iterations=5)


def test_bare_import_reaches_the_api_and_the_subpackages():
    code = ("import jaxinv; print(jaxinv.features.hog.__name__, jaxinv.invert.__name__, jaxinv.maximise.__name__, "
            "jaxinv.caricature.__name__, jaxinv.nets.load.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["hog", "invert", "maximise", "caricature", "load"]


def test_hog_inversion_of_an_array_saves_and_displays(tmp_path):
    image = images.load_sample_image(grey=True, size=64)
    result = jaxinv.invert("hog", image, restarts=2, **FEW)
    assert result.images.shape == (2, 64, 64) and result.original.shape == (64, 64)
    assert result.images.min() >= 0 and result.images.max() <= 255
    assert result.errors.shape == (2,) and np.all((result.errors > 0) & (result.errors < 1))
    assert result.problem.C == 100.0 and result.problem.jitter == 1  # IJCV Sect. 5.1
    assert result.history["energy"].shape == (25, 2)
    paths = result.save(str(tmp_path / "out"))
    assert sorted(os.path.basename(p) for p in paths) == ["grid.png", "restart0.png", "restart1.png", "result.json"]
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["scores"]["error"] == pytest.approx(result.errors.tolist())
    assert saved["iterations"] == 25 and saved["model"] == "hog"
    grid = np.asarray(Image.open(tmp_path / "out" / "grid.png"))
    assert grid.shape[1] > 3 * 64  # original and two restarts side by side
    assert result._repr_png_().startswith(b"\x89PNG")


def test_network_inversion_equals_the_method_with_the_layer_rules():
    model = jaxinv.nets.load("cifar-ref")
    image = visualise.default_images(model, 1)[0]
    result = jaxinv.invert("cifar-ref", image[0], layer="conv3", restarts=2, **FEW)
    direct = visualise.invert_layers(model, image, ["conv3"], restarts=2, stages=preimage.default_stages(20, 5),
                                     log=lambda line: None)["conv3"]
    np.testing.assert_array_equal(result.images, direct.images[0])
    np.testing.assert_array_equal(result.errors, direct.errors[0])
    assert result.problem.C == layer_rules.layer_C(model, "conv3")
    assert result.problem.jitter == layer_rules.layer_jitter(model, "conv3")
    named = jaxinv.invert("cifar-ref:conv3", image[0], restarts=2, **FEW)
    np.testing.assert_array_equal(named.images, result.images)


def test_maximise_defaults_to_the_class_scores_and_caricature_grows_the_pattern():
    result = jaxinv.maximise("cifar-ref", unit=1, iterations=60, refine_iterations=10)
    assert result.layer == "fc8[1]" and result.original is None
    assert result.images.shape == (1, 32, 32, 3)
    # Measured: probability 0.80 of class 1 after 70 iterations (0.1 at a random image).
    assert result.scores["probability"][0] > 0.5, result.scores
    caricature = jaxinv.caricature("cifar-ref", layer="relu2", restarts=2, **FEW)
    assert caricature.images.shape == (2, 32, 32, 3)
    assert np.all(caricature.scores["gain"] > 1.0), caricature.scores  # 1 at the image itself


@pytest.mark.parametrize("call, message", [
    (lambda: jaxinv.invert("cifar-ref", **FEW), "needs layer=.*layers: conv1, relu1"),
    (lambda: jaxinv.invert("cifar-ref", layer="conv9", **FEW), "unknown layer 'conv9'.*valid layers"),
    (lambda: jaxinv.invert("cifar-ref:conv3", layer="conv2", **FEW), "layer given twice"),
    (lambda: jaxinv.invert("lbp", **FEW), "lbp is not differentiable"),
    (lambda: jaxinv.invert("hog", np.zeros((4, 4, 4, 3)), **FEW), r"got shape \(4, 4, 4, 3\)"),
    (lambda: jaxinv.invert("hog", np.full((64, 64), np.nan), **FEW), "non-finite"),
    (lambda: jaxinv.invert("hog", iterations=-1), "iterations must be an integer >= 0"),
    (lambda: jaxinv.invert("hog", iterations=0, refine_iterations=0), "at least 1"),
    (lambda: jaxinv.maximise("hog"), "needs a network"),
    (lambda: jaxinv.invert(3.5), "model must be a shipped network name"),
    (lambda: jaxinv.invert("no-such-net", layer="x"), "network directory not found: no-such-net"),
])
def test_bad_calls_get_clear_errors(call, message):
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=message):
        call()


def test_models_load_accepts_every_kind(tmp_path):
    model = jaxinv.nets.load("cifar-ref")
    assert models.load(model) is model
    jaxinv.nets.save(str(tmp_path / "net"), model)
    assert models.name(models.load(str(tmp_path / "net"))) == "cifar-ref"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    code = doc_blocks.python_block("## In Python")
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.images.shape == (4, 32, 32, 3) and result.problem.C == 20.0  # conv3 of cifar-ref: C = 20
    assert sorted(p.name for p in (tmp_path / "outputs" / "conv3").iterdir()) == [
        "grid.png", "restart0.png", "restart1.png", "restart2.png", "restart3.png", "result.json"]
