"""`jaxinv.studies.deep_networks.inverter_comparison` directly: the Table 2 comparison with a stand-in inverter."""
import json

import numpy as np
import pytest

from jaxinv.io import images
from jaxinv.studies import inverter_comparison


class Echo:
    """A stand-in 'inverter' returning the images themselves (error 0), or flat grey ones."""
    representation, image_size, metadata = "hog", 16, {"steps": 0}

    def __init__(self, flat=False):
        self.flat = flat

    def invert_images(self, colour):
        return np.full_like(colour, 128.0) if self.flat else np.asarray(colour)


@pytest.fixture
def echo(monkeypatch):
    try:
        images.imagenet_sample_paths()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    monkeypatch.setattr(inverter_comparison, "load_inverter", lambda config: (Echo(), "/echo"))


def test_compare_scores_a_perfect_inverter_and_runs_optimisation(echo, tmp_path):
    config = inverter_comparison.CompareConfig(num_images=3, iterations=3, refine_iterations=0, skip_hoggle=True,
                                      cache_dir=str(tmp_path))
    result = inverter_comparison.compare(config, log=lambda line: None)
    results = result.results
    assert results["learned"]["image_error"] == pytest.approx(0.0, abs=1e-6)
    assert results["optimisation"]["image_error"] > 0.1  # 3 iterations from noise are far off
    assert results["hoggle"] == {"image_error": None, "skipped": "skipped by flag"}
    assert results["baselines"]["mean image"]["image_error"] > 0.1
    assert list(result.reconstructions) == ["learned", "optimisation"]
    assert result.per_image["images"] == sorted(result.per_image["images"]) and len(result.per_image["learned"]) == 3
    assert list((tmp_path / "cache").iterdir())  # the optimisation's batches are cached
    written = inverter_comparison.write_outputs(result, str(tmp_path / "out"), figure_images=2)
    assert json.load(open(written[0]))["num_images"] == 3
    height, width, _ = images.load_image(written[2]).shape  # 2 rows of 3 tiles of 128 (and the gaps)
    assert 2 * 128 <= height < 3 * 128 and 3 * 128 <= width < 4 * 128


def test_non_hog_representations_skip_the_hog_methods(echo, monkeypatch):
    config = inverter_comparison.CompareConfig(representation="lbp", num_images=2, hoggle_dictionary="/nonexistent")
    results = inverter_comparison.compare(config, log=lambda line: None).results  # no dictionary is needed for lbp
    assert results["optimisation"]["skipped"] == "exists for hog only, not 'lbp'"
    assert results["paper_table2"] == {"hoggle": 0.61, "optimisation": 0.63, "learned": 0.38}


def test_summary_lines():
    entry = {"image_error": 0.5, "ci95": 0.01}
    results = {"representation": "hog", "learned": dict(entry, image_error_colour=0.6),
               "optimisation": entry, "hoggle": {"image_error": None, "skipped": "skipped by flag"},
               "baselines": {"mean image": entry}}
    lines = inverter_comparison.summary_lines(results)
    assert lines[0].startswith("learned") and "0.600 (colour)" in lines[0] and "paper (256x256): 0.24" in lines[0]
    assert lines[1].endswith("paper (256x256): 0.63") and lines[2] == "hoggle        skipped (skipped by flag)"
    assert lines[3].startswith("baseline: mean image")


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="HOGgle dictionary not found"):
        inverter_comparison.load_hoggle_dictionary(str(tmp_path / "none.npz"))
    with pytest.raises(ValueError, match="at least 2 images"):
        inverter_comparison.load_test_images(inverter_comparison.CompareConfig(num_images=1), 16)
