"""`python -m experiments.inverter_studies` from a clone: the binary `jaxinv.binaries.inverter_studies` (installed: jaxinv-inverter-studies)."""
from jaxinv.binaries.inverter_studies import run

if __name__ == "__main__":
    run()
