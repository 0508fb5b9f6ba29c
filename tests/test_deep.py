"""Deep networks as representations: the per-layer C and jitter rules and the input convention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import deep, images, nets, report
from jaxinv.nets import tables
from jaxinv.nets.model import CAFFE_CONVENTION, Model


def geometry_only(arch):
    return Model(arch, tables.build(arch), None, tables.INPUT_SIZES[arch], dict(CAFFE_CONVENTION))


def paper_C(arch, layer):
    """IJCV Sect. 5.2's C, written per name for the three ImageNet networks."""
    names = tables.build(arch)
    order = [layer_.name for layer_ in names]
    if "vgg16" in arch or arch == "vgg-vd-16":
        bands = [("relu4_3", 300), ("pool4", 300), ("relu5_1", 100), ("relu5_3", 20)]
    else:
        bands = [("relu3", 300), ("relu4", 100), ("relu5", 20)]
    for last, value in bands:
        if order.index(layer) <= order.index(last):
            return value
    return 1


@pytest.mark.parametrize("arch", ["caffe-ref", "caffe-alex", "vgg-m", "vgg-vd-16", "torchvision-alexnet",
                                  "torchvision-vgg16"])
def test_C_rule_reproduces_the_papers_values(arch):
    model = geometry_only(arch)
    for layer in model.layer_names:
        assert deep.layer_C(model, layer) == paper_C(arch, layer), layer


def test_jitter_rule_from_derived_stride():
    model = geometry_only("caffe-ref")
    expected = {"conv1": 1, "pool1": 2, "conv2": 2, "pool2": 4, "conv5": 4, "pool5": 8, "fc8": 8}
    assert {name: deep.layer_jitter(model, name) for name in expected} == expected
    assert deep.inversion_problem(model, "conv4").jitter == 4 and deep.inversion_problem(model, "conv4").C == 100
    assert deep.inversion_problem(model, "conv4", C=7, jitter=False) == deep.inversion_problem(model, "conv4", C=7,
                                                                                                jitter=False)
    assert deep.inversion_problem(model, "conv4", jitter=False).jitter == 1


def test_reference_network_rule_is_documented():
    model = geometry_only("cifar-ref")
    values = {name: deep.layer_C(model, name) for name in model.layer_names}
    assert values["relu2"] == 300 and values["norm2"] == 100 and values["relu3"] == 20 and values["pool3"] == 1
    assert deep.trunk_end(model.table) == "relu3"


def test_unknown_layer_is_named():
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*conv1"):
        deep.layer_C(geometry_only("caffe-ref"), "conv9")


@pytest.fixture(scope="module")
def cifar_ref():
    return nets.load("cifar-ref")


def test_representation_applies_the_network_convention(cifar_ref):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    rep = deep.representation(cifar_ref, "conv2")
    expected = cifar_ref.apply(cifar_ref.params, cifar_ref.preprocess(image[None]), upto="conv2")["conv2"][0]
    np.testing.assert_allclose(rep(rep.to_null_mean(image)), expected, rtol=1e-5, atol=1e-4)
    assert rep is deep.representation(cifar_ref, "conv2")  # cached: compiled steps are reused
    assert rep.stride == 2 and rep.channels == 3 and rep.input_size == (32, 32)
    gradient = jax.grad(lambda x: jnp.sum(rep(x) ** 2))(rep.to_null_mean(image))
    assert gradient.shape == (32, 32, 3) and float(jnp.abs(gradient).max()) > 0


def test_bgr_convention_mean_is_reported_in_rgb():
    model = geometry_only("caffe-ref")
    assert deep.rgb_mean(model) == pytest.approx((123.68, 116.779, 103.939))


def test_labelled_grid_and_html_report(tmp_path):
    grid = images.labelled_grid([[np.zeros((8, 8, 3)), np.zeros((8, 8))]], column_labels=["a", "b"],
                                row_labels=["row"], scale=2)
    assert grid.shape[0] > 16 and grid.shape[1] > 2 * 16 and grid.ndim == 3
    figure = images.save_image(str(tmp_path / "f.png"), grid)
    page = report.write_html(str(tmp_path / "index.html"), "title", {"C": 20}, [("figures", [figure])])
    text = open(page).read()
    assert "<img src='f.png'>" in text and "<th>C</th><td>20</td>" in text
