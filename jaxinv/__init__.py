"""jaxinv: pre-images of image representations in JAX."""
from jaxinv import graph, images  # noqa: F401

__version__ = "0.1.0"
