"""`python -m experiments.render_features` from a clone: the binary `jaxinv.binaries.render_features` (installed: jaxinv-render-features)."""
from jaxinv.binaries.render_features import run

if __name__ == "__main__":
    run()
