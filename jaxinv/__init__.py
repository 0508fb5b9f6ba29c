"""jaxinv: pre-images of image representations in JAX."""
from jaxinv import graph, images  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name):
    """`jaxinv.adapters` on first use (it imports the network code; `import jaxinv` stays light)."""
    if name == "adapters":
        import importlib
        return importlib.import_module("jaxinv.adapters")
    raise AttributeError(f"module 'jaxinv' has no attribute {name!r}")
