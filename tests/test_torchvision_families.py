"""torchvision's CNN families (ResNet, VGG with and without batch norm, GoogLeNet, SqueezeNet,
MobileNetV2) converted from random-weight state_dicts of the PyTorch references in
`tests/torchvision_reference.py` (torchvision's module trees and state_dict keys): every named layer and
the input gradient against PyTorch, receptive fields derived through branches against the measured
gradient support, the per-layer C and jitter rules on ResNet-50 and GoogLeNet, the reader's errors,
and the visualisation binary on a converted ResNet-18.

Default suite: ResNet-18, GoogLeNet, SqueezeNet 1.1 and MobileNetV2 at 64 px (the global pools make
the nets run at any size), compared in float64 (`torchvision_reference.max_relative_differences`: one
compiled program per net), and VGG-11-BN's layers in float32 (VGG's adaptive pool repeats its 2x2 map
to 7x7). The slow suite adds every other variant at 64 px and runs every architecture at 224 px in
float64 and in float32.
"""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxinv import nets  # noqa: E402
from jaxinv.adapters import geometry  # noqa: E402
from jaxinv.engine import layer_shapes  # noqa: E402
from jaxinv import models  # noqa: E402
from jaxinv.methods import layer_rules, windows  # noqa: E402
from jaxinv.nets import taps, torchvision_tables  # noqa: E402
from jaxinv.nets.model import TORCHVISION_CONVENTION, Model  # noqa: E402
from tests import torchvision_reference as R  # noqa: E402
from jaxinv.conversion import convert, torch_reader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-4
SMALL = 64
DEFAULT_ARCHS = ("torchvision-resnet18", "torchvision-googlenet", "torchvision-squeezenet1_1",
                 "torchvision-mobilenet-v2")


def images(size, num_images):
    try:
        return R.natural_images(size, num_images)
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    """(PyTorch ResNet-18 with random weights and batch norm statistics, its conversion at 64 px)."""
    return R.converted("torchvision-resnet18", str(tmp_path_factory.mktemp("resnet18")), SMALL, images(SMALL, 2))


def check(arch, net, model, rgb):
    differences = R.max_relative_differences(model, net, arch, rgb, R.objective_layer(arch))
    worst = max(differences, key=differences.get)
    print(arch, rgb.shape[1], "worst", worst, differences[worst])
    assert differences[worst] <= TOLERANCE, differences
    assert len(differences) == len(model.layer_names) + 1
    return differences


@pytest.mark.parametrize("arch", [pytest.param(arch, marks=() if arch in DEFAULT_ARCHS else (pytest.mark.slow,))
                                  for arch in R.ARCHS])
def test_converted_network_matches_pytorch(arch, tmp_path, request):
    """Every layer (to 1e-4 of its largest activation) and the input gradient of the class scores."""
    rgb = images(SMALL, 2)
    if arch == "torchvision-resnet18":
        net, model = request.getfixturevalue("resnet18")
    else:
        net, model = R.converted(arch, str(tmp_path), SMALL, rgb)
    check(arch, net, model, rgb)
    if arch == "torchvision-googlenet":
        # The pretrained weights' transform_input is the (x - 0.5) / 0.5 input convention; the PyTorch
        # reference (transform_input=True) was fed ImageNet-normalised images.
        assert model.convention["mean"] == [0.5] * 3 and model.convention["std"] == [0.5] * 3
        assert any(key.startswith("aux1.") for key in R.reference(arch).state_dict())


def test_vgg_with_batch_norm_matches_pytorch_in_float32(tmp_path):
    """VGG-11-BN in the default suite: every layer run in float32, as jaxinv runs (against PyTorch in
    float64, `torchvision_reference.layer_differences`). Its 133M parameters
    make the float64 comparison (three float64 copies of the weights, input gradient included) slow,
    so that one runs with the slow suite (above, at 64 and 224 px); VGG's backward is a chain of the
    operators every other family's gradient test covers."""
    arch = "torchvision-vgg11-bn"
    rgb = images(SMALL, 2)
    net, model = R.converted(arch, str(tmp_path), SMALL, rgb)
    differences = R.layer_differences(model, net, rgb)
    print(arch, "float32 worst", max(differences.values()))
    assert max(differences.values()) <= TOLERANCE, differences
    assert len(differences) == len(model.layer_names)


