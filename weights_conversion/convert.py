"""`python -m weights_conversion.convert` from a clone: the binary `jaxinv.binaries.convert`
(installed: jaxinv-convert)."""
from jaxinv.binaries.convert import run

if __name__ == "__main__":
    run()
