"""Entry point of jaxinv's command-line programs: absl flags, clear one-line errors for bad input.

The flags several binaries share are declared here, once; a binary calls the `define_*` function of
each group it takes (at import) with its own default where they differ, then reads them as
`flags.FLAGS.<name>`. Declaring a shared flag again in the same process (two binaries imported
together) is a no-op when the default agrees and an error when it does not.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

from jaxinv.engine import preimage
from jaxinv.io import arguments, distributed, images, paths, progress
from jaxinv.io.outputs import OutputBusyError

FLAGS = flags.FLAGS
flags.DEFINE_boolean("compilation_cache", True, "keep compiled programs in <cache root>/xla for later runs "
                     "(JAX's persistent compilation cache; --nocompilation_cache turns it off)")
DATA_DIR_HELP = ("the data folder DATA, holding imagenet_samples/ and cifar10/ (default: $JAXINV_DATA, else "
                 "../shared/data beside a checkout; see jaxinv.io.images.data_root)")
IMAGES_DIR_HELP = "folder of images (default: DATA/imagenet_samples, DATA as --data_dir says)"


def _parse_flags(argv):
    """absl's flag parsing, with a bad flag value ending the run like any bad input: `error: ...`, exit code 2."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)


def run(main) -> None:
    """Runs `main` under absl; bad input (a flag that does not parse, ValueError, a file that is missing or cannot
    be read or written: OSError), an optimisation that diverged (FloatingPointError), a busy output folder
    (OutputBusyError) or a missing optional dependency (an ImportError not of jaxinv: scikit-learn, torch...) ends
    it with one line `error: ...` and exit code 2; Ctrl-C with one line and exit code 130. Compiled programs
    persist between runs unless --nocompilation_cache. Progress bars go to stderr (`jaxinv.io.progress`); on a
    terminal, printed lines leave them intact. Quiet by default: INFO logs (orbax's, absl's) only with
    --verbosity=0. A binary that declares the flags of `jaxinv.io.distributed` runs on several processes when
    they (or their environment variables) ask for it: `jax.distributed` is initialised first, and every process
    waits for the others at the end."""
    def guarded(argv):
        progress.quiet_logs()
        progress.show_by_default()  # every long run shows its bars (stderr)
        if "data_dir" in FLAGS:
            images.use_data_dir(FLAGS.data_dir)  # every default data path of the run, not only those passed on
        if FLAGS.compilation_cache:
            from jaxinv.engine import compilation

            compilation.enable_persistent_cache()
        processes = distributed.Processes()
        try:
            if "coordinator_address" in FLAGS and distributed.initialize_from_flags():
                processes = distributed.current()
            with progress.lines_beside_bars():
                result = main(argv)
            processes.barrier("finished")  # several processes end together, after process 0 has written
            return result
        except (ValueError, OSError, FloatingPointError, OutputBusyError) as e:
            _fail(processes, f"error: {' '.join(str(e).split())}", 2)
        except ImportError as e:
            if (e.name or "").split(".")[0] == "jaxinv":
                if processes.several:
                    _fail(processes, None, 1)
                raise  # a broken jaxinv, not a missing optional dependency
            _fail(processes, f"error: {' '.join(str(e).split())}", 2)
        except KeyboardInterrupt:
            _fail(processes, "interrupted", 130)
        except Exception:
            if processes.several:  # the traceback, then this process ends at once
                _fail(processes, None, 1)
            raise
    _help_from(sys.modules[main.__module__])
    app.run(guarded, flags_parser=_parse_flags)


