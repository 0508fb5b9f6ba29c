from jaxinv.features.dsift import dsift, dsift_layers  # noqa: F401
from jaxinv.features.render_dsift import render_dsift  # noqa: F401
