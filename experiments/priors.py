"""`python -m experiments.priors` from a clone: the binary `jaxinv.binaries.priors` (installed: jaxinv-priors)."""
from jaxinv.binaries.priors import run

if __name__ == "__main__":
    run()
