"""The trained cifar-ref network shipped in jaxinv/nets/assets/cifar-ref.

Full evaluation (all 10,000 CIFAR-10 test images):  pytest -m slow tests/test_nets_cifar.py
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxinv import nets
from jaxinv.nets import cifar10


@pytest.fixture(scope="module")
def test_set():
    try:
        data = cifar10.load()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return data["test_images"], data["test_labels"]


@pytest.fixture(scope="module")
def model():
    return nets.load("cifar-ref")


def test_shipped_network_metadata(model):
    assert model.arch == "cifar-ref" and model.input_size == 32
    assert model.class_names == cifar10.CLASS_NAMES
    assert model.metadata["test_accuracy"] >= 0.80 and model.metadata["test_images"] == 10000
    assert "train_classifier" in model.metadata["command"]
    assert model.receptive_fields["pool3"] == (31, 8)


def test_accuracy_on_a_stratified_thousand(model, test_set):
    images, labels = test_set
    # Every tenth image: 100 of each class (the files are sorted by class).
    accuracy = cifar10.accuracy(model, images[::10], labels[::10])
    assert accuracy >= 0.78, accuracy


@pytest.mark.slow
def test_accuracy_on_all_test_images(model, test_set):
    images, labels = test_set
    accuracy = cifar10.accuracy(model, images, labels)
    print(f"cifar-ref test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.80, accuracy


def test_augmentation_crops_and_flips():
    from jaxinv.nets import training
    images = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, 32, 32, 3)
    out = training.augment(images, np.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == np.uint8
    for augmented, original in zip(out, images):  # each is a shifted window, maybe mirrored
        padded = np.pad(original, ((4, 4), (4, 4), (0, 0)))
        windows = [padded[dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(np.array_equal(augmented, w) or np.array_equal(augmented, w[:, ::-1]) for w in windows)


@pytest.mark.slow
def test_training_resumes_from_the_last_epoch(tmp_path, test_set):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "experiments.train_classifier", "--max_train_images=1280",
               "--max_test_images=200", f"--output_dir={tmp_path}"]
    env = dict(os.environ, PYTHONPATH=root)
    subprocess.run(command + ["--epochs=1"], check=True, cwd=root, env=env, capture_output=True)
    resumed = subprocess.run(command + ["--epochs=2"], check=True, cwd=root, env=env, capture_output=True, text=True)
    assert "resuming after epoch 1" in resumed.stdout and "epoch 2/2" in resumed.stdout
    assert "epoch 1/" not in resumed.stdout
    assert nets.load(str(tmp_path)).metadata["epochs"] == 2


def test_subset_keeps_every_class(test_set):
    from jaxinv.nets import training
    images, labels = test_set
    kept_images, kept_labels = training.subset(images, labels, 20)
    assert len(kept_labels) == 20 and set(kept_labels.tolist()) == set(range(10))
    assert training.subset(images, labels, None)[0] is images


def test_train_writes_a_network_and_resumes(tmp_path, test_set):
    from jaxinv.nets import training
    config = training.ClassifierConfig(epochs=1, batch_size=64, max_train_images=128, max_test_images=20)
    lines = []
    model = training.train(config, str(tmp_path), command="test", log=lines.append)
    assert lines[0].startswith("epoch 1/1: loss ") and "network written to" in lines[-1]
    saved = nets.load(str(tmp_path))
    assert saved.metadata["epochs"] == 1 and saved.metadata["test_images"] == 20
    assert saved.metadata["recipe"]["batch_size"] == 64 and saved.convention == model.convention
    lines.clear()
    training.train(training.ClassifierConfig(**dict(vars(config), epochs=2)), str(tmp_path), log=lines.append)
    assert lines[0].startswith("resuming after epoch 1") and lines[1].startswith("epoch 2/2")
    assert nets.load(str(tmp_path)).metadata["epochs"] == 2
