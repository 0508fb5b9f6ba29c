"""The one data folder (jaxinv.io.images.data_root: --data_dir, $JAXINV_DATA, ../shared/data beside a checkout),
its errors, and CIFAR-10 read alike from the python archive, its extracted folder and the JPEG tarball."""
import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxinv.io import images
from jaxinv.nets import cifar10

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_data_settings(monkeypatch):
    monkeypatch.delenv(images.DATA_ENV, raising=False)
    monkeypatch.setattr(images, "_data_dir_flag", None)


def test_data_root_rule(no_data_settings, monkeypatch, tmp_path):
    assert images.data_root() == os.path.normpath(ROOT / ".." / "shared" / "data")  # a checkout's default
    monkeypatch.setenv("JAXINV_DATA", str(tmp_path / "env"))
    assert images.data_root() == str(tmp_path / "env")
    images.use_data_dir(str(tmp_path / "flag"))  # a binary's --data_dir comes before the variable
    assert images.data_root() == str(tmp_path / "flag")
    assert images.data_root(str(tmp_path / "given")) == str(tmp_path / "given")
    assert images.imagenet_samples_dir() == str(tmp_path / "flag" / "imagenet_samples")


def test_missing_data_names_the_variable_the_path_and_the_layout(no_data_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXINV_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        cifar10.load()
    message = str(error.value)
    tried = f"{tmp_path}/cifar10/{{cifar-10-batches-py,cifar-10-python.tar.gz,cifar10_jpeg.tar.gz}}"
    for part in (f"CIFAR-10 not found: {tried} (data folder {tmp_path} from $JAXINV_DATA)", "cifar-10-python.tar.gz",
                 "cifar-10-batches-py", "cifar10_jpeg.tar.gz", "imagenet_samples/", "--data_dir"):
        assert part in message, (part, message)
    with pytest.raises(FileNotFoundError, match=rf"the ImageNet samples not found: {tmp_path}/imagenet_samples"):
        images.imagenet_sample_paths()
    monkeypatch.delenv("JAXINV_DATA")
    monkeypatch.setattr(images, "_checkout", lambda: None)  # an installed copy has no default
    with pytest.raises(FileNotFoundError, match=r"no data folder: no --data_dir, no \$JAXINV_DATA.*installed"):
        images.data_root()


def tiny_cifar(seed=0):
    """Five training batches and a test batch of random images: {name: (NHWC uint8, labels)}."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 6)]:
        batches[name] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).tolist()
    return batches


def pickled(pixels, labels) -> bytes:
    """A batch as CIFAR-10's python version stores it: rows of 3072 bytes, the R, G and B planes in turn."""
    return pickle.dumps({b"batch_label": b"x", b"labels": labels, b"filenames": [b"f.png"] * len(labels),
                         b"data": pixels.transpose(0, 3, 1, 2).reshape(len(pixels), -1)}, protocol=2)


def write_python_archive(path: Path, batches) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, (pixels, labels) in batches.items():
            data = pickled(pixels, labels)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_jpeg_tarball(path: Path, batches) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, (pixels, labels) in batches.items():
            split = "test" if name == "test_batch" else "train"
            for image, label in zip(pixels, labels):
                number = counts[split, label] = counts.get((split, label), -1) + 1
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, format="JPEG", quality=100, subsampling=0)
                info = tarfile.TarInfo(f"cifar10/{split}/{cifar10.CLASS_NAMES[label]}/{number:04d}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)


def expected(batches, names):
    pixels = np.concatenate([batches[n][0] for n in names])
    labels = np.concatenate([batches[n][1] for n in names]).astype(np.int32)
    order = np.argsort(labels, kind="stable")
    return pixels[order], labels[order]


def test_cifar10_python_archive_folder_and_jpeg_tarball_load_alike(no_data_settings, monkeypatch, tmp_path, capfd):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    batches = tiny_cifar()
    train = expected(batches, [f"data_batch_{i}" for i in range(1, 6)])
    test = expected(batches, ["test_batch"])

    write_python_archive(tmp_path / "python" / "cifar10" / "cifar-10-python.tar.gz", batches)
    from_archive = cifar10.load(str(tmp_path / "python"))
    for key, value in (("train_images", train[0]), ("train_labels", train[1]), ("test_images", test[0]),
                       ("test_labels", test[1])):
        assert from_archive[key].dtype == value.dtype and from_archive[key].shape == value.shape, key
        np.testing.assert_array_equal(from_archive[key], value, err_msg=key)
    assert from_archive["train_images"].shape == (20, 32, 32, 3)
    assert not (tmp_path / "cache").exists()  # read directly, nothing cached

    folder = tmp_path / "extracted" / "cifar10"
    with tarfile.open(tmp_path / "python" / "cifar10" / "cifar-10-python.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    monkeypatch.setenv("JAXINV_DATA", str(tmp_path / "extracted"))
    from_folder = cifar10.load()
    for key in from_archive:
        np.testing.assert_array_equal(from_folder[key], from_archive[key], err_msg=key)

    write_jpeg_tarball(tmp_path / "jpeg" / "cifar10" / "cifar10_jpeg.tar.gz", batches)
    capfd.readouterr()
    from_jpeg = cifar10.load(str(tmp_path / "jpeg"))
    err = capfd.readouterr().err
    assert f"into {tmp_path / 'cache' / 'jaxinv' / 'cifar10.npz'}" in err and "decoding CIFAR-10" in err
    assert "100%" in err  # the decode's progress bar, finished
    for key in from_archive:
        assert from_jpeg[key].dtype == from_archive[key].dtype and from_jpeg[key].shape == from_archive[key].shape
    np.testing.assert_array_equal(from_jpeg["train_labels"], from_archive["train_labels"])
    np.testing.assert_array_equal(from_jpeg["test_labels"], from_archive["test_labels"])
    difference = np.abs(from_jpeg["test_images"].astype(int) - from_archive["test_images"]).mean()
    assert difference < 8, difference  # the same images, up to JPEG (noise images are JPEG's worst case)
    again = cifar10.load(str(tmp_path / "jpeg"))  # from the cache, silently
    assert capfd.readouterr().err == ""
    np.testing.assert_array_equal(again["train_images"], from_jpeg["train_images"])


def test_python_batches_that_would_run_code_are_refused(no_data_settings, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    batches = tiny_cifar()
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickled(*batch))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ValueError, match="test_batch is not a CIFAR-10 python batch: unexpected object"):
        cifar10.load(str(tmp_path))


@pytest.mark.parametrize("binary", ["visualise", "activation_max"])
def test_binaries_take_data_dir(binary, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAXINV_DATA=str(tmp_path / "unused"))
    done = subprocess.run([sys.executable, "-m", f"experiments.{binary}", f"--data_dir={tmp_path / 'data'}",
                           "--nocompilation_cache", f"--output_dir={tmp_path / 'out'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"CIFAR-10 not found: {tmp_path / 'data' / 'cifar10'}/{{" in done.stderr
    assert f"(data folder {tmp_path / 'data'} from --data_dir)" in done.stderr
