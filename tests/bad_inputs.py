"""Bad inputs and the errors they get: tries each (binary invocations and library calls) and writes the table
docs/bad_inputs.md.

    python -m tests.bad_inputs                 # every case (a few minutes on 2 CPU cores), rewrites the table
    python -m tests.bad_inputs --only=invert   # the cases whose name contains a word; prints, writes nothing

Each outcome is classified:
- clear error: a binary prints one line `error: ...` naming the problem (the case's `mentions`), no traceback,
  and exits with code 2; a library call raises ValueError, TypeError, FileNotFoundError or OutputBusyError naming
  the problem, from jaxinv's own checks (the innermost frame of the traceback is in jaxinv or weights_conversion);
- unclear error: the same, but the message does not name the problem;
- traceback: any other failure (an uncaught exception, another exit code, an exception from deep inside a
  dependency);
- silent success: it ran and exited 0 / returned;
- hang: still running after the case's timeout.
`tests/test_bad_inputs.py` runs a reduced set and checks that the committed table lists every case.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(ROOT, "docs", "bad_inputs.md")
# Small settings, so that a case whose input is accepted ends quickly (its outcome is then "silent success").
TINY = ("--iterations=2", "--refine_iterations=1")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # what is tried, as the table shows it
    mentions: str  # a regex the error message must match to name the problem
    argv: tuple = ()  # a binary: module and arguments, with {scratch}-relative placeholders (see `expand`)
    call: Callable | None = None  # a library call: a function of the scratch folder
    before: str | None = None  # a regex that must not appear in the binary's output (work done before failing)
    timeout: float = 180.0

    @property
    def entry(self) -> str:
        return self.argv[0].split(".")[-1] if self.argv else "API"


def binary(name, mentions, module, *args, before=None, timeout=180.0):
    return Case(name, mentions, argv=(module,) + args, before=before, timeout=timeout)


def api(name, mentions, call):
    return Case(name, mentions, call=call)


# ------------------------------------------------------------------------------------------------ library calls

def _pool():
    import jax

    from jaxinv.engine.representation import Representation
    return Representation("pool4", lambda _, x: jax.lax.reduce_window(x, 0.0, jax.lax.add, (4, 4, 1), (4, 4, 1),
                                                                       "VALID"), channels=1, mean=(128.0,))


def _image(shape=(16, 16)):
    import numpy as np
    return np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)


def _solve(**overrides):
    import jax

    from jaxinv.engine import preimage
    problem = preimage.Problem(C=100)
    target = preimage.make_target(_pool(), problem, _image())
    arguments = dict(image_shape=(16, 16), key=jax.random.key(0), restarts=2, stages=(preimage.Stage(2),))
    return preimage.solve(_pool(), problem, target, **dict(arguments, **overrides))


def _invert(images, **settings):
    from jaxinv.engine import preimage
    from jaxinv.methods import inversion
    return inversion.invert_images(_pool(), images, stages=(preimage.Stage(2),), **settings)


def _problem(**settings):
    from jaxinv.engine import preimage
    return preimage.Problem(**settings)


def _cifar_ref():
    from jaxinv import nets
    return nets.load("cifar-ref")


def _texture_no_layers(scratch):
    from jaxinv.engine import preimage
    from jaxinv.methods import texture
    return texture.synthesise_texture(_cifar_ref(), _image((32, 32, 3)), layers=[], stages=(preimage.Stage(2),))


def _channel_mask(scratch):
    from jaxinv.methods import windows
    return windows.channel_mask(_cifar_ref(), "conv1", [1.5])


def _hog16(scratch):
    import numpy as np

    from jaxinv import features
    return features.hog(_image((32, 32)).astype(np.float16), 8)


def _train_config_nan(scratch):
    from jaxinv import inverters
    return inverters.TrainConfig(representation="hog", image_size=16, learning_rate=float("nan"))


def _busy(scratch):
    from jaxinv.io import paths
    with paths.lock_folder(os.path.join(scratch, "busy-api")):
        with paths.lock_folder(os.path.join(scratch, "busy-api")):
            pass


def _max_units(scratch):
    from jaxinv.engine import preimage
    from jaxinv.studies import deep_networks
    return deep_networks.run_study(_cifar_ref(), _image((1, 32, 32, 3)), layers=["conv1"], C=[20], restarts=1,
                                   stages=(preimage.Stage(2),), max_units=-1, log=lambda line: None)


def _seed_overflow(scratch):
    return _invert([_image()], seed=2 ** 70)


def _one_call(**settings):
    import jaxinv
    return jaxinv.invert("hog", settings.pop("image", _image((64, 64))), iterations=2, refine_iterations=1,
                         **settings)


def _one_call_file(scratch):
    return _one_call(image=os.path.join(scratch, "fifo"))


API_CASES = [
    api("preimage.solve(restarts=2.5)", "restarts", lambda s: _solve(restarts=2.5)),
    api("preimage.solve(image_shape=(0, 0))", "image_shape", lambda s: _solve(image_shape=(0, 0))),
    api("preimage.solve(progress_every=-1)", "progress_every", lambda s: _solve(progress_every=-1)),
    api("Problem(jitter=2.5)", "jitter", lambda s: _problem(jitter=2.5)),
    api("Problem(C=inf)", "C must be", lambda s: _problem(C=float("inf"))),
    api("invert_images(seed=2**70)", "seed", _seed_overflow),
    api("invert_images(restarts=-1)", "restarts", lambda s: _invert([_image()], restarts=-1)),
    api("invert_images(restarts=2.5)", "restarts", lambda s: _invert([_image()], restarts=2.5)),
    api("invert_images of a rank-1 image", r"shape|\(H, W\)", lambda s: _invert([_image((256,))])),
    api("synthesise_texture(layers=[])", "layers", _texture_no_layers),
    api("channel_mask(channels=[1.5])", "channel", _channel_mask),
    api("features.hog of a float16 image", "float16|dtype", _hog16),
    api("inverters.TrainConfig(learning_rate=nan)", "learning_rate", _train_config_nan),
    api("run_study(max_units=-1)", "max_units", _max_units),
    api("a folder locked twice (paths.lock_folder)", r"in use by another run \(pid \d+\)", _busy),
    api("jaxinv.invert('hog', restarts=0)", "restarts", lambda s: _one_call(restarts=0)),
    api("jaxinv.invert('hog', seed=-1)", "seed", lambda s: _one_call(seed=-1)),
    api("jaxinv.invert('hog', image=<named pipe>)", "named pipe", lambda s: _one_call_file(s)),
]


# ------------------------------------------------------------------------------------------------ binaries

def _inv(*args, **kw):
    return binary(kw.pop("name"), kw.pop("mentions"), "experiments.invert", "--output_dir={scratch}/out", *TINY,
                  "--restarts=1", *args, **kw)


BINARY_CASES = [
    _inv("--restarts=-1", name="invert --restarts=-1", mentions="restarts"),
    _inv("--restarts=2.5", name="invert --restarts=2.5", mentions="restarts"),
    _inv(f"--seed={2 ** 70}", name="invert --seed=2**70", mentions="seed"),
    _inv("--seed=-1", name="invert --seed=-1", mentions="seed"),
    _inv("--iterations=0", "--refine_iterations=0", name="invert --iterations=0 --refine_iterations=0",
         mentions="iterations"),
    _inv("--C=inf", name="invert --C=inf", mentions="C must be"),
    _inv("--size=-1", name="invert --size=-1", mentions="size"),
    _inv("--cell_size=0", name="invert --cell_size=0", mentions="cell_size"),
    _inv("--image={scratch}/fifo", name="invert --image=<named pipe>", mentions="named pipe"),
    _inv("--image={scratch}/missing.png", name="invert --image=<missing file>", mentions="not found"),
    _inv("--image={scratch}/text.png", name="invert --image=<not an image>", mentions="cannot read image"),
    _inv("--image={scratch}", name="invert --image=<a folder>", mentions="folder"),
    binary("invert --output_dir=<a file>", "is a file", "experiments.invert", "--output_dir={scratch}/file.txt",
           *TINY, before="inverting"),
    binary("invert --output_dir=<a folder under a file>", "is a file", "experiments.invert",
           "--output_dir={scratch}/file.txt/out", *TINY, before="inverting"),
    binary("invert --output_dir=<a folder that cannot be created>", "cannot create", "experiments.invert",
           "--output_dir={unwritable}/out", *TINY, before="inverting"),
    binary("invert into a folder another run writes", r"in use by another run \(pid \d+\)", "experiments.invert",
           "--output_dir={scratch}/busy", *TINY, before="inverting"),
    binary("shallow_table --batch_size=0", "batch_size", "experiments.shallow_table", "--output_dir={scratch}/out",
           "--batch_size=0", "--num_images=2", "--size=64", *TINY),
    binary("shallow_table --num_images=0", "num_images", "experiments.shallow_table", "--output_dir={scratch}/out",
           "--num_images=0", "--size=64", *TINY),
    binary("shallow_table --representations=hog,foo", "foo", "experiments.shallow_table",
           "--output_dir={scratch}/out", "--representations=hog,foo", "--num_images=2", "--size=64", *TINY),
    binary("deep_studies --figure_images=0", "figure_images", "experiments.deep_studies",
           "--output_dir={scratch}/out", "--figure_images=0", "--num_images=2", "--restarts=1", "--layers=conv1",
           "--C=20", *TINY, before=r"unit 1/"),
    binary("deep_studies --num_images=0", "num_images", "experiments.deep_studies", "--output_dir={scratch}/out",
           "--num_images=0", "--restarts=1", "--layers=conv1", "--C=20", *TINY, before=r"unit 1/"),
    binary("deep_studies --max_units=-1", "max_units", "experiments.deep_studies", "--output_dir={scratch}/out",
           "--max_units=-1", "--num_images=2", "--restarts=1", "--layers=conv1", "--C=20", *TINY),
    binary("deep_studies --C=0", "C", "experiments.deep_studies", "--output_dir={scratch}/out", "--C=0",
           "--num_images=2", "--restarts=1", "--layers=conv1", *TINY, before=r"unit 1/"),
    binary("deep_studies --layers=nope", "nope", "experiments.deep_studies", "--output_dir={scratch}/out",
           "--layers=nope", "--num_images=2", "--restarts=1", *TINY),
    binary("visualise --num_images=0", "num_images", "experiments.visualise", "--output_dir={scratch}/out",
           "--mode=layers", "--layers=conv1", "--num_images=0", *TINY),
    binary("visualise --mode=restarts --restarts=0", "restarts", "experiments.visualise",
           "--output_dir={scratch}/out", "--mode=restarts", "--layers=conv1", "--restarts=0", *TINY),
    binary("visualise --images=<named pipe>", "named pipe", "experiments.visualise", "--output_dir={scratch}/out",
           "--mode=layers", "--layers=conv1", "--images={scratch}/fifo", *TINY),
    binary("activation_max --reference_images=0", "reference_images", "experiments.activation_max",
           "--output_dir={scratch}/out", "--reference_images=0", "--units=0", "--restarts=1", *TINY),
    binary("activation_max --units=99", "99", "experiments.activation_max", "--output_dir={scratch}/out",
           "--units=99", "--restarts=1", *TINY),
    binary("render_features --image=<named pipe>", "named pipe", "experiments.render_features",
           "--output_dir={scratch}/out", "--image={scratch}/fifo"),
    binary("render_features --cell_size=0", "cell_size", "experiments.render_features",
           "--output_dir={scratch}/out", "--cell_size=0"),
    binary("train_inverter --learning_rate=nan", "learning_rate", "experiments.train_inverter",
           "--output_dir={scratch}/out", "--learning_rate=nan", "--size=16", "--steps=1", "--max_train_images=4",
           "--eval_images=0"),
    binary("train_inverter --max_train_images=0", "max_train_images", "experiments.train_inverter",
           "--output_dir={scratch}/out", "--max_train_images=0", "--size=16", "--steps=1", "--eval_images=0"),
    binary("train_inverter --steps=0", "steps", "experiments.train_inverter", "--output_dir={scratch}/out",
           "--steps=0", "--size=16", "--max_train_images=4", "--eval_images=0"),
    binary("train_classifier --max_train_images=0", "max_train_images", "experiments.train_classifier",
           "--output_dir={scratch}/out", "--max_train_images=0", "--epochs=1", "--max_test_images=10"),
    binary("train_classifier --epochs=0", "epochs", "experiments.train_classifier", "--output_dir={scratch}/out",
           "--epochs=0", "--max_train_images=256", "--max_test_images=10"),
    binary("train_hoggle --output=<a folder>", "is a folder", "experiments.train_hoggle", "--output={scratch}",
           "--num_images=2", "--image_size=64", "--num_patches=20", "--num_atoms=4", "--epochs=0"),
    binary("train_hoggle --num_atoms=0", "num_atoms", "experiments.train_hoggle", "--output={scratch}/d.npz",
           "--num_images=2", "--image_size=64", "--num_patches=20", "--num_atoms=0", "--epochs=0"),
    binary("compare_inverters --num_images=0", "num_images", "experiments.compare_inverters",
           "--output_dir={scratch}/out", "--num_images=0", "--skip_hoggle", *TINY),
    binary("inverter_studies --num_images=0", "num_images", "experiments.inverter_studies",
           "--output_dir={scratch}/out", "--num_images=0", "--layers=fc8"),
    binary("evaluate_hoggle --num_test=0", "num_test", "experiments.evaluate_hoggle", "--output_dir={scratch}/out",
           "--num_test=0"),
    binary("convert --input_size=-32", "input_size", "weights_conversion.convert", "--format=torch",
           "--arch=cifar-ref", "--input={scratch}/cifar.pth", "--output={scratch}/net", "--input_size=-32"),
    binary("convert a .pth with NaN weights", "non-finite|NaN", "weights_conversion.convert", "--format=torch",
           "--arch=cifar-ref", "--input={scratch}/nan.pth", "--output={scratch}/net"),
    binary("convert --output=<a folder that cannot be written>", "cannot write", "weights_conversion.convert",
           "--format=torch", "--arch=cifar-ref", "--input={scratch}/cifar.pth", "--output={unwritable}",
           timeout=30.0),
    binary("convert --output=<a folder that cannot be created>", "cannot create", "weights_conversion.convert",
           "--format=torch", "--arch=cifar-ref", "--input={scratch}/cifar.pth", "--output={unwritable}/net",
           timeout=30.0),
    binary("convert --input=<named pipe>", "named pipe", "weights_conversion.convert", "--format=torch",
           "--arch=cifar-ref", "--input={scratch}/fifo", "--output={scratch}/net"),
    binary("convert without --arch", "arch", "weights_conversion.convert", "--format=torch",
           "--input={scratch}/cifar.pth", "--output={scratch}/net"),
]

CASES = API_CASES + BINARY_CASES


# ------------------------------------------------------------------------------------------------ running them

@dataclasses.dataclass
class Outcome:
    kind: str  # clear error | unclear error | traceback | silent success | hang
    message: str
    seconds: float


def unwritable_folder(scratch: str) -> str:
    """A folder whose entries cannot be created, even by root: an immutable folder (chattr +i) where that works,
    else /sys (which refuses new entries); for other users, a folder without write permission."""
    path = os.path.join(scratch, "unwritable")
    os.makedirs(path, exist_ok=True)
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        return path
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", path], capture_output=True).returncode == 0:
        return path
    return "/sys/jaxinv-unwritable"


def release_unwritable(scratch: str) -> None:
    path = os.path.join(scratch, "unwritable")
    if os.path.isdir(path):
        if os.geteuid() == 0 and shutil.which("chattr"):
            subprocess.run(["chattr", "-i", path], capture_output=True)
        os.chmod(path, 0o755)


def inputs(folder: str) -> None:
    """A case's inputs: a named pipe, a text file named .png, a file where a folder is expected."""
    os.mkfifo(os.path.join(folder, "fifo"))
    with open(os.path.join(folder, "text.png"), "w") as f:
        f.write("not an image\n")
    with open(os.path.join(folder, "file.txt"), "w") as f:
        f.write("a file\n")