@pytest.mark.slow
@pytest.mark.parametrize("arch", R.ARCHS)
def test_converted_network_matches_pytorch_at_224(arch, tmp_path):
    """Full size, one image: float64 as above, and every layer run in float32 as jaxinv runs."""
    rgb = images(224, 1)
    net, model = R.converted(arch, str(tmp_path), 224, rgb)
    check(arch, net, model, rgb)
    differences = R.layer_differences(model, net, rgb)
    print(arch, "float32 worst", max(differences.values()))
    assert max(differences.values()) <= TOLERANCE, differences


def test_batch_norm_statistics_matter(resnet18, tmp_path):
    """The folded convolution uses the running statistics and the architecture's eps: converting with
    GoogLeNet's eps 0.001 instead of ResNet's 1e-5 shows (small variances are among the random ones)."""
    net, model = resnet18
    layout = torchvision_tables.layout("torchvision-resnet18")
    path = str(tmp_path / "w.pth")
    torch.save(net.state_dict(), path)
    state = torch_reader.read_state_dict(path)
    table = nets.build("torchvision-resnet18")
    wrong = torch_reader._layout_params(table, SMALL, state, dataclasses.replace(layout, bn_eps=1e-3), path)
    weights = model.params["conv1"]["w"]
    assert np.abs(wrong["conv1"]["w"] - weights).max() > 1e-3 * np.abs(weights).max()


def test_reader_names_missing_and_foreign_modules(resnet18, tmp_path):
    net, _ = resnet18
    state = net.state_dict()
    cases = {
        "no module 'layer1.0.bn1'": {k: v for k, v in state.items() if not k.startswith("layer1.0.bn1.")},
        "batch norm has no running_var": {k: v for k, v in state.items() if k != "layer2.0.downsample.1.running_var"},
        "modules extra are not part of the architecture": dict(state, **{"extra.weight": torch.zeros(3)}),
        "shape mismatch for layer fc": dict(state, **{"fc.weight": torch.zeros(10, 512)}),
    }
    for message, broken in cases.items():
        path = tmp_path / "broken.pth"
        torch.save(broken, path)
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            convert.convert("torch", "torchvision-resnet18", str(path), input_size=SMALL)


# ---------------------------------------------------------------------------------------------
# Geometry through branches

def _unclipped_size(layer, table):
    """The smallest input size (multiple of 8) at which the centre unit of `layer` and its right and
    lower neighbours see only pixels strictly inside the image."""
    for size in range(32, 1024, 8):
        try:
            h = layer_shapes.output_shapes(table, (size, size, 3))[layer][0]
        except ValueError:
            continue
        start, stop, stride = layer_shapes.receptive_field_intervals(table, (size, size, 3))[layer]
        i = h // 2
        if h > 1 and i + 1 < h and start + i * stride > 0 and stop + (i + 1) * stride < size:
            return size
    raise AssertionError(f"no input size leaves {layer}'s centre unit unclipped")


MEASURED = {  # layers whose receptive field is measured: branches joined by add / concat
    "torchvision-resnet18": ["pool1", "layer2.0", "layer3"],
    "torchvision-squeezenet1_1": ["fire2"],
    "torchvision-googlenet": ["inception3a"],
    "torchvision-mobilenet-v2": ["features.3"],
    "torchvision-resnet50": ["layer1.0", "layer2.0"],
    "torchvision-squeezenet1_0": ["fire3"],
}
DEFAULT_MEASURED = {"torchvision-resnet18": ["layer2.0"], "torchvision-squeezenet1_1": ["fire2"]}


@pytest.mark.parametrize("arch,layer", [
    pytest.param(arch, layer, marks=() if layer in DEFAULT_MEASURED.get(arch, ()) else (pytest.mark.slow,))
    for arch, layers in MEASURED.items() for layer in layers])
