"""Nothing silently wrong, nothing lost: saved networks and inverters are replaced atomically, verified when loaded
(metadata schema, finite parameters, fingerprints), and the atomic file writer honours the umask and cleans up
after killed processes."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import inverters, nets
from jaxinv.io import checkpoints, outputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so replace_directory does not clean up after it."""


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def cifar_ref():
    return nets.load("cifar-ref")


def scaled(model, factor, mean_image=None):
    """A copy of `model` with its parameters times `factor` (so versions are told apart) and a mean image."""
    return nets.Model(arch=model.arch, table=model.table, params={k: {n: np.asarray(v) * factor for n, v in d.items()}
                                                                  for k, d in model.params.items()},
                      input_size=model.input_size, convention=model.convention, class_names=model.class_names,
                      mean_image=mean_image, metadata=dict(version=factor))


def siblings(path):
    parent, base = os.path.split(str(path))
    return sorted(name for name in os.listdir(parent) if name.startswith(base + "."))


# ----------------------------------------------------------------------------------------------------------------
# weights_fingerprint


def test_fingerprint_depends_on_values_keys_shapes_and_dtypes_only():
    a = {"conv": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}, "fc": [np.ones(2)]}
    same = {"fc": (np.ones(2, np.float64),),
            "conv": {"b": jnp.zeros(3), "w": jnp.arange(6.0).reshape(2, 3)}}
    fingerprint = checkpoints.weights_fingerprint(a)
    assert len(fingerprint) == 64 and checkpoints.weights_fingerprint(same) == fingerprint
    variants = [
        {**a, "conv": {**a["conv"], "w": a["conv"]["w"] + np.float32(1e-6)}},         # a value
        {**a, "conv": {**a["conv"], "w": a["conv"]["w"].reshape(3, 2)}},              # a shape
        {**a, "conv": {**a["conv"], "w": a["conv"]["w"].astype(np.float64)}},         # a dtype
        {**a, "conv": {"W": a["conv"]["w"], "b": a["conv"]["b"]}},                    # a name
        {"conv": a["conv"]},                                                          # a leaf less
    ]
    assert len({checkpoints.weights_fingerprint(v) for v in variants} | {fingerprint}) == len(variants) + 1
    big_endian = np.arange(4, dtype=">f4")
    assert checkpoints.weights_fingerprint(big_endian) == checkpoints.weights_fingerprint(np.arange(4, dtype="<f4"))


def test_shipped_network_records_its_fingerprint(cifar_ref):
    recorded = cifar_ref.metadata["fingerprints"]
    assert recorded == {"version": 1, "params": checkpoints.weights_fingerprint(cifar_ref.params)}


# ----------------------------------------------------------------------------------------------------------------
# Re-saving over an existing folder


def step_names(model, directory, monkeypatch):
    seen = []
    monkeypatch.setattr(outputs, "_after_step", seen.append)
    nets.save(directory, model)
    monkeypatch.setattr(outputs, "_after_step", lambda name: None)
    return seen


def test_resave_keeps_the_other_files_and_leaves_no_siblings(cifar_ref, tmp_path):
    directory = tmp_path / "net"
    nets.save(directory, scaled(cifar_ref, 1.0, np.full((32, 32, 3), 100.0)))
    (directory / "checkpoints").mkdir()
    (directory / "checkpoints" / "7").write_text("state")
    (directory / "notes.txt").write_text("mine")
    nets.save(directory, scaled(cifar_ref, 2.0))  # no mean image this time: the old one must not survive
    assert sorted(os.listdir(directory)) == ["checkpoints", "metadata.json", "notes.txt", "params"]
    assert (directory / "checkpoints" / "7").read_text() == "state" and siblings(directory) == []
    loaded = nets.load(str(directory))
    assert loaded.metadata["version"] == 2.0 and loaded.mean_image is None


