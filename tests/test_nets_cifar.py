"""The trained cifar-ref network shipped in jaxinv/nets/assets/cifar-ref.

Full evaluation (all 10,000 CIFAR-10 test images):  pytest -m slow tests/test_nets_cifar.py
"""
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
