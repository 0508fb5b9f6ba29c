"""`jaxinv.methods.activation_max` directly, on the shipped cifar-ref at a few iterations (the binary end to
end on a converted network: tests/test_visualise_binaries.py)."""
import json

import numpy as np
import pytest

from jaxinv.methods import activation_max as AM
from jaxinv import nets
from jaxinv.io import datasets

TINY = dict(iterations=3, refine_iterations=0, reference_images=10)


def test_class_units_with_probabilities_and_outputs(tmp_path):
    config = AM.ActivationMaxConfig(units=(3, 5), restarts=2, cache_dir=str(tmp_path / "cache"), **TINY)
    result = AM.run(config, log=lambda line: None)
    model = nets.load("cifar-ref")
    reference, _ = datasets.reference_images(model, 10)
    maxima = AM.activation_maxima(model, "fc8", reference, directory=str(tmp_path / "cache"))
    assert [u["unit"] for u in result.units] == [3, 5] and result.units[0]["name"] == "3 cat"
    assert result.units[1]["M"] == pytest.approx(float(maxima[5]), rel=1e-5)
    assert result.units[0]["value_over_M"] == pytest.approx(np.divide(result.units[0]["values"], result.units[0]["M"]))
    assert len(result.units[0]["probabilities"]) == 2
    assert result.summary["min_probability"] <= result.summary["mean_probability"] <= 1
    assert result.images.shape == (2, 2, 32, 32, 3) and result.scale == 4
    written = AM.write_outputs(result, str(tmp_path / "out"))
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["units"][1]["unit"] == 5 and saved["reference_images"] == result.parameters["reference_images"]
    assert [p.rsplit("/", 1)[1] for p in written] == ["grid.png", "energy.png", "results.json", "index.html"]


def test_channel_units_default_to_the_first_eight_without_probabilities(tmp_path):
    result = AM.run(AM.ActivationMaxConfig(layer="relu1", restarts=1, cache_dir=str(tmp_path), **TINY),
                    log=lambda line: None)
    assert [u["unit"] for u in result.units] == list(range(8)) and result.units[0]["name"] == "relu1:0"
    assert "probabilities" not in result.units[0] and result.summary == {}
    assert AM.unit_lines(result.units, result.summary)[0].startswith("  relu1:0: value/M ")


def test_summary_and_lines_by_hand():
    p = np.array([[0.9, 0.5], [0.2, 0.4]])
    summary = AM.probability_summary(p)
    assert summary["min_probability"] == 0.2 and summary["mean_probability"] == pytest.approx(0.5)
    assert summary["per_class_min"] == [0.5, 0.2] and AM.probability_summary(None) == {}
    entries = [{"name": "0 airplane", "value_over_M": [1.5, 2.0], "probabilities": [0.9, 0.5]}]
    assert AM.unit_lines(entries, summary) == ["  0 airplane: value/M 1.50, 2.00; p(class) 0.900, 0.500",
                                               "class probability: min 0.200, mean 0.500"]


def test_bad_units_are_refused():
    with pytest.raises(ValueError, match="unit index 10 out of range"):
        AM.run(AM.ActivationMaxConfig(units=(10,)))
