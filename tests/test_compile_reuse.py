"""Weights are arguments of the compiled step: a second set of weights reuses every compiled program."""
import dataclasses
import re

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


def test_engine_steps_compile_convolutions_without_ynnpack_on_cpu(monkeypatch):
    """On CPU the engine's steps leave convolutions to Eigen and matmuls to YNNPACK (faster for them here:
    docs/performance.md), unless switched off or the user's XLA_FLAGS choose the fusions themselves; other
    programs keep XLA's default, YNNPACK convolutions included."""
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert compilation.compiler_options() == compilation.CPU_OPTIONS
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
    assert compilation.compiler_options() is None
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(compilation, "cpu_options", None)
    assert compilation.compiler_options() is None
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(compilation, "cpu_options", compilation.CPU_OPTIONS)
    assert compilation.compiler_options() is None
    monkeypatch.undo()

    model = nets.load("cifar-ref")
    representation = taps.representation(model, "conv3")
    problem = layer_rules.inversion_problem(model, "conv3")
    target = preimage.make_target(representation, problem, images.load_sample_image(size=32))
    fused = {}
    for options_on in (True, False):
        monkeypatch.setattr(compilation, "cpu_options", compilation.CPU_OPTIONS if options_on else None)
        preimage._compiled_steps.cache_clear()
        text = preimage.compile_step(representation, problem, target, (32, 32), restarts=2).as_text()
        fused[options_on] = set(re.findall(r'op_name="[^"]*/(\w+)"[^\n]*__ynn_fusion', text))
    preimage._compiled_steps.cache_clear()
    assert "conv_general_dilated" in fused[False] and "dot_general" in fused[False]
    assert "conv_general_dilated" not in fused[True] and "dot_general" in fused[True]
