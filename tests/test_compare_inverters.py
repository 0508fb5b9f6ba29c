"""`jaxinv.studies.deep_networks.inverter_comparison` directly: the Table 2 comparison with a stand-in inverter."""
import json
import os

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


def test_a_missing_default_hoggle_dictionary_is_learned_for_the_size(monkeypatch, tmp_path):
    from jaxinv.inverters import hoggle

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    asked = []

    def fake_train(config, log=print):
        asked.append(config)
        rng = np.random.default_rng(0)
        return hoggle.PairedDictionary(rng.standard_normal((2, 1600)), rng.standard_normal((2, 775)), 8, 5, 0.02,
                                       100.0, 30.0, {"fake": True})
    monkeypatch.setattr(inverter_comparison.hoggle_experiments, "train", fake_train)
    for size in (64, 128):
        dictionary = inverter_comparison.load_hoggle_dictionary(None, size, log=lambda line: None)
        assert dictionary.training_info == {"fake": True} and os.path.isfile(hoggle.default_dictionary_path(size))
    assert [(c.image_size, c.num_patches) for c in asked] == [(64, None), (128, inverter_comparison.ON_DEMAND_WINDOWS)]
    assert hoggle.default_dictionary_path(128).endswith("dictionary-128.npz")
    inverter_comparison.load_hoggle_dictionary(None, 128, log=lambda line: None)
    assert len(asked) == 2  # built once, then loaded


def test_the_shipped_inverter_stands_in_for_an_untrained_cache(monkeypatch, tmp_path):
    from jaxinv import inverters

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert inverters.trained_or_shipped_dir("hog", 64) == inverters.builtin_dir("hog-64")
    assert inverters.trained_or_shipped_dir("lbp", 64) == inverters.default_dir("lbp", 64)
    os.makedirs(inverters.default_dir("hog", 64))
    assert inverters.trained_or_shipped_dir("hog", 64) == inverters.default_dir("hog", 64)


def test_resolution_summary(tmp_path):
    dirs = []
    for rep, size, learned in (("hog", 64, 0.4), ("hog", 128, 0.35), ("lbp", 128, 0.5)):
        entry = lambda value: {"image_error": value, "ci95": 0.01}
        results = {"representation": rep, "size": size, "num_images": 20, "learned": entry(learned),
                   "inverter_metadata": {"width": 0.5, "selected_step": 900},
                   "optimisation": entry(0.6) if rep == "hog" else {"image_error": None, "skipped": "hog only"},
                   "hoggle": entry(0.57) if rep == "hog" else {"image_error": None, "skipped": "hog only"},
                   "baselines": {"own mean level": entry(0.62 + size / 12800)}}
        dirs.append(str(tmp_path / f"{rep}{size}"))
        os.makedirs(dirs[-1])
        json.dump(results, open(os.path.join(dirs[-1], "results.json"), "w"))
    table, plot = inverter_comparison.resolution_summary(dirs, str(tmp_path / "out"))
    rows = table.splitlines()
    assert rows[0] == "| method | 64x64 | 128x128 | paper (256x256) |"
    assert rows[2].startswith("| learned HOG | 0.400 +- 0.010 (20 images; width 0.5, 900 steps) | 0.350")
    assert rows[2].endswith("| 0.24 |")
    assert rows[5].startswith("| learned LBP | not run | 0.500") and rows[5].endswith("| 0.38 |")
    assert rows[6] == ("| baseline: own mean level | 0.625 +- 0.010 (20 images; no feature) "
                       "| 0.630 +- 0.010 (20 images; no feature) |  |")
    assert len(rows) == 7
    assert os.path.isfile(plot) and open(tmp_path / "out" / "resolution.md").read() == table
    # A later run adds a size and replaces one entry; the earlier summary's other entries stay, without their folders.
    for d in dirs:
        os.remove(os.path.join(d, "results.json"))
    newer = {"representation": "lbp", "size": 128, "num_images": 50, "learned": {"image_error": 0.45, "ci95": 0.02},
             "inverter_metadata": {"width": 0.25, "selected_step": 1500},
             "baselines": {"own mean level": {"image_error": 0.63, "ci95": 0.01}}}
    os.makedirs(tmp_path / "lbp128b")
    json.dump(dict(newer, size=256), open(tmp_path / "lbp128b" / "results.json", "w"))
    table2, _ = inverter_comparison.resolution_summary([str(tmp_path / "lbp128b")], str(tmp_path / "out2"),
                                                       previous=str(tmp_path / "out" / "resolution.json"))
    rows2 = table2.splitlines()
    assert rows2[0] == "| method | 64x64 | 128x128 | 256x256 | paper (256x256) |"
    assert rows2[2] == rows[2].replace(" | 0.24 |", " | not run | 0.24 |")
    assert rows2[5] == ("| learned LBP | not run | 0.500 +- 0.010 (20 images; width 0.5, 900 steps) "
                        "| 0.450 +- 0.020 (50 images; width 0.25, 1500 steps) | 0.38 |")
    assert rows2[6].endswith("| 0.630 +- 0.010 (50 images; no feature) |  |")
    json.dump(dict(newer), open(tmp_path / "lbp128b" / "results.json", "w"))  # the same size: replaced
    table3, _ = inverter_comparison.resolution_summary([str(tmp_path / "lbp128b")], str(tmp_path / "out3"),
                                                       previous=str(tmp_path / "out" / "resolution.json"))
    assert table3.splitlines()[5] == "| learned LBP | not run | 0.450 +- 0.020 (50 images; width 0.25, 1500 steps) | 0.38 |"
