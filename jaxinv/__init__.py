"""jaxinv: pre-images of image representations in JAX.

Packages, from the bottom up: `engine` (the Representation type, layer graphs, solver, pre-image
optimisation), `objectives` (losses and priors), `features` and `nets` (hand-crafted and network
representations), `representations` (the registry), `adapters` (your own model), `methods`
(inversion, visualisation, texture, templates), `inverters` (learned inverters, HOGgle),
`studies` (the papers' experiments) and `io` (images, data, outputs).
"""
from jaxinv.engine.representation import Representation  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name):
    """`jaxinv.adapters` on first use (it imports the network code; `import jaxinv` stays light)."""
    if name == "adapters":
        import importlib
        return importlib.import_module("jaxinv.adapters")
    raise AttributeError(f"module 'jaxinv' has no attribute {name!r}")
