"""Hand-crafted image representations as differentiable JAX layer tables."""
from jaxinv.features.hog import approximate_hog, approximate_hog_layers, hog, hog_layers, hog_shape
from jaxinv.features.render import render_hog

__all__ = ["approximate_hog", "approximate_hog_layers", "hog", "hog_layers", "hog_shape", "render_hog"]