def prepare(scratch: str) -> dict:
    """The weights every case may read ((with torch) cifar-ref's as a .pth, finite and with a NaN) and the
    unwritable folder."""
    try:
        import torch

        from tests.test_conversion_errors import cifar_ref_torch
        torch.manual_seed(0)
        state = cifar_ref_torch().state_dict()
        torch.save(state, os.path.join(scratch, "cifar.pth"))
        state["0.weight"][0, 0, 0, 0] = float("nan")
        torch.save(state, os.path.join(scratch, "nan.pth"))
    except ImportError:
        pass
    return {"scratch": scratch, "unwritable": unwritable_folder(scratch)}


def expand(argv, places: dict) -> list[str]:
    return [a.format(**places) for a in argv]


def one_line(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_binary(case: Case, places: dict, env: dict) -> Outcome:
    command = [sys.executable, "-m"] + expand(case.argv, places)
    began = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=case.timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Outcome("hang", f"still running after {case.timeout:.0f} s", time.perf_counter() - began)
    seconds = time.perf_counter() - began
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    if done.returncode == 0:
        return Outcome("silent success", one_line(done.stdout.strip().splitlines()[-1] if done.stdout.strip()
                                                  else "exit code 0"), seconds)
    if done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr:
        message = errors[0][len("error: "):]
        early = case.before is None or not re.search(case.before, done.stdout + done.stderr)
        named = re.search(case.mentions, message) is not None
        if named and early:
            return Outcome("clear error", one_line(message), seconds)
        why = "" if early else f" (only after work: output shows {case.before!r})"
        return Outcome("unclear error", one_line(message) + why, seconds)
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    last = raised[-1] if raised else lines[-1] if lines else ""
    return Outcome("traceback", one_line(f"exit code {done.returncode}: {last}"), seconds)


def run_call(case: Case, scratch: str) -> Outcome:
    from jaxinv.io.outputs import OutputBusyError

    began = time.perf_counter()
    try:
        case.call(scratch)
    except (ValueError, TypeError, FileNotFoundError, OutputBusyError) as e:
        seconds = time.perf_counter() - began
        innermost = traceback.extract_tb(e.__traceback__)[-1].filename
        ours = any(os.path.join(ROOT, package) in innermost for package in ("jaxinv", "weights_conversion"))
        message = f"{type(e).__name__}: {one_line(str(e))}"
        if not ours:
            return Outcome("traceback", f"{message} (raised in {os.path.relpath(innermost, ROOT)})", seconds)
        return Outcome("clear error" if re.search(case.mentions, str(e)) else "unclear error", message, seconds)
    except Exception as e:  # anything else is a bug
        return Outcome("traceback", f"{type(e).__name__}: {one_line(str(e))}", time.perf_counter() - began)
    return Outcome("silent success", "returned", time.perf_counter() - began)


def run_cases(cases, log=print) -> list[tuple[Case, Outcome]]:
    """Runs `cases` in a scratch folder (a fresh cache root, so nothing is written to the user's)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="jaxinv-bad-inputs-") as scratch:
        places = prepare(scratch)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   XDG_CACHE_HOME=os.path.join(scratch, "cache"))
        from jaxinv.io import paths
        try:
            for case in cases:
                case_dir = os.path.join(scratch, f"case{len(results):02d}")
                os.makedirs(case_dir)
                inputs(case_dir)
                for name in ("cifar.pth", "nan.pth"):
                    if os.path.lexists(os.path.join(scratch, name)):
                        os.symlink(os.path.join(scratch, name), os.path.join(case_dir, name))
                here = dict(places, scratch=case_dir)
                if case.call is not None:
                    outcome = run_call(case, case_dir)
                else:
                    with paths.lock_folder(os.path.join(case_dir, "busy")):
                        outcome = run_binary(case, here, env)
                outcome.message = outcome.message.replace(case_dir, "CASE").replace(scratch, "SCRATCH")
                outcome.message = re.sub(r"pid \d+", "pid N", outcome.message)
                log(f"{outcome.kind:15s} {outcome.seconds:6.1f} s  {case.name}: {outcome.message}")
                results.append((case, outcome))
        finally:
            release_unwritable(scratch)
    return results


KINDS = ("clear error", "unclear error", "traceback", "silent success", "hang")


def table(results) -> str:
    counts = {kind: sum(outcome.kind == kind for _, outcome in results) for kind in KINDS}
    lines = [
        "# Bad inputs and the errors they get",
        "",
        "Generated by `python -m tests.bad_inputs` (do not edit by hand; `tests/test_bad_inputs.py` checks that it",
        "lists every case and reruns a few). Each bad input is tried as a binary invocation (in a scratch folder,",
        "with a fresh cache root) or a library call. A **clear error** is one line `error: ...` naming the problem",
        "and exit code 2 (a binary), or a ValueError / TypeError / FileNotFoundError / OutputBusyError naming it,",
        "raised by jaxinv's own checks (a call); a case with \"checked\" under \"early\" must also fail before",
        "doing the work (no unit computed, no optimisation started). Seconds include Python's and JAX's start-up.",
        "CASE is the case's scratch folder, SCRATCH the run's; a folder that cannot be written is an immutable",
        "folder (chattr +i) when run as root, one without write permission otherwise.",
        "",
        f"**{len(results)} tried: {counts['clear error']} clear errors, "
        f"{len(results) - counts['clear error']} other** "
        f"({', '.join(f'{counts[k]} {k}' for k in KINDS[1:])}).",
        "",
        "| # | input | entry | early | outcome | error | s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, (case, outcome) in enumerate(results, 1):
        message = outcome.message.replace("|", "\\|")
        early = "checked" if case.before else ""
        lines.append(f"| {i} | `{case.name}` | {case.entry} | {early} | {outcome.kind} | {message} | "
                     f"{outcome.seconds:.1f} |")
    return "\n".join(lines) + "\n"


def listed_cases(text: str) -> list[str]:
    """The case names of a generated table, in order."""
    return re.findall(r"(?m)^\| \d+ \| `(.*)` \| ", text)


def main(argv) -> int:
    only = [a.split("=", 1)[1] for a in argv if a.startswith("--only=")]
    cases = [c for c in CASES if not only or any(word in c.name for word in only)]
    results = run_cases(cases)
    text = table(results)
    if only:
        print(text)
    else:
        with open(TABLE, "w") as f:
            f.write(text)
        print(f"wrote {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
