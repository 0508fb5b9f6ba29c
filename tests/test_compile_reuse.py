"""Weights are arguments of the compiled step: a second set of weights reuses every compiled program."""
import dataclasses

import jax
import numpy as np

from jaxinv import nets
from jaxinv.engine import compilation, preimage
from jaxinv.io import images
from jaxinv.methods import hog_templates, inversion, layer_rules
from jaxinv.nets import taps

STAGES = preimage.default_stages(5, 2)


def test_a_second_hog_template_compiles_nothing():
    first, second = hog_templates.edge_template(4, "vertical"), hog_templates.edge_template(4, "horizontal")
    with compilation.counting() as cold:
        a = hog_templates.visualise_template(first, restarts=2, stages=STAGES)
    with compilation.counting() as warm:
        b = hog_templates.visualise_template(second, restarts=2, stages=STAGES)
    assert cold.count > 0 and warm.count == 0
    # Same compiled program, other weights: each template still gets its own optimum.
    assert np.all(a.responses > a.initial_responses) and np.all(b.responses > b.initial_responses)
    assert not np.allclose(a.images, b.images)


def test_a_second_network_of_one_architecture_compiles_nothing():
    shipped = nets.load("cifar-ref")
    random_weights = nets.init_params(shipped.table, jax.random.PRNGKey(1), shipped.input_size)
    other = dataclasses.replace(shipped, params=random_weights)
    image = images.load_sample_image(size=32)
    results = []
    for model in (shipped, other):
        representation = taps.representation(model, "conv3")
        with compilation.counting() as record:
            results.append(inversion.invert_images(representation, [image], stages=STAGES,
                                                   problem=layer_rules.inversion_problem(model, "conv3")))
        results[-1] = (record, results[-1])
    (cold, first), (warm, second) = results
    assert cold.count > 0 and warm.count == 0
    # The second run used the second weights: its target code is the random network's.
    expected = nets.apply(other.table, random_weights, other.preprocess(image[None]), upto="conv3")["conv3"][0]
    np.testing.assert_allclose(second.target_codes[0], expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(first.target_codes, second.target_codes)
