"""Where the caches live and how cached results are keyed (jaxinv.io.cache)."""
import os

import numpy as np
import pytest

from jaxinv import inverters
from jaxinv.inverters import hoggle
from jaxinv.io import cache, checkpoints
from jaxinv.methods import activation_max
from jaxinv.nets import cifar10


def every_cache() -> list[str]:
    return [cifar10.cache_path(), activation_max.cache_dir(), inverters.default_dir("hog", 64),
            hoggle.default_dictionary_path()]


def test_xdg_cache_home_moves_every_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == str(tmp_path / "xdg" / "jaxinv")
    for path in every_cache():
        assert path.startswith(str(tmp_path / "xdg" / "jaxinv") + os.sep), path
    assert len(set(every_cache())) == 4


@pytest.mark.parametrize("value", [None, "", "relative/cache"])
def test_without_an_absolute_xdg_cache_home_caches_go_to_the_home_folder(monkeypatch, tmp_path, value):
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert cache.cache_root() == str(tmp_path / ".cache" / "jaxinv")
    for path in every_cache():
        assert path.startswith(str(tmp_path / ".cache" / "jaxinv") + os.sep), path


def test_weights_fingerprint_sees_values_shapes_and_names():
    params = {"conv1": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}}
    fingerprint = checkpoints.weights_fingerprint(params)
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0  # SHA-256, hex
    reordered = {"conv1": {"b": np.zeros(3, np.float32), "w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    assert checkpoints.weights_fingerprint(reordered) == fingerprint
    changed = {"conv1": {"w": params["conv1"]["w"] + 1e-6, "b": params["conv1"]["b"]}}
    reshaped = {"conv1": {"w": params["conv1"]["w"].reshape(3, 2), "b": params["conv1"]["b"]}}
    renamed = {"conv2": params["conv1"]}
    assert len({fingerprint} | {checkpoints.weights_fingerprint(p) for p in (changed, reshaped, renamed)}) == 4


def test_images_fingerprint_of_one_set_in_uint8_and_float32_agree():
    batch = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3)).astype(np.uint8)
    assert cache.images_fingerprint(batch) == cache.images_fingerprint(batch.astype(np.float32))
    assert cache.images_fingerprint(batch[:2]) != cache.images_fingerprint(batch)
    assert cache.images_fingerprint(batch.reshape(3, 4, 12)) != cache.images_fingerprint(batch)


def test_cifar10_is_decoded_once_into_the_cache_root(monkeypatch, tmp_path):
    import io
    import tarfile

    from PIL import Image

    source = tmp_path / "data" / "cifar10" / "cifar10_jpeg.tar.gz"
    source.parent.mkdir(parents=True)
    with tarfile.open(source, "w:gz") as tar:
        for name, colour in (("cifar10/train/cat/0.jpg", 200), ("cifar10/test/ship/0.jpg", 50)):
            buffer = io.BytesIO()
            Image.new("RGB", (32, 32), (colour,) * 3).save(buffer, format="JPEG")
            info = tarfile.TarInfo(name)
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = cifar10.load(str(tmp_path / "data"))
    assert data["train_images"].shape == (1, 32, 32, 3)
    assert list(data["test_labels"]) == [cifar10.CLASS_NAMES.index("ship")]
    assert os.listdir(tmp_path / "xdg" / "jaxinv") == ["cifar10.npz"]  # no temporary file left behind
    monkeypatch.setattr(cifar10, "_decode", None)  # the second load reads the cache
    np.testing.assert_array_equal(cifar10.load(str(tmp_path / "data"))["train_images"], data["train_images"])
    other = tmp_path / "other" / "cifar10" / "cifar10_jpeg.tar.gz"  # another tarball is decoded again
    other.parent.mkdir(parents=True)
    other.write_bytes(source.read_bytes() + bytes(1024))
    with pytest.raises(TypeError):
        cifar10.load(str(tmp_path / "other"))
