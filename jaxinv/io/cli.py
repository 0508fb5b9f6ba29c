"""Entry point of jaxinv's command-line programs: absl flags, clear one-line errors for bad input."""
from __future__ import annotations

import sys

from absl import app

from jaxinv.io.outputs import OutputBusyError


def run(main) -> None:
    """Runs `main` under absl; bad input (ValueError, FileNotFoundError), an optimisation that diverged
    (FloatingPointError) or a busy output folder (OutputBusyError) ends it with one line and exit
    code 2; Ctrl-C with one line and exit code 130."""
    def guarded(argv):
        try:
            return main(argv)
        except (ValueError, FileNotFoundError, FloatingPointError, OutputBusyError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
    app.run(guarded)