def test_a_kill_at_any_step_of_a_resave_leaves_the_old_or_the_new_network(cifar_ref, tmp_path, monkeypatch):
    old, new = scaled(cifar_ref, 1.0, np.full((32, 32, 3), 100.0)), scaled(cifar_ref, 2.0, np.full((32, 32, 3), 50.0))
    steps = step_names(old, tmp_path / "probe", monkeypatch)
    (tmp_path / "probe" / "extra").mkdir()
    steps = step_names(new, tmp_path / "probe", monkeypatch)
    assert steps[:2] == ["written", "committed"] and steps[-2:] == ["old renamed", "new renamed"]
    assert "moved extra" in steps
    outcomes = []
    for where in ["writing metadata"] + steps:
        directory = tmp_path / where.replace(" ", "_")
        nets.save(directory, old)
        (directory / "extra").mkdir()
        (directory / "extra" / "file").write_text("kept")

        def kill(name, where=where):
            if name == where:
                raise Killed(where)

        monkeypatch.setattr(outputs, "_after_step", kill)
        if where == "writing metadata":
            def write_json(path, data):
                raise Killed(where)
            monkeypatch.setattr(outputs, "write_json", write_json)
        with pytest.raises(Killed):
            nets.save(directory, new)
        monkeypatch.undo()
        assert siblings(directory)  # what a SIGKILL would leave
        loaded = nets.load(str(directory))  # recovers
        assert siblings(directory) == [] and (directory / "extra" / "file").read_text() == "kept"
        version = loaded.metadata["version"]
        expected = old if version == 1.0 else new
        np.testing.assert_array_equal(loaded.params["conv1"]["w"], expected.params["conv1"]["w"])
        np.testing.assert_array_equal(loaded.mean_image, expected.mean_image)
        outcomes.append(version)
        nets.save(directory, scaled(cifar_ref, 3.0))  # and the folder can be saved over again
        assert nets.load(str(directory)).metadata["version"] == 3.0 and siblings(directory) == []
    # Killed before the new version is complete: the old one; after: the new one.
    assert outcomes == [1.0, 1.0] + [2.0] * (len(steps) - 1)


def test_a_missing_folder_is_recovered_from_its_previous_version(cifar_ref, tmp_path):
    directory = tmp_path / "net"
    nets.save(directory, scaled(cifar_ref, 1.0))
    os.rename(directory, f"{directory}.old-{dead_pid()}-0")
    assert nets.load(str(directory)).metadata["version"] == 1.0
    assert siblings(directory) == []


def test_siblings_of_running_processes_are_left_alone(cifar_ref, tmp_path):
    directory = tmp_path / "net"
    nets.save(directory, scaled(cifar_ref, 1.0))
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f"net.tmp-{running.pid}-0"
        busy.mkdir()
        stale = tmp_path / f"net.tmp-{dead_pid()}-0"
        stale.mkdir()
        nets.load(str(directory))
        assert busy.is_dir() and not stale.exists()
    finally:
        running.kill()
        running.wait()


def test_an_inverter_resave_killed_at_each_step_leaves_one_version(tmp_path, monkeypatch):
    def inverter(value):
        return inverters.Inverter(representation="hog", image_size=32, family="hog", feature_shape=(4, 4, 31),
                                  width=0.5, params={"decoder": {"w": np.full((3, 3), value, np.float32)}},
                                  feature_scale=0.25, metadata={"version": value})
    probe = tmp_path / "probe"
    inverters.save(str(probe), inverter(1.0))
    (probe / "checkpoints").mkdir()
    steps = []
    monkeypatch.setattr(outputs, "_after_step", steps.append)
    inverters.save(str(probe), inverter(2.0))
    monkeypatch.undo()
    for where in steps:
        directory = tmp_path / where.replace(" ", "_")
        inverters.save(str(directory), inverter(1.0))
        (directory / "checkpoints").mkdir()

        def kill(name, where=where):
            if name == where:
                raise Killed(where)
        monkeypatch.setattr(outputs, "_after_step", kill)
        with pytest.raises(Killed):
            inverters.save(str(directory), inverter(2.0))
        monkeypatch.undo()
        loaded = inverters.load(str(directory))
        assert float(loaded.params["decoder"]["w"][0, 0]) == loaded.metadata["version"] == (1.0 if where == "written" else 2.0)
        assert (directory / "checkpoints").is_dir() and siblings(directory) == []


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from jaxinv import nets
    directory = sys.argv[1]
    model = nets.load("cifar-ref")
    params = model.params
    version = 2
    print("ready", flush=True)
    while True:
        model.params = {k: {n: np.asarray(v) * version for n, v in d.items()} for k, d in params.items()}
        model.metadata = dict(version=version)
        nets.save(directory, model)
        version += 1
