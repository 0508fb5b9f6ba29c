"""Deep networks as representations: the per-layer C and jitter rules and the input convention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import nets
from jaxinv.io import images, report
from jaxinv.methods import layer_rules, windows
from jaxinv.nets import taps
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
        assert layer_rules.layer_C(model, layer) == paper_C(arch, layer), layer


def test_jitter_rule_from_derived_stride():
    model = geometry_only("caffe-ref")
    expected = {"conv1": 1, "pool1": 2, "conv2": 2, "pool2": 4, "conv5": 4, "pool5": 8, "fc8": 8}
    assert {name: layer_rules.layer_jitter(model, name) for name in expected} == expected
    assert layer_rules.inversion_problem(model, "conv4").jitter == 4 and layer_rules.inversion_problem(model, "conv4").C == 100
    assert layer_rules.inversion_problem(model, "conv4", C=7, jitter=False) == layer_rules.inversion_problem(model, "conv4", C=7,
                                                                                                jitter=False)
    assert layer_rules.inversion_problem(model, "conv4", jitter=False).jitter == 1


def test_reference_network_rule_is_documented():
    model = geometry_only("cifar-ref")
    values = {name: layer_rules.layer_C(model, name) for name in model.layer_names}
    assert values["relu2"] == 300 and values["norm2"] == 100 and values["relu3"] == 20 and values["pool3"] == 1
    assert layer_rules.trunk_end(model.table) == "relu3"


def test_unknown_layer_is_named():
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*conv1"):
        layer_rules.layer_C(geometry_only("caffe-ref"), "conv9")


@pytest.fixture(scope="module")
def cifar_ref():
    return nets.load("cifar-ref")


def test_representation_applies_the_network_convention(cifar_ref):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    rep = taps.representation(cifar_ref, "conv2")
    expected = cifar_ref.apply(cifar_ref.params, cifar_ref.preprocess(image[None]), upto="conv2")["conv2"][0]
    np.testing.assert_allclose(rep(rep.to_null_mean(image)), expected, rtol=1e-5, atol=1e-4)
    again = taps.representation(cifar_ref, "conv2")  # equal structure: compiled steps are reused
    assert rep == again and hash(rep) == hash(again)
    assert rep.stride == 2 and rep.channels == 3 and rep.input_size == (32, 32)
    gradient = jax.grad(lambda x: jnp.sum(rep(x) ** 2))(rep.to_null_mean(image))
    assert gradient.shape == (32, 32, 3) and float(jnp.abs(gradient).max()) > 0


def test_bgr_convention_mean_is_reported_in_rgb():
    model = geometry_only("caffe-ref")
    assert taps.rgb_mean(model) == pytest.approx((123.68, 116.779, 103.939))


def test_labelled_grid_and_html_report(tmp_path):
    grid = images.labelled_grid([[np.zeros((8, 8, 3)), np.zeros((8, 8))]], column_labels=["a", "b"],
                                row_labels=["row"], scale=2)
    assert grid.shape[0] > 16 and grid.shape[1] > 2 * 16 and grid.ndim == 3
    figure = images.save_image(str(tmp_path / "f.png"), grid)
    page = report.write_html(str(tmp_path / "index.html"), "title", {"C": 20}, [("figures", [figure])])
    text = open(page).read()
    assert "<img src='f.png'>" in text and "<th>C</th><td>20</td>" in text


def random_network(arch, input_size, upto, seed=0):
    """He-initialised weights for the layers up to `upto` (enough to run the table that far)."""
    table = tables.build(arch)
    names = [layer.name for layer in table]
    params = tables.init_params(table[:names.index(upto) + 1], jax.random.key(seed), input_size)
    return Model(arch, table, params, input_size, dict(CAFFE_CONVENTION))


def gradient_support(model, layer, window, input_size, num_inputs=3):
    """Bounding box (top, left, bottom, right) of the input pixels whose gradient of the window's
    cells is non-zero for some of `num_inputs` random inputs: a brute-force receptive field."""
    top, left, bottom, right = window

    def cells(x):
        out = model.apply(model.params, x[None], upto=layer)[layer][0]
        return jnp.sum(jnp.abs(out[top:bottom, left:right]))

    grad = jax.jit(jax.grad(cells))
    support = sum(np.abs(np.asarray(grad(jax.random.normal(jax.random.key(k), (input_size, input_size, 3)) * 50)))
                  .sum(-1) for k in range(num_inputs))
    rows, cols = np.nonzero(support)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


SLOW = pytest.mark.slow


@pytest.mark.parametrize("arch,input_size,layer,window", [
    ("cifar-ref", 32, "conv1", None), ("cifar-ref", 32, "pool2", None), ("cifar-ref", 40, "norm1", (19, 3, 20, 4)),
    ("caffe-ref", 99, "pool1", None), ("caffe-ref", 131, "conv2", (14, 0, 15, 3)),
    pytest.param("cifar-ref", 32, "pool1", None, marks=SLOW), pytest.param("cifar-ref", 40, "conv2", (0, 0, 2, 2), marks=SLOW),
    pytest.param("cifar-ref", 48, "relu3", (11, 11, 12, 12), marks=SLOW),
    pytest.param("caffe-ref", 99, "conv1", None, marks=SLOW), pytest.param("caffe-ref", 131, "pool2", (6, 6, 7, 7), marks=SLOW)])
def test_receptive_field_box_equals_the_gradient_support(arch, input_size, layer, window):
    model = random_network(arch, input_size, layer)
    if window is None:
        window = windows.central_window(taps.layer_output_shape(model, layer), 5)
    box = windows.receptive_field_box(model, layer, window)
    assert box == gradient_support(model, layer, window, input_size)


def test_receptive_field_box_of_one_interior_cell_is_the_tables_receptive_field():
    model = geometry_only("caffe-ref")
    for layer in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv5"):
        top, left, bottom, right = windows.receptive_field_box(model, layer, (4, 4, 5, 5))
        assert bottom - top == right - left == model.receptive_fields[layer][0], layer
    assert windows.receptive_field_box(model, "fc6") == (0, 0, 227, 227)
    with pytest.raises(ValueError, match="outside layer 'pool5'"):
        windows.receptive_field_box(model, "pool5", (0, 0, 7, 7))
    with pytest.raises(ValueError, match="no spatial map"):
        windows.receptive_field_box(model, "fc7", (0, 0, 1, 1))


def test_window_and_channel_masks():
    model = geometry_only("caffe-ref")
    mask = windows.window_mask(model, "conv3", size=5)
    assert mask.shape == (13, 13, 384) and mask.sum() == 25 * 384
    assert np.all(mask[4:9, 4:9] == 1) and mask[3].sum() == 0 and mask[:, 9].sum() == 0
    assert windows.window_mask(model, "pool5", size=5)[..., 0].sum() == 25  # 6x6: rows/cols 0..4
    assert windows.central_window((2, 2, 1), 5) == (0, 0, 2, 2)
    channels = windows.channel_mask(model, "norm2", [0, 5])
    assert channels.shape == (13, 13, 256) and channels.sum() == 2 * 169 and channels[..., 5].all()
    assert windows.channel_mask(model, "fc7", [3]).shape == (4096,)
    with pytest.raises(ValueError, match="channel index 256 out of range for layer 'norm2'"):
        windows.channel_mask(model, "norm2", [256])
    with pytest.raises(ValueError, match="spatial map; layer 'fc6'"):
        windows.window_mask(model, "fc6")


def test_channel_groups_follow_the_grouped_convolutions():
    model = geometry_only("caffe-ref")
    halves = lambda n: [list(range(n // 2)), list(range(n // 2, n))]
    # conv1's 96 channels feed conv2's two groups; conv2 (groups=2) produces 2 x 128.
    for layer, channels in [("conv1", 96), ("relu1", 96), ("pool1", 96), ("norm1", 96), ("conv2", 256),
                            ("relu2", 256), ("pool2", 256), ("norm2", 256), ("conv3", 384), ("conv4", 384)]:
        assert [list(g) for g in windows.channel_groups(model, layer)] == halves(channels), layer
    assert [len(g) for g in windows.channel_groups(geometry_only("vgg-m"), "conv1")] == [96]
    assert [len(g) for g in windows.channel_groups(geometry_only("cifar-ref"), "norm2")] == [128]


def test_representation_on_other_input_sizes(cifar_ref):
    rep = taps.representation(cifar_ref, "relu2", input_size=20)
    assert rep.input_size == (20, 20) and rep == taps.representation(cifar_ref, "relu2", input_size=20)
    assert rep(jnp.zeros((20, 20, 3))).shape == taps.layer_output_shape(cifar_ref, "relu2", 20) == (10, 10, 128)
    with pytest.raises(ValueError, match="layer 'fc6' of network 'cifar-ref' needs 32x32 inputs"):
        taps.representation(cifar_ref, "fc6", input_size=40)
    with pytest.raises(ValueError, match="input size 2 is too small for layer 'pool3'"):
        taps.representation(cifar_ref, "pool3", input_size=2)
    assert taps.spatial_trunk(cifar_ref)[-1] == "pool3"
