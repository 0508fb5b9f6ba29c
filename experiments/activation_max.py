"""`python -m experiments.activation_max` from a clone: the binary `jaxinv.binaries.activation_max` (installed: jaxinv-activation-max)."""
from jaxinv.binaries.activation_max import run

if __name__ == "__main__":
    run()
