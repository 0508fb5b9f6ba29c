"""Hand-crafted image representations as differentiable JAX layer tables (images in [0, 255])."""
from jaxinv.features.dsift import dsift, dsift_layers
from jaxinv.features.hog import approximate_hog, approximate_hog_layers, hog, hog_layers, hog_shape
from jaxinv.features.lbp import lbp, lbp_layers
from jaxinv.features.render import render_hog
from jaxinv.features.render_dsift import render_dsift

__all__ = ["approximate_hog", "approximate_hog_layers", "dsift", "dsift_layers", "hog", "hog_layers", "hog_shape",
           "lbp", "lbp_layers", "render_dsift", "render_hog"]
