"""The learned inverters shipped in jaxinv/inverters/assets (`jaxinv.inverters.shipped`): each loads on a
fresh machine (a new process, an empty cache, outside the repository), its weights match the checksum in its
metadata, and it reproduces the held-out error recorded when it was shipped."""
import configparser
import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxinv.inverters import model, shipped
from jaxinv.io import images

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "jaxinv" / "inverters" / "assets"
SHIPPED = model.builtin_names()
MAX_BYTES = 10 * 2 ** 20

FRESH = """
import json, sys
from jaxinv import inverters
from jaxinv.inverters import shipped
from jaxinv.io import checkpoints
name = sys.argv[1]
inverter = inverters.load(name)
print(json.dumps(dict(directory=inverters.builtin_dir(name), representation=inverter.representation,
                      image_size=inverter.image_size, fingerprint=checkpoints.weights_fingerprint(inverter.params),
                      recorded_fingerprint=inverter.metadata["fingerprints"]["params"], **shipped.check(name))))
"""


def test_the_64_pixel_hog_inverter_ships():
    assert "hog-64" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_inverter_on_a_fresh_machine(name, tmp_path):
    try:
        images.imagenet_sample_paths()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path),
               JAXINV_DATA=images.data_root())
    out = subprocess.run([sys.executable, "-c", FRESH, name], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["directory"] == str(ASSETS / name)
    assert not (tmp_path / "cache" / "jaxinv" / "inverters").exists()  # nothing trained or cached was used
    assert found["fingerprint"] == found["recorded_fingerprint"]  # load checks it too; here explicitly
    assert f"{found['representation']}-{found['image_size']}" == name
    assert len(found["measured"]["images"]) == shipped.CHECK_IMAGES
    for key in ("image_error", "image_error_grey"):
        assert abs(found["measured"][key] - found["recorded"][key]) <= 1e-4, (key, found)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_inverter_is_small_and_packaged(name):
    files = [p for p in (ASSETS / name).rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < MAX_BYTES
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["jaxinv.inverters"].split(",")]
    for path in files:
        parts = path.relative_to(ASSETS.parent).parts
        assert any(len(parts) == len(p.split("/")) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, p.split("/")))
                   for p in patterns), f"{path} is not in setup.cfg's package_data"
    metadata = json.loads((ASSETS / name / "metadata.json").read_text())
    assert metadata["shipped_check"]["images"] and metadata["fingerprints"]["params"]
    assert metadata["held_out"]["num_test_images"] == 50


def test_a_modified_shipped_inverter_is_refused(tmp_path):
    import shutil

    directory = tmp_path / "hog-64"
    shutil.copytree(ASSETS / "hog-64", directory)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["fingerprints"]["params"] = "0" * 64
    (directory / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="does not match its checksum"):
        model.load(str(directory))