def _fail(processes: distributed.Processes, line: str | None, code: int) -> None:
    """Ends the run with `line` (on stderr) and exit code `code`; a line of None (several processes only): the
    traceback. A process of several exits at once (os._exit): JAX's exit would wait minutes for the others at its
    shutdown barrier, and they learn of the failure from the coordination service (at once when process 0, which
    hosts it, ends; else after its heartbeat timeout)."""
    progress.close_all()
    if line is None:
        import traceback

        traceback.print_exc()
        line = f"process {processes.index} of {processes.count} failed"
    print(line, file=sys.stderr)
    if processes.several:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _help_from(binary) -> None:
    """--help shows `binary`'s docstring and flags even when it is not __main__ (a console script, or a
    `python -m experiments.NAME` forwarder): absl takes both from the main module."""
    main_module = sys.modules["__main__"]
    if binary is main_module:
        return
    main_module.__doc__ = binary.__doc__
    for flag in FLAGS.get_key_flags_for_module(binary.__name__):
        FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def hold_output(path: str, file: bool = False, replaced: bool = False) -> str:
    """Takes the binary's output folder (or with `file`, its output file) for the rest of the run, before any
    computation: a second run writing there is refused naming this one's pid, and an output that cannot be
    written fails now (`jaxinv.io.paths`; `replaced`: a saved network or inverter, written beside the folder and
    renamed, so its parent must be writable too). In a run of several processes (`jaxinv.io.distributed`) process
    0 takes the lock for all of them and the others go on once it is held (or end with its error). Returns `path`."""
    if file:  # with one process `agree` just takes it
        distributed.current().agree(lambda: paths.hold_file(path))
    else:
        distributed.hold_folder(path, replaced=replaced)
    return path


def _define(define, name: str, default, help: str, flag_values=None, **bounds) -> None:
    flag_values = FLAGS if flag_values is None else flag_values
    if name in flag_values:
        if flag_values[name].default != default:
            raise ValueError(f"flag --{name} is already declared with default {flag_values[name].default!r}, "
                             f"not {default!r}")
        return
    define(name, default, help, flag_values=flag_values, **bounds)


def define_output_dir(default: str | None, help: str = "where to write the results", flag_values=None) -> None:
    """--output_dir, each binary with its own default."""
    _define(flags.DEFINE_string, "output_dir", default, help, flag_values)


def define_seed(help: str = "PRNG seed", flag_values=None) -> None:
    """--seed (default 0), an integer in [0, 2^63 - 1]."""
    _define(flags.DEFINE_integer, "seed", 0, help, flag_values, lower_bound=0, upper_bound=arguments.MAX_SEED)


def define_iterations(iterations: int = 300, refine_iterations: int = 50, prefix: str = "", flag_values=None) -> None:
    """--iterations and --refine_iterations (>= 0): the two stages of `preimage.default_stages`."""
    _define(flags.DEFINE_integer, "iterations", iterations, f"{prefix}iterations of the first stage", flag_values,
            lower_bound=0)
    _define(flags.DEFINE_integer, "refine_iterations", refine_iterations,
            f"{prefix}iterations of the second stage at a tenth of the rate", flag_values, lower_bound=0)


def define_restarts(default: int | None, help: str = "random restarts per problem, optimised together (vmapped)",
                    flag_values=None) -> None:
    """--restarts (>= 1, or the binary's default None)."""
    _define(flags.DEFINE_integer, "restarts", default, help, flag_values, lower_bound=1)


def define_data_dir(help: str = DATA_DIR_HELP, flag_values=None) -> None:
    """--data_dir: the data folder (CIFAR-10 and the ImageNet samples), for every binary that reads data; `run`
    makes it the process's data folder (`images.use_data_dir`), ahead of $JAXINV_DATA."""
    _define(flags.DEFINE_string, "data_dir", None, help, flag_values)


def define_images_dir(help: str = IMAGES_DIR_HELP, flag_values=None) -> None:
    """--images_dir: a folder of images in place of the ImageNet samples."""
    _define(flags.DEFINE_string, "images_dir", None, help, flag_values)


def define_net(default: str = "cifar-ref", flag_values=None) -> None:
    """--net: a shipped network name or a converted network directory."""
    _define(flags.DEFINE_string, "net", default,
            "network: a shipped name (cifar-ref) or a converted network directory", flag_values)


def stages(flag_values=None):
    """The two-stage schedule of --iterations and --refine_iterations (a ValueError if either is negative)."""
    values = FLAGS if flag_values is None else flag_values
    if values.iterations < 0 or values.refine_iterations < 0:
        raise ValueError("iterations must be >= 0")
    return preimage.default_stages(values.iterations, values.refine_iterations)


def int_list(name: str, flag_values=None) -> tuple[int, ...]:
    """The list flag --name as integers, or a ValueError naming the flag."""
    value = (FLAGS if flag_values is None else flag_values)[name].value or ()
    try:
        return tuple(int(v) for v in value)
    except ValueError:
        raise ValueError(f"--{name} must be a list of integers; got {','.join(value)}") from None
