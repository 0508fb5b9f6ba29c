"""`python -m experiments.shallow_table` from a clone: the binary `jaxinv.binaries.shallow_table` (installed: jaxinv-shallow-table)."""
from jaxinv.binaries.shallow_table import run

if __name__ == "__main__":
    run()
