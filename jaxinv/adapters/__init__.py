"""Any JAX model as a Representation with named, discoverable taps (issue #11, item 1).

    model = adapters.from_linen(module, variables, input_size=32)   # or from_nnx, from_equinox, from_function
    model.layers()                     # {tap: output shape} at the input size
    rep = model.representation("Conv_1")   # a Representation: weights are its params
    problem = adapters.problem_for(rep)    # the per-layer C and jitter rules on the measured geometry

The input convention (`input_convention`: channels, channel order, pixel range, mean, std; default
RGB in [0, 1] with ImageNet's mean and std) is stated once at wrapping. Frameworks are imported
only when their adapter is used.
"""
from jaxinv.adapters.core import IMAGENET, IMAGENET_GREY, TapCode, TappedModel, input_convention  # noqa: F401
from jaxinv.adapters.geometry import Geometry, measure, measured_C, jitter_for, problem_for  # noqa: F401


def from_linen(module, variables, **kwargs) -> TappedModel:
    from jaxinv.adapters import linen
    return linen.from_linen(module, variables, **kwargs)


def from_nnx(module, **kwargs) -> TappedModel:
    from jaxinv.adapters import nnx
    return nnx.from_nnx(module, **kwargs)


def from_equinox(model, **kwargs) -> TappedModel:
    from jaxinv.adapters import equinox
    return equinox.from_equinox(model, **kwargs)


def from_function(apply, params, **kwargs) -> TappedModel:
    from jaxinv.adapters import function
    return function.from_function(apply, params, **kwargs)


for _f, _m in ((from_linen, "linen"), (from_nnx, "nnx"), (from_equinox, "equinox"), (from_function, "function")):
    _f.__doc__ = f"See jaxinv.adapters.{_m}.{_f.__name__}."
