"""Equivalence of converted networks with PyTorch, layer by layer, through all three readers.

Each architecture is written independently in PyTorch below (nn.Sequential with Conv2d(groups=2),
LocalResponseNorm, MaxPool2d(ceil_mode=True); torchvision's features/avgpool/classifier layout),
given random weights and saved as a state_dict; the same weights are also written as a MatConvNet
simplenn .mat (v5 with scipy, v7.3 with h5py) and as a .caffemodel + deploy.prototxt (with the
small protobuf writer below). Every reader's network must reproduce every named layer of the
PyTorch network on natural images to 1e-4 of the layer's largest activation, and the input
gradient of a layer objective to 1e-4 of its largest entry.

Sizes: the test inputs are smaller than the nets' standard ones (fc6 is shaped for the input
through --input_size), so that fc6 stays small; fc7 (4096x4096) keeps every full-width net at
20-60M parameters. torchvision-vgg16 always has 138M (its adaptive pool fixes fc6 at 7x7x512),
so its equivalence runs only in the slow suite. By default (each case compiles a whole network,
~10 s on the shared 2-core CPU) the other five run through the PyTorch reader, caffe-ref through
MatConvNet v5 and v7.3, and caffe-ref (LayerParameter) and vgg-m (V1LayerParameter, legacy blob
shapes) through the Caffe reader; `pytest -m slow` runs the remaining combinations: every Caffe-style
architecture through every reader, and torchvision-vgg16 through PyTorch (simplenn and Caffe have
no adaptive pooling, so torchvision layouts come from PyTorch only).
"""
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from jaxinv import nets  # noqa: E402
from jaxinv.io import images
from jaxinv.conversion import convert  # noqa: E402

TOLERANCE = 1e-4
TEST_INPUT_SIZES = {"caffe-ref": 99, "caffe-alex": 99, "vgg-m": 99, "vgg-vd-16": 32,
                    "torchvision-alexnet": 99, "torchvision-vgg16": 32}


def _conv(cin, cout, k, stride=1, pad=0, groups=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, groups=groups)


def _caffe_pool():
    return nn.MaxPool2d(3, 2, ceil_mode=True)


def _lrn():
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


def _head(fc6_inputs):
    """fc6..prob with the Flatten and Dropout modules a PyTorch model has (unnamed: None)."""
    return [(None, nn.Flatten()), ("fc6", nn.Linear(fc6_inputs, 4096)), ("relu6", nn.ReLU()), (None, nn.Dropout()),
            ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()), (None, nn.Dropout()),
            ("fc8", nn.Linear(4096, 1000)), ("prob", nn.Softmax(dim=1))]


def _caffenet(norm_before_pool, pool5_size):
    def stage(i, conv):
        norm, pool = (f"norm{i}", _lrn()), (f"pool{i}", _caffe_pool())
        return [(f"conv{i}", conv), (f"relu{i}", nn.ReLU())] + ([norm, pool] if norm_before_pool else [pool, norm])
    return (stage(1, _conv(3, 96, 11, 4)) + stage(2, _conv(96, 256, 5, pad=2, groups=2))
            + [("conv3", _conv(256, 384, 3, pad=1)), ("relu3", nn.ReLU()),
               ("conv4", _conv(384, 384, 3, pad=1, groups=2)), ("relu4", nn.ReLU()),
               ("conv5", _conv(384, 256, 3, pad=1, groups=2)), ("relu5", nn.ReLU()), ("pool5", _caffe_pool())]
            + _head(256 * pool5_size ** 2))


def _vgg_m(pool5_size):
    return ([("conv1", _conv(3, 96, 7, 2)), ("relu1", nn.ReLU()), ("norm1", _lrn()), ("pool1", _caffe_pool()),
             ("conv2", _conv(96, 256, 5, 2, 1)), ("relu2", nn.ReLU()), ("norm2", _lrn()), ("pool2", _caffe_pool()),
             ("conv3", _conv(256, 512, 3, pad=1)), ("relu3", nn.ReLU()),
             ("conv4", _conv(512, 512, 3, pad=1)), ("relu4", nn.ReLU()),
             ("conv5", _conv(512, 512, 3, pad=1)), ("relu5", nn.ReLU()), ("pool5", _caffe_pool())]
            + _head(512 * pool5_size ** 2))


