"""`jaxinv.methods.visualise_modes` directly, on the shipped cifar-ref at a few iterations (the binary end
to end on a converted network: tests/test_visualise_binaries.py)."""
import json

import numpy as np
import pytest

from jaxinv.io import images
from jaxinv.methods import hog_templates
from jaxinv.methods import visualise_modes as V

TINY = dict(iterations=3, refine_iterations=0)


def test_restarts_mode_lays_out_restarts_by_layers(tmp_path):
    figure = V.run(V.VisualiseConfig(mode="restarts", layers=("conv1", "fc8"), restarts=2, scale=2, **TINY),
                   log=lambda line: None)
    assert figure.parameters["arch"] == "cifar-ref" and figure.parameters["restarts"] == 2
    errors = figure.results["errors"]
    assert set(errors) == {"conv1", "fc8"} and all(len(e) == 2 for e in errors.values())
    assert figure.results["restart_std"]["fc8"] == pytest.approx(np.std(errors["fc8"], ddof=1))
    # Restarts down; original, conv1, fc8 across; 32 px tiles enlarged twice.
    tile = np.zeros((32, 32, 3), np.float32)
    expected = images.labelled_grid([[tile] * 3] * 2, column_labels=["original", "conv1", "fc8"],
                                    row_labels=["restart 0", "restart 1"], tile_labels=[["", "e", "e"]] * 2, scale=2)
    assert figure.image.shape == expected.shape
    written = V.write_outputs(figure, str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in written] == ["restarts.png", "results.json", "index.html"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["parameters"]["mode"] == "restarts" and saved["parameters"]["iterations"] == 3


def test_window_mode_boxes_the_receptive_field():
    figure = V.run(V.VisualiseConfig(mode="window", layers=("pool1",), window=3, **TINY), log=lambda line: None)
    # pool1 of cifar-ref: a 16x16 map, its central 3x3 window, and the pixels those cells can see.
    assert figure.results["windows"]["pool1"] is not None
    box = figure.results["receptive_field_boxes"]["pool1"]
    assert 0 <= box[0] < box[2] <= 32 and 0 <= box[1] < box[3] <= 32 and box[2] - box[0] < 32


def test_hog_template_mode_reads_template_files(tmp_path):
    np.save(tmp_path / "edges.npy", hog_templates.edge_template(4).weights)
    figure = V.run(V.VisualiseConfig(mode="hog_template", template=(str(tmp_path / "edges.npy"),), restarts=2,
                                     **TINY), log=lambda line: None)
    entry = figure.results["templates"]["edges"]
    assert len(entry["responses"]) == 2 and entry["shape_cells"] == [4, 4]
    assert figure.parameters == {"templates": ["edges"], "restarts": 2, "mode": "hog_template", "iterations": 3,
                                 "refine_iterations": 0, "seed": 0}


def test_bad_input_is_refused_before_any_work():
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        V.run(V.VisualiseConfig(mode="window", layers=("conv9",)))
    with pytest.raises(ValueError, match="unknown mode 'nope'"):
        V.run(V.VisualiseConfig(mode="nope"))


def test_blank_and_scale_rules():
    assert V.blank(np.zeros((5, 7))).shape == (5, 7, 3) and V.blank(np.zeros((5, 7))).min() == 255
    assert V.scale_for(V.VisualiseConfig(), 32) == 4 and V.scale_for(V.VisualiseConfig(scale=1), 32) == 1
