"""Which images of a dataset are used (jaxinv.io.datasets)."""
import numpy as np
import pytest

from jaxinv.io import datasets
from jaxinv.nets import cifar10, tables
from jaxinv.nets.model import CAFFE_CONVENTION, Model


def test_evenly_spaced_spans_the_classes():
    np.testing.assert_array_equal(datasets.evenly_spaced(10000, 4), [0, 2500, 5000, 7500])
    with pytest.raises(ValueError, match="cannot take"):
        datasets.evenly_spaced(10, 11)
    np.testing.assert_array_equal(datasets.evenly_spaced(7), np.arange(7))  # default: all, in order
    np.testing.assert_array_equal(datasets.evenly_spaced(7, 7), np.arange(7))
    with pytest.raises(ValueError, match="cannot take 0 of 10"):
        datasets.evenly_spaced(10, 0)


def network(input_size, class_names):
    return Model("cifar-ref", tables.build("cifar-ref"), None, input_size, dict(CAFFE_CONVENTION),
                 class_names=class_names)


@pytest.mark.parametrize("input_size,class_names,expected", [
    (32, cifar10.CLASS_NAMES, True),        # the reference network
    (32, None, True),                       # converted without class names: 32 px natural images fit
    (32, [], True),
    (32, [f"class {i}" for i in range(100)], False),  # a 32 px network of another dataset (CIFAR-100, ...)
    (32, cifar10.CLASS_NAMES[::-1], False),  # other labels, even if the same words
    (64, cifar10.CLASS_NAMES, False),       # CIFAR-10's names, but it cannot take 32x32 images
    (227, None, False),
])
def test_which_networks_are_cifar10_networks(input_size, class_names, expected):
    assert datasets.is_cifar10_network(network(input_size, class_names)) is expected


def test_reference_sets_are_described_by_their_selection_rule():
    assert datasets.reference_description(network(32, cifar10.CLASS_NAMES), 200) == "cifar10 test, 200 evenly spaced"
    assert datasets.reference_description(network(227, None), 12) == "imagenet_samples[:12]"
    assert datasets.reference_description(network(32, None), 3, images_dir="/data/mine/") == "mine[:3]"
