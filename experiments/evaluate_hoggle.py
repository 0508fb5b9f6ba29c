"""`python -m experiments.evaluate_hoggle` from a clone: the binary `jaxinv.binaries.evaluate_hoggle` (installed: jaxinv-evaluate-hoggle)."""
from jaxinv.binaries.evaluate_hoggle import run

if __name__ == "__main__":
    run()
