"""`python -m experiments.invert` from a clone: the binary `jaxinv.binaries.invert` (installed: jaxinv-invert)."""
from jaxinv.binaries.invert import run

if __name__ == "__main__":
    run()
