"""`python -m experiments.deep_studies` from a clone: the binary `jaxinv.binaries.deep_studies` (installed: jaxinv-deep-studies)."""
from jaxinv.binaries.deep_studies import run

if __name__ == "__main__":
    run()
