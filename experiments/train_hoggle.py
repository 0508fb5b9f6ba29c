"""`python -m experiments.train_hoggle` from a clone: the binary `jaxinv.binaries.train_hoggle` (installed: jaxinv-train-hoggle)."""
from jaxinv.binaries.train_hoggle import run

if __name__ == "__main__":
    run()