def test_derived_receptive_field_is_the_measured_gradient_support(arch, layer):
    """Random He-normal weights; the support is the union over 8 random probes (adapters.geometry):
    its extent, stride and position equal the derived interval (union over the branches' paths)."""
    table = nets.build(arch)
    upto = table[:[l.name for l in table].index(layer) + 1]
    size = _unclipped_size(layer, upto)
    model = Model(arch, upto, nets.init_params(upto, jax.random.key(0), size), size, dict(TORCHVISION_CONVENTION))
    measured = geometry.measure(taps.representation(model, layer), probes=8)
    start, stop, stride = layer_shapes.receptive_field_intervals(upto, (size, size, 3))[layer]
    i, j = measured.unit
    assert not measured.clipped
    assert measured.receptive_field == (stop - start,) * 2 == (model.receptive_fields[layer][0],) * 2
    assert measured.stride == (stride, stride)
    assert measured.box == (start + i * stride, start + j * stride, stop + i * stride, stop + j * stride)
    assert windows.receptive_field_box(model, layer, (i, j, i + 1, j + 1)) == measured.box


def test_union_of_branches_that_are_not_centred_alike():
    """Two 3x3 branches padded on opposite sides (unit 0 sees rows -2..0 through one, 0..2 through the
    other) and summed: the field is the union, 5 rows, not the larger branch's 3; the input gradient
    of a unit has exactly that support."""
    import jax.numpy as jnp
    from jaxinv.engine import graph
    from jaxinv.engine.graph import INPUT, Layer
    from jaxinv.nets import layers as L

    def conv(name, pad):
        return Layer(name, L.conv, dict(out_channels=2, kernel=3, stride=1, pad=pad, groups=1), (INPUT,))
    table = [conv("before", (2, 0, 2, 0)), conv("after", (0, 2, 0, 2)),
             Layer("sum", graph.add, inputs=("before", "after"))]
    intervals = layer_shapes.receptive_field_intervals(table, (8, 8, 1))
    assert intervals == {"before": (-2, 1, 1), "after": (0, 3, 1), "sum": (-2, 3, 1)}
    assert layer_shapes.receptive_fields(table, (8, 8, 1))["sum"] == (5, 1)
    params = {name: {"w": jnp.ones((3, 3, 1, 2)), "b": jnp.zeros(2)} for name in ("before", "after")}
    grad = jax.grad(lambda x: graph.run(table, params, x)["sum"][0, 4, 4].sum())(jnp.ones((1, 8, 8, 1)))
    rows = np.flatnonzero(np.asarray(grad[0, :, :, 0]).any(axis=1))
    assert (rows[0], rows[-1] + 1) == (4 - 2, 4 + 3)


# ---------------------------------------------------------------------------------------------
# The papers' per-layer rules

RULES = {  # layer: (receptive field, stride, C, jitter T) at 224 px
    "torchvision-resnet50": {"conv1": (7, 2, 300, 1), "pool1": (11, 4, 300, 1), "layer1": (35, 4, 300, 1),
                             "layer2.0": (43, 8, 300, 2), "layer2": (91, 8, 300, 2), "layer3.0": (107, 16, 100, 4),
                             "layer3": (267, 16, 20, 4), "layer4": (427, 32, 20, 8), "avgpool": (619, 32, 1, 8),
                             "fc": (619, 32, 1, 8)},
    "torchvision-googlenet": {"conv1": (7, 2, 300, 1), "pool2": (27, 8, 300, 2), "inception3a": (43, 8, 300, 2),
                              "inception3b": (59, 8, 300, 2), "inception4a": (107, 16, 100, 4),
                              "inception4c": (171, 16, 20, 4), "inception4e": (235, 16, 20, 4),
                              "inception5b": (379, 32, 20, 8), "pool5": (571, 32, 1, 8), "fc": (571, 32, 1, 8)},
}