def _vgg16_features(ceil_mode):
    layers, cin = [], 3
    for stage, (width, depth) in enumerate(zip([64, 128, 256, 512, 512], [2, 2, 3, 3, 3]), start=1):
        for i in range(1, depth + 1):
            layers += [(f"conv{stage}_{i}", _conv(cin, width, 3, pad=1)), (f"relu{stage}_{i}", nn.ReLU())]
            cin = width
        layers.append((f"pool{stage}", nn.MaxPool2d(2, 2, ceil_mode=ceil_mode)))
    return layers


def _torchvision_alexnet_features():
    return [("conv1", _conv(3, 64, 11, 4, 2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(3, 2)),
            ("conv2", _conv(64, 192, 5, pad=2)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(3, 2)),
            ("conv3", _conv(192, 384, 3, pad=1)), ("relu3", nn.ReLU()),
            ("conv4", _conv(384, 256, 3, pad=1)), ("relu4", nn.ReLU()),
            ("conv5", _conv(256, 256, 3, pad=1)), ("relu5", nn.ReLU()), ("pool5", nn.MaxPool2d(3, 2))]


def torch_network(arch, input_size):
    """(module whose state_dict is saved, [(layer name or None, module)] in execution order)."""
    pool5_size = nets.output_shapes(nets.build(arch), input_size)["pool5"][0]
    if arch in ("caffe-ref", "caffe-alex"):
        layers = _caffenet(arch == "caffe-alex", pool5_size)
    elif arch == "vgg-m":
        layers = _vgg_m(pool5_size)
    elif arch == "vgg-vd-16":
        layers = _vgg16_features(ceil_mode=True) + _head(512 * pool5_size ** 2)
    else:
        features = (_torchvision_alexnet_features() if arch == "torchvision-alexnet"
                    else _vgg16_features(ceil_mode=False))
        pool_size = 6 if arch == "torchvision-alexnet" else 7
        pool = ("avgpool", nn.AdaptiveAvgPool2d(pool_size))
        head = _head((256 if arch == "torchvision-alexnet" else 512) * pool_size ** 2)
        layers = features + [pool] + head
        container = nn.Module()
        container.features = nn.Sequential(*[m for _, m in features])
        container.avgpool = pool[1]
        if arch == "torchvision-alexnet":  # torchvision's classifiers: dropout before (AlexNet) or after (VGG) fc6, fc7
            container.classifier = nn.Sequential(nn.Dropout(), head[1][1], head[2][1], nn.Dropout(),
                                                 head[4][1], head[5][1], head[7][1])
        else:
            container.classifier = nn.Sequential(head[1][1], head[2][1], nn.Dropout(), head[4][1], head[5][1],
                                                 nn.Dropout(), head[7][1])
        return container, layers
    if arch in ("caffe-alex", "vgg-vd-16"):  # modules named after the layers
        container = nn.Sequential(OrderedDict((name or f"unnamed{i}", m) for i, (name, m) in enumerate(layers)))
    else:  # plain numbered nn.Sequential
        container = nn.Sequential(*[m for _, m in layers])
    return container, layers


def torch_outputs(layers, x_nhwc, objective_layer=None, objective_weights=None):
    """{layer: output as NHWC / (N, units) numpy}, and the input gradient of
    sum(objective_weights * output of objective_layer) if asked."""
    x = torch.tensor(np.transpose(x_nhwc, (0, 3, 1, 2)), requires_grad=True)
    outputs, y = {}, x
    for name, module in layers:
        module.eval()
        y = module(y)
        if name is not None:
            outputs[name] = y
    gradient = None
    if objective_layer is not None:
        target = outputs[objective_layer]
        weights = torch.tensor(objective_weights if target.ndim == 2 else np.transpose(objective_weights, (0, 3, 1, 2)))
        (target * weights).sum().backward()
        gradient = np.transpose(x.grad.numpy(), (0, 2, 3, 1))
    to_numpy = lambda t: t.detach().numpy() if t.ndim == 2 else np.transpose(t.detach().numpy(), (0, 2, 3, 1))
    return {name: to_numpy(t) for name, t in outputs.items()}, gradient


def randomise(module, seed=0):
    """Random weights and biases of every parameter (biases nonzero, so that their layout is tested)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            fan_in = max(int(np.prod(parameter.shape[1:])), 1) if parameter.ndim > 1 else 100
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * (2.0 / fan_in) ** 0.5)


def natural_batch(input_size, num_images=2):
    try:
        paths = images.imagenet_sample_paths(num_images=num_images)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return np.stack([images.load_image(path, size=input_size) for path in paths])


def max_relative_differences(model, layers, x, objective_layer):
    """{layer: max |ours - torch| / max |torch|} over every named layer, plus "input gradient".

    Layers are compared in float32, as jaxinv runs. The input gradient is compared in float64 on both sides
    (the same weights, cast): in float32 a max-pool window whose two largest inputs differ by a rounding
    can pick another winner in each framework, which moves one unit's gradient to another receptive field
    (caffe-ref at 99 px with XLA's Eigen convolutions: 2.6e-2 over one 13x13 patch, 1.8e-6 elsewhere) and
    says nothing of the backward pass."""
    import copy
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    objective_shape = (len(x),) + nets.output_shapes(model.table, x.shape[1])[objective_layer]
    objective_weights = rng.normal(size=objective_shape).astype(np.float32)
    reference, _ = torch_outputs(layers, x)
    double_layers = [(name, copy.deepcopy(module).double()) for name, module in layers]
    _, reference_gradient = torch_outputs(double_layers, x.astype(np.float64), objective_layer,
                                          objective_weights.astype(np.float64))

    def outputs_and_gradient(params, x, weights):
        outputs, pullback = jax.vjp(lambda x: model.apply(params, x), x)
        cotangent = {name: jnp.zeros_like(y) for name, y in outputs.items()}
        cotangent[objective_layer] = weights
        return outputs, pullback(cotangent)[0]

    # one compilation of the whole network each: op-by-op dispatch compiles every op
    ours, _ = jax.jit(outputs_and_gradient)(model.params, jnp.asarray(x), jnp.asarray(objective_weights))
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), model.params)
        _, gradient = jax.jit(outputs_and_gradient)(params64, jnp.asarray(x, jnp.float64),
                                                    jnp.asarray(objective_weights, jnp.float64))
        gradient = np.asarray(gradient)
    assert set(ours) == set(reference), "layer names differ from the PyTorch network's"
    differences = {name: float(np.abs(np.asarray(ours[name]) - reference[name]).max() / np.abs(reference[name]).max())
                   for name in reference}
    differences["input gradient"] = float(np.abs(gradient - reference_gradient).max()
                                          / np.abs(reference_gradient).max())
    return differences


def _slow_unless(condition):
    return () if condition else (pytest.mark.slow,)


TORCH_CASES = [pytest.param(arch, marks=_slow_unless(arch != "torchvision-vgg16")) for arch in TEST_INPUT_SIZES]


@pytest.mark.parametrize("arch", TORCH_CASES)
def test_torch_reader_reproduces_pytorch(arch, tmp_path):
    size = TEST_INPUT_SIZES[arch]
    container, layers = torch_network(arch, size)
    randomise(container)
    path = str(tmp_path / "weights.pth")
    torch.save(container.state_dict(), path)
    model = convert.convert("torch", arch, path, input_size=size)
    x = model.preprocess(natural_batch(size))
    differences = max_relative_differences(model, layers, x, objective_layer="pool5")
    print(arch, "torch", max(differences.values()))
    assert max(differences.values()) <= TOLERANCE, differences


CLASS_NAMES = [f"class {i}" for i in range(1000)]


def pool5_spatial_size(layers, input_size):
    outputs, _ = torch_outputs(layers, np.zeros((1, input_size, input_size, 3), np.float32))
    return outputs["pool5"].shape[1]


def simplenn_layers(layers, pool5_size):
    """The PyTorch network as MatConvNet simplenn layers (dicts), weights in MatConvNet's layout:
    fc layers are convolutions, fc6's kernel covering pool5's whole output."""
    out = []
    for name, module in layers:
        if name is None:
            continue
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight, bias = module.weight.detach().numpy(), module.bias.detach().numpy()
            if isinstance(module, nn.Linear):
                spatial = pool5_size if name == "fc6" else 1
                weight = weight.reshape(weight.shape[0], -1, spatial, spatial)
            layer = dict(type="conv", weights=[np.transpose(weight, (2, 3, 1, 0)), bias],
                         stride=float(module.stride[0]) if isinstance(module, nn.Conv2d) else 1.0,
                         pad=float(module.padding[0]) if isinstance(module, nn.Conv2d) else 0.0)
        elif isinstance(module, nn.LocalResponseNorm):
            layer = dict(type="normalize", param=np.array([module.size, module.k, module.alpha / module.size, module.beta]))
        elif isinstance(module, nn.MaxPool2d):
            layer = dict(type="pool", method="max", pool=np.array([module.kernel_size] * 2, float),
                         stride=float(module.stride), pad=0.0)
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            pytest.skip("simplenn has no adaptive pooling: torchvision layouts convert from PyTorch only")
        else:
            layer = dict(type={nn.ReLU: "relu", nn.Softmax: "softmax"}[type(module)])
        layer["name"] = name
        out.append(layer)
    return out


def write_matconvnet_v5(path, layers, mean_rgb, spatial):
    import scipy.io
    cells = np.empty(len(layers), dtype=object)
    for i, layer in enumerate(layers):
        layer = dict(layer)
        if "weights" in layer:
            weights = np.empty(2, dtype=object)
            weights[0], weights[1] = layer["weights"]
            layer["weights"] = weights
        cells[i] = layer
    descriptions = np.empty(len(CLASS_NAMES), dtype=object)
    descriptions[:] = CLASS_NAMES
    scipy.io.savemat(path, {"layers": cells, "meta": {
        "normalization": {"averageImage": np.asarray(mean_rgb, np.float32).reshape(1, 1, 3),
                          "imageSize": np.array([spatial, spatial, 3.0])},
        "classes": {"description": descriptions}}})


def write_matconvnet_v73(path, layers, mean_rgb, spatial):
    """MATLAB's v7.3 layout: HDF5 after a 512-byte text header; cells are datasets of object
    references into #refs#, structs are groups, arrays are stored with their axes reversed."""
    import h5py
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def put(value):
            name = str(len(refs))
            refs[name] = value
            return refs[name].ref

        def chars(text):
            return np.array([[ord(c)] for c in text], np.uint16)

        def cell(values):
            return np.array([[v] for v in values], dtype=h5py.ref_dtype)

        layer_refs = []
        for layer in layers:
            group = refs.create_group(str(len(refs)))
            group["name"], group["type"] = chars(layer["name"]), chars(layer["type"])
            if "weights" in layer:
                group["weights"] = cell([put(np.transpose(w)) for w in layer["weights"]])
            for key in ("stride", "param"):
                if key in layer:
                    group[key] = np.transpose(np.atleast_2d(np.asarray(layer[key], float)))
            layer_refs.append(group.ref)
        f["layers"] = cell(layer_refs)
        f["meta/normalization/averageImage"] = np.transpose(np.asarray(mean_rgb, np.float32).reshape(1, 1, 3))
        f["meta/normalization/imageSize"] = np.array([[spatial], [spatial], [3.0]])
        f["meta/classes/description"] = cell([put(chars(name)) for name in CLASS_NAMES])
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, written by jaxinv's tests. HDF5 schema 1.00 .".ljust(116))


def file_format_cases(default_archs):
    return [pytest.param(arch, marks=_slow_unless(arch in default_archs))
            for arch in TEST_INPUT_SIZES if not arch.startswith("torchvision")]


@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("arch", file_format_cases(default_archs=("caffe-ref",)))
def test_matconvnet_reader_reproduces_pytorch(arch, version, tmp_path):
    size = TEST_INPUT_SIZES[arch]
    container, layers = torch_network(arch, size)
    randomise(container)
    path = str(tmp_path / "net.mat")
    mean_rgb = [123.68, 116.779, 103.939]
    (write_matconvnet_v5 if version == "v5" else write_matconvnet_v73)(
        path, simplenn_layers(layers, pool5_spatial_size(layers, size)), mean_rgb, size)
    model = convert.convert("matconvnet", arch, path, input_size=size)
    assert model.class_names == CLASS_NAMES and model.convention["channel_order"] == "RGB"
    np.testing.assert_allclose(model.convention["mean"], mean_rgb, rtol=1e-6)
    x = model.preprocess(natural_batch(size))
    differences = max_relative_differences(model, layers, x, objective_layer="fc8")
    print(arch, "matconvnet", version, max(differences.values()))
    assert max(differences.values()) <= TOLERANCE, differences


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """A protobuf field: varint for ints, length-delimited for bytes/str."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    payload = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def caffe_blob(array, legacy_shape=False):
    array = np.asarray(array, np.float32)
    if legacy_shape:  # num/channels/height/width = 1..4, as pre-2015 files
        dims = [1] * (4 - array.ndim) + list(array.shape)
        shape = b"".join(_field(i + 1, d) for i, d in enumerate(dims))
    else:
        shape = _field(7, _field(1, b"".join(_varint(d) for d in array.shape)))
    return shape + _field(5, array.astype("<f4").tobytes())


def write_caffe(path, layers, v1=False):
    """.caffemodel of the PyTorch network's weights: NetParameter.layer (LayerParameter name=1,
    type=2, blobs=7) or, with v1, the deprecated NetParameter.layers (V1LayerParameter name=4,
    type=5 enum, blobs=6) with legacy 4-D blob shapes. Returns the deploy.prototxt text."""
    v1_types = {"Convolution": 4, "InnerProduct": 14, "LRN": 15, "Pooling": 17, "ReLU": 18, "Softmax": 20}
    message, prototxt, previous = b"", ['name: "test"', 'input: "data"'], "data"
    for name, module in layers:
        if isinstance(module, nn.Dropout) or isinstance(module, nn.Flatten):
            continue
        if isinstance(module, nn.Conv2d):
            kind = "Convolution"
            params = (f"convolution_param {{ num_output: {module.out_channels} kernel_size: {module.kernel_size[0]} "
                      f"stride: {module.stride[0]} pad: {module.padding[0]} group: {module.groups} }}")
        elif isinstance(module, nn.Linear):
            kind, params = "InnerProduct", f"inner_product_param {{ num_output: {module.out_features} }}"
        elif isinstance(module, nn.LocalResponseNorm):
            kind = "LRN"
            params = f"lrn_param {{ local_size: {module.size} alpha: {module.alpha} beta: {module.beta} k: {module.k} }}"
        elif isinstance(module, nn.MaxPool2d):
            kind = "Pooling"
            params = f"pooling_param {{ pool: MAX kernel_size: {module.kernel_size} stride: {module.stride} }}"
        else:
            kind, params = {nn.ReLU: "ReLU", nn.Softmax: "Softmax"}[type(module)], ""
        blobs = b""
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            blobs = b"".join(_field(6 if v1 else 7, caffe_blob(p.detach().numpy(), legacy_shape=v1))
                             for p in (module.weight, module.bias))
        if v1:
            message += _field(2, _field(4, name) + _field(5, v1_types[kind]) + blobs)
        else:
            message += _field(100, _field(1, name) + _field(2, kind) + blobs)
        prototxt.append(f'layer {{ name: "{name}" type: "{kind}" bottom: "{previous}" top: "{name}" {params} }}')
        previous = name
    with open(path, "wb") as f:
        f.write(_field(1, "test") + message)
    return "\n".join(prototxt) + "\n"


@pytest.mark.parametrize("arch", file_format_cases(default_archs=("caffe-ref", "vgg-m")))
def test_caffe_reader_reproduces_pytorch(arch, tmp_path):
    size = TEST_INPUT_SIZES[arch]
    container, layers = torch_network(arch, size)
    randomise(container)
    model_path, prototxt_path = str(tmp_path / "net.caffemodel"), tmp_path / "deploy.prototxt"
    prototxt_path.write_text(write_caffe(model_path, layers, v1=(arch == "vgg-m")))
    model = convert.convert("caffe", arch, model_path, prototxt=str(prototxt_path), input_size=size)
    assert model.convention["channel_order"] == "BGR"
    x = model.preprocess(natural_batch(size))
    differences = max_relative_differences(model, layers, x, objective_layer="conv5_3" if "16" in arch else "conv5")
    print(arch, "caffe", max(differences.values()))
    assert max(differences.values()) <= TOLERANCE, differences
