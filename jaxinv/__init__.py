"""jaxinv: pre-images of image representations in JAX.

Packages, from the bottom up: `engine` (the Representation type, layer graphs, solver, pre-image
optimisation), `objectives` (losses and priors), `features` and `nets` (hand-crafted and network
representations), `representations` (the registry), `adapters` (your own model), `methods`
(inversion, visualisation, texture, templates), `inverters` (learned inverters, HOGgle),
`studies` (the papers' experiments) and `io` (images, data, outputs); `models` answers what the
methods ask of any model, and `api` is the one-call front: `jaxinv.invert`, `jaxinv.maximise`,
`jaxinv.caricature`.
"""
from jaxinv.engine.representation import Representation  # noqa: F401

__version__ = "0.1.0"


_API = ("invert", "maximise", "caricature", "Result")
_SUBMODULES = ("adapters", "api", "engine", "features", "inverters", "io", "methods", "models", "nets", "objectives",
               "representations", "studies", "vlfeat")


def __getattr__(name):
    """The one-call API (`jaxinv.invert`, `maximise`, `caricature`: `jaxinv.api`) and the subpackages
    (`jaxinv.features.hog`, ...) on first use, so `import jaxinv` stays light and is all a user needs."""
    import importlib
    if name in _API:
        return getattr(importlib.import_module("jaxinv.api"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"jaxinv.{name}")
    raise AttributeError(f"module 'jaxinv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API) | set(_SUBMODULES))
