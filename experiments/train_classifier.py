"""`python -m experiments.train_classifier` from a clone: the binary `jaxinv.binaries.train_classifier` (installed: jaxinv-train-classifier)."""
from jaxinv.binaries.train_classifier import run

if __name__ == "__main__":
    run()
