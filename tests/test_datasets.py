"""Which images of a dataset are used (jaxinv.datasets)."""
import numpy as np
import pytest

from jaxinv import datasets


def test_evenly_spaced_spans_the_classes():
    np.testing.assert_array_equal(datasets.evenly_spaced(10000, 4), [0, 2500, 5000, 7500])
    with pytest.raises(ValueError, match="cannot take"):
        datasets.evenly_spaced(10, 11)
    np.testing.assert_array_equal(datasets.evenly_spaced(7), np.arange(7))  # default: all, in order
    np.testing.assert_array_equal(datasets.evenly_spaced(7, 7), np.arange(7))
    with pytest.raises(ValueError, match="cannot take 0 of 10"):
        datasets.evenly_spaced(10, 0)
