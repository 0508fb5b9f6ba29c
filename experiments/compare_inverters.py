"""`python -m experiments.compare_inverters` from a clone: the binary `jaxinv.binaries.compare_inverters` (installed: jaxinv-compare-inverters)."""
from jaxinv.binaries.compare_inverters import run

if __name__ == "__main__":
    run()
