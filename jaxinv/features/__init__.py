"""Hand-crafted image representations as differentiable JAX layer tables."""
from jaxinv.features.hog import hog, hog_layers, hog_shape
from jaxinv.features.render import render_hog

__all__ = ["hog", "hog_layers", "hog_shape", "render_hog"]