""")


def kill_during_saves(cifar_ref, directory, delay):
    """Starts a process saving versions 2, 3, ... of cifar-ref over `directory` (holding version 1), SIGKILLs it
    `delay` seconds in, and checks that the folder then loads as one complete version."""
    nets.save(directory, scaled(cifar_ref, 1.0))
    (directory / "checkpoints").mkdir()
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(directory)], stdout=subprocess.PIPE,
                             env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
    try:
        assert saver.stdout.readline().strip() == b"ready"
        time.sleep(delay)
    finally:
        saver.send_signal(signal.SIGKILL)
        saver.wait()
    loaded = nets.load(str(directory))
    version = loaded.metadata["version"]
    np.testing.assert_array_equal(loaded.params["fc8"]["w"], np.asarray(cifar_ref.params["fc8"]["w"]) * version)
    assert (directory / "checkpoints").is_dir() and siblings(directory) == []
    return version


def test_a_network_resave_killed_by_sigkill_leaves_one_version(cifar_ref, tmp_path):
    versions = [kill_during_saves(cifar_ref, tmp_path / f"net{i}", delay) for i, delay in enumerate([0.3, 1.1])]
    assert all(v >= 1 for v in versions)


@pytest.mark.slow
def test_a_network_resave_killed_by_sigkill_at_many_moments_leaves_one_version(cifar_ref, tmp_path):
    delays = np.random.default_rng(0).uniform(0.0, 3.0, 20)
    versions = [kill_during_saves(cifar_ref, tmp_path / f"net{i}", delay) for i, delay in enumerate(delays)]
    assert max(versions) > 2  # some kills came after several saves


# ----------------------------------------------------------------------------------------------------------------
# Verification on loading


@pytest.fixture
def saved(cifar_ref, tmp_path):
    directory = tmp_path / "net"
    nets.save(directory, scaled(cifar_ref, 1.0, np.full((32, 32, 3), 100.0)))
    return directory


def edit_metadata(directory, edit):
    path = directory / "metadata.json"
    metadata = json.loads(path.read_text())
    edit(metadata)
    path.write_text(json.dumps(metadata))


def test_flipped_bytes_in_the_shipped_networks_params_are_refused(tmp_path):
    directory = tmp_path / "cifar-ref"
    shutil.copytree(nets.model.builtin_dir("cifar-ref"), directory)
    data = max((os.path.join(d, f) for d, _, files in os.walk(directory / "params") for f in files),
               key=os.path.getsize)
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        chunk = f.read(4096)
        f.seek(os.path.getsize(data) // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.raises(ValueError, match=f"{directory / 'params'}"):
        nets.load(str(directory))


def test_modified_parameters_are_refused_naming_the_folder(saved):
    params = checkpoints.read_tree(str(saved / "params"))
    params["fc8"]["w"] = np.asarray(params["fc8"]["w"]) + 1
    shutil.rmtree(saved / "params")
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(str(saved / "params"), params)
    with pytest.raises(ValueError, match=f"{saved / 'params'} does not match its checksum in .*metadata.json"):
        nets.load(str(saved))


def test_non_finite_weights_are_refused_even_without_a_fingerprint(cifar_ref, tmp_path):
    model = scaled(cifar_ref, 1.0)
    model.params["conv2"]["w"][0, 0, 0, :3] = np.nan
    nets.save(tmp_path / "nan", model)
    with pytest.raises(ValueError, match=r"params: non-finite values .* in \['conv2'\]\['w'\] \(3 of"):
        nets.load(str(tmp_path / "nan"))
    edit_metadata(tmp_path / "nan", lambda m: m.pop("fingerprints"))
    with pytest.raises(ValueError, match="non-finite"):
        nets.load(str(tmp_path / "nan"))


def test_folders_saved_without_fingerprints_still_load(saved):
    edit_metadata(saved, lambda m: m.pop("fingerprints"))
    assert nets.load(str(saved)).metadata["version"] == 1.0


def test_a_modified_mean_image_is_refused(saved):
    np.save(saved / "mean_image.npy", np.full((32, 32, 3), 101.0, np.float32))
    with pytest.raises(ValueError, match="mean_image.npy does not match its checksum"):
        nets.load(str(saved))


def test_corrupt_files_are_named(saved):
    (saved / "mean_image.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=f"{saved / 'mean_image.npy'} is corrupt"):
        nets.load(str(saved))
    (saved / "metadata.json").write_bytes(b'{"arch": "cifar-ref", \xff')
    with pytest.raises(ValueError, match=f"{saved / 'metadata.json'} is corrupt"):
        nets.load(str(saved))
    shutil.rmtree(saved / "params" / "ocdbt.process_0")
    (saved / "metadata.json").write_text(json.dumps(dict(arch="cifar-ref", input_size=32,
                                                         convention=nets.model.TORCHVISION_CONVENTION)))
    with pytest.raises(ValueError, match=f"{saved / 'params'}: cannot read the saved parameters"):
        nets.load(str(saved))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("arch"), "required key 'arch' is missing"),
    (lambda m: m.update(arch="cifar-reff"), "unknown architecture 'cifar-reff'"),
    (lambda m: m.update(input_size="32"), "'input_size' should be int"),
    (lambda m: m["convention"].update(channel_order="RBG"), "channel_order"),
    (lambda m: m["convention"].update(std=[1, 0, 1]), "nonzero"),
    (lambda m: m.update(class_names="cat"), "'class_names' should be a list"),
])
def test_metadata_schema_errors_name_the_file(saved, edit, message):
    edit_metadata(saved, edit)
    with pytest.raises(ValueError, match=f"{saved / 'metadata.json'}: key .*{message}|"
                                         f"{saved / 'metadata.json'}: {message}"):
        nets.load(str(saved))


def test_inverter_checks(tmp_path):
    directory = str(tmp_path / "inverter")
    inverter = inverters.Inverter(representation="hog", image_size=32, family="hog", feature_shape=(4, 4, 31),
                                  width=0.5, params={"decoder": {"w": np.ones((3, 3), np.float32)}},
                                  feature_scale=0.25)
    inverters.save(directory, inverter)
    assert inverters.load(directory).metadata["fingerprints"]["params"] == checkpoints.weights_fingerprint(inverter.params)
    edit_metadata(tmp_path / "inverter", lambda m: m.pop("feature_scale"))
    with pytest.raises(ValueError, match="metadata.json: required key 'feature_scale' is missing"):
        inverters.load(directory)
    inverter.params["decoder"]["w"][0, 0] = np.inf
    inverters.save(directory, inverter)
    with pytest.raises(ValueError, match=r"params: non-finite values .*\['decoder'\]\['w'\]"):
        inverters.load(directory)


# ----------------------------------------------------------------------------------------------------------------
# The atomic file writer


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = outputs.write_json(str(tmp_path / "results.json"), {"a": 1})
        umask_read = outputs.current_umask()
    finally:
        os.umask(previous)
    assert os.stat(path).st_mode & 0o777 == mode and umask_read == umask


def test_temporary_files_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    stale = [f".results.json.tmp-{dead}-abcd1234.json", f".energy.png.tmp-{dead}-x_y0z9ab.png"]
    kept = [f".results.json.tmp-{alive}-abcd1234.json", "tmpabcd1234.png", "results.json.tmp-1-abcd1234.json",
            f".notes.tmp-{dead}-too_long_name.txt", "figure.png"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    outputs.write_json(str(tmp_path / "metrics.json"), {})
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["metrics.json"])


def test_temporary_file_names_are_recognisable(tmp_path, monkeypatch):
    seen = []

    def write(tmp):
        seen.append(os.path.basename(tmp))
        open(tmp, "w").close()
    outputs.atomic_write(str(tmp_path / "figure.png"), write, ".png")
    assert seen[0].startswith(f".figure.png.tmp-{os.getpid()}-") and seen[0].endswith(".png")
    assert outputs._TEMPORARY_FILE.match(seen[0])


def test_saving_through_a_symbolic_link_replaces_its_target(cifar_ref, tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    nets.save(tmp_path / "link", scaled(cifar_ref, 1.0))
    nets.save(tmp_path / "link", scaled(cifar_ref, 2.0))
    assert os.path.islink(tmp_path / "link") and sorted(os.listdir(tmp_path)) == ["link", "real"]
    assert nets.load(str(tmp_path / "link")).metadata["version"] == 2.0


def test_json_outputs_are_standard_json(tmp_path):
    data = {"C": float("inf"), "std": [float("nan"), 1.5], "n": 3, "nested": ({"x": -float("inf")},)}
    path = outputs.write_json(str(tmp_path / "r.json"), data)
    text = open(path).read()
    assert "NaN" not in text and "Infinity" not in text
    assert outputs.read_json(path) == {"C": None, "std": [None, 1.5], "n": 3, "nested": [{"x": None}]}
    assert data["C"] == float("inf")  # the caller's data is left as it was: only the file is standard JSON
