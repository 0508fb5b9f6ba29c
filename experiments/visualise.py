"""`python -m experiments.visualise` from a clone: the binary `jaxinv.binaries.visualise` (installed: jaxinv-visualise)."""
from jaxinv.binaries.visualise import run

if __name__ == "__main__":
    run()
