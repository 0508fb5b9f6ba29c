"""`python -m experiments.train_inverter` from a clone: the binary `jaxinv.binaries.train_inverter` (installed: jaxinv-train-inverter)."""
from jaxinv.binaries.train_inverter import run

if __name__ == "__main__":
    run()
