"""Entry point of jaxinv's command-line programs: absl flags, clear one-line errors for bad input."""
from __future__ import annotations

import sys

from absl import app

from jaxinv.outputs import OutputBusyError


def run(main) -> None:
    """Runs `main` under absl; a ValueError/FileNotFoundError (bad input) or an OutputBusyError ends it with its
    message, exit code 2."""
    def guarded(argv):
        try:
            return main(argv)
        except (ValueError, FileNotFoundError, OutputBusyError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    app.run(guarded)