@pytest.mark.parametrize("arch", sorted(RULES))
def test_layer_rules_on_resnet50_and_googlenet(arch):
    model = Model(arch, nets.build(arch), None, 224, dict(TORCHVISION_CONVENTION))
    assert layer_rules.trunk_end(model.table) == {"torchvision-resnet50": "layer4",
                                                  "torchvision-googlenet": "inception5b"}[arch]
    found = {layer: model.receptive_fields[layer] + (layer_rules.layer_C(model, layer),
                                                     layer_rules.layer_jitter(model, layer))
             for layer in RULES[arch]}
    assert found == RULES[arch]


def test_graph_aware_helpers():
    """A ReLU's pre-activation is the layer it reads (ResNet's block output reads the sum); channel
    groups come from the convolution that produces or reads a map (MobileNetV2's depthwise one);
    ReLU6 layers count as rectifiers (texture layers)."""
    model = Model("torchvision-resnet18", nets.build("torchvision-resnet18"), None, 224, dict(TORCHVISION_CONVENTION))
    assert models.pre_activation(model, "layer2") == "layer2.1.add"
    assert models.pre_activation(model, "layer2.0.relu1") == "layer2.0.conv1"
    assert len(windows.channel_groups(model, "layer2.0")) == 1
    mobilenet = Model("torchvision-mobilenet-v2", nets.build("torchvision-mobilenet-v2"), None, 224,
                      dict(TORCHVISION_CONVENTION))
    assert models.pre_activation(mobilenet, "features.2.conv.1") == "features.2.conv.1.0"
    assert len(windows.channel_groups(mobilenet, "features.2.conv.0")) == 96  # read by a 96-group depthwise conv
    assert len(windows.channel_groups(mobilenet, "features.2")) == 1
    assert models.texture_layers(mobilenet)[:2] == ["features.0", "features.1.conv.0"]  # ReLU6 layers


def test_tables_shapes_and_names():
    """Output shapes from the rules equal those of running the table; the documented taps exist."""
    for arch, size in [("torchvision-resnet50", 224), ("torchvision-googlenet", 96), ("torchvision-mobilenet-v2", 224),
                       ("torchvision-squeezenet1_0", 224), ("torchvision-vgg11-bn", 64)]:
        table = nets.build(arch)
        shapes = jax.eval_shape(lambda: nets.apply(table, nets.init_params(table, jax.random.key(0), size),
                                                   np.zeros((1, size, size, 3), np.float32)))
        assert {k: v.shape[1:] for k, v in shapes.items()} == nets.output_shapes(table, size), arch
    shapes = nets.output_shapes(nets.build("torchvision-resnet50"), 224)
    assert shapes["layer4"] == (7, 7, 2048) and shapes["layer2.0.downsample"] == (28, 28, 512)
    assert nets.output_shapes(nets.build("torchvision-googlenet"), 224)["inception4c"] == (14, 14, 512)
    assert nets.output_shapes(nets.build("torchvision-mobilenet-v2"), 224)["features.18"] == (7, 7, 1280)
    assert nets.output_shapes(nets.build("torchvision-squeezenet1_1"), 224)["pool10"] == (1, 1, 1000)
    for arch in R.ARCHS:
        layout = torchvision_tables.layout(arch)
        assert set(layout.modules) == set(nets.param_shapes(nets.build(arch), 224)), arch


# ---------------------------------------------------------------------------------------------

def test_visualise_layers_on_a_converted_resnet18(resnet18, tmp_path):
    """experiments.visualise --mode=layers on the converted random-weight ResNet-18 (64 px) saved as a
    network directory, inverting layer2 (its first block has the downsample branch)."""
    _, model = resnet18
    directory = tmp_path / "resnet18"
    nets.save(str(directory), model)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.visualise", "--mode=layers", f"--net={directory}", "--layers=layer2",
         "--num_images=1", "--iterations=3", "--refine_iterations=0", "--nocompilation_cache", f"--output_dir={out}"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["parameters"]["arch"] == "torchvision-resnet18"
    # At 64 px layer2's field (99 px) exceeds 0.6 of the input: C = 20; T = stride / 4 = 2.
    assert results["C"] == {"layer2": 20.0} and results["jitter"] == {"layer2": 2}
    assert (out / "layers.png").stat().st_size > 0
