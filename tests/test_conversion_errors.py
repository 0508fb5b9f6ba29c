"""The converter's command line, its round trip through orbax, and its error messages (on the
small cifar-ref architecture, so that these stay fast)."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from jaxinv import nets  # noqa: E402
from jaxinv.conversion import caffe_reader, convert  # noqa: E402


def cifar_ref_torch():
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
    lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
    return nn.Sequential(nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), pool(), lrn(),
                         nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), pool(), lrn(),
                         nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), pool(), nn.Flatten(),
                         nn.Linear(2048, 384), nn.ReLU(), nn.Linear(384, 192), nn.ReLU(), nn.Linear(192, 10),
                         nn.Softmax(dim=1))


@pytest.fixture
def state_dict_path(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "cifar.pth")
    torch.save(cifar_ref_torch().state_dict(), path)
    return path


def test_command_line_writes_a_loadable_network(state_dict_path, tmp_path):
    output = str(tmp_path / "converted")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "weights_conversion.convert", "--format=torch", "--arch=cifar-ref",
                    f"--input={state_dict_path}", f"--output={output}"], check=True, cwd=root,
                   env=dict(os.environ, PYTHONPATH=root), capture_output=True)
    loaded = nets.load(output)
    direct = convert.convert("torch", "cifar-ref", state_dict_path)
    assert loaded.arch == "cifar-ref" and loaded.input_size == 32 and loaded.convention == direct.convention
    for name in direct.params:
        for key in ("w", "b"):
            np.testing.assert_array_equal(np.asarray(loaded.params[name][key]), direct.params[name][key])
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.deprocess(loaded.preprocess(x)), x, rtol=1e-5, atol=1e-3)


def test_unknown_architecture_and_format(state_dict_path):
    with pytest.raises(ValueError, match="valid: .*caffe-ref"):
        convert.convert("torch", "resnet-50", state_dict_path)
    with pytest.raises(ValueError, match="unknown format"):
        convert.convert("onnx", "cifar-ref", state_dict_path)


def test_missing_files_are_named(tmp_path):
    for source_format in ("torch", "matconvnet", "caffe"):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            convert.convert(source_format, "cifar-ref", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no weights ship"):
        nets.load("caffe-ref")


def test_missing_extra_and_misshapen_tensors(tmp_path):
    state = cifar_ref_torch().state_dict()
    missing = {k: v for k, v in state.items() if not k.startswith("16.")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="5 parametric modules.*6"):
        convert.convert("torch", "cifar-ref", str(tmp_path / "missing.pth"))
    layer_of_module = {"0": "conv1", "4": "conv2", "8": "conv3", "12": "fc6", "14": "fc7", "16": "fc8"}
    renamed = {f"{layer_of_module[module]}.{leaf}": v for module, leaf, v in
               ((*key.split("."), value) for key, value in state.items())}
    torch.save({k: v for k, v in renamed.items() if not k.startswith("fc8")}, tmp_path / "named.pth")
    with pytest.raises(ValueError, match=r"missing layers \['fc8'\]"):
        convert.convert("torch", "cifar-ref", str(tmp_path / "named.pth"))
    renamed["conv2.weight"] = torch.zeros(96, 64, 3, 3)
    torch.save(renamed, tmp_path / "misshapen.pth")
    with pytest.raises(ValueError, match=r"layer conv2 weights.*expected \(3, 3, 64, 128\), found \(3, 3, 64, 96\)"):
        convert.convert("torch", "cifar-ref", str(tmp_path / "misshapen.pth"))


def test_corrupt_and_truncated_files(state_dict_path, tmp_path):
    with open(state_dict_path, "rb") as f:
        data = f.read()
    (tmp_path / "truncated.pth").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="cannot read PyTorch file"):
        convert.convert("torch", "cifar-ref", str(tmp_path / "truncated.pth"))
    (tmp_path / "garbage.mat").write_bytes(b"not a mat file" * 20)
    with pytest.raises(ValueError, match="garbage.mat"):
        convert.convert("matconvnet", "cifar-ref", str(tmp_path / "garbage.mat"))
    layer = b"\x0a\x05conv1" + b"\x3a\x10" + b"\x2a\x08" + b"\x00" * 6  # blob claims more bytes than exist
    (tmp_path / "truncated.caffemodel").write_bytes(b"\xa2\x06" + bytes([len(layer)]) + layer)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        caffe_reader.read_caffemodel(str(tmp_path / "truncated.caffemodel"))


def test_prototxt_disagreeing_with_architecture():
    layers = [dict(name="conv1", type="Convolution",
                   convolution_param=[dict(num_output=[64.0], kernel_size=[3.0], pad=[1.0])])]
    with pytest.raises(ValueError, match="conv1 disagrees.*kernel: expected 5, found 3"):
        caffe_reader.check_prototxt(nets.build("cifar-ref"), layers)
