"""Hand-crafted image representations (images in [0, 255]).

HOG and DSIFT are differentiable JAX layer tables; LBP is a JAX layer table too, piecewise
constant (no gradient); sparse SIFT is a numpy grid of VLFeat SIFT keypoints.
"""
from jaxinv.features.dsift import dsift, dsift_layers
from jaxinv.features.hog import approximate_hog, batched_hog, approximate_hog_layers, hog, hog_layers, hog_shape
from jaxinv.features.lbp import lbp, lbp_layers
from jaxinv.features.render import render_hog
from jaxinv.features.render_dsift import render_dsift
from jaxinv.features.sparse_sift import sift_grid, sparse_sift

__all__ = ["approximate_hog", "batched_hog", "approximate_hog_layers", "dsift", "dsift_layers", "hog", "hog_layers", "hog_shape",
           "lbp", "lbp_layers", "render_dsift", "render_hog", "sift_grid", "sparse_sift"]
