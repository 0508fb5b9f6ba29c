"""Receptive field and stride *measured* from the gradient support, and the papers' per-layer rules on them.

For a model with no layer table to derive its geometry from, the input-gradient of one unit says
which pixels it sees: the receptive field is the extent of the non-zero gradient of the centre unit
of the map, the stride the shift of that support between adjacent units. A single gradient can miss
pixels a unit does see (ReLUs dead on the probe, the losing inputs of a max pool), so the support is
the union over several random probe images and over every channel of the unit (random positive
weights: no cancellation but by coincidence). Units whose support touches the image border are
clipped there (`Geometry.clipped`); measure at a larger input size when the model allows it.

`problem_for` mirrors `jaxinv.methods.layer_rules.inversion_problem` on the measured geometry: jitter
T = max(round(stride / 4), 1); C = 1 for codes with no spatial map (the layers past the
convolutional trunk), else by receptive field relative to the input size (`layer_rules.C_RF_THRESHOLDS`,
`layer_rules.C_VALUES`: 300 up to 0.45, 100 up to 0.60, 20 beyond). Unlike the table rule, a spatial map
past the last convolution (a final pooling layer) is ruled by its receptive field, not given C = 1.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.methods import layer_rules
from jaxinv.engine.preimage import Problem, place_weights
from jaxinv.engine.representation import Representation

PROBE_STD = 50.0  # grey levels: probes span the engine's bounded range (B = 80)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Measured geometry of a representation's code at `input_size` (H, W).

    For a code with a spatial map (h, w, c): `receptive_field` and `stride` are (rows, columns) in
    pixels, `box` = (top, left, bottom, right) (exclusive ends) the input pixels seen by the centre
    unit `unit` = (i, j), `clipped` whether that box touches the image border (the field is then a
    lower bound). For other codes (vectors) `spatial` is False, the field is the pixels any unit
    sees and `stride` is None."""
    input_size: tuple[int, int]
    spatial: bool
    receptive_field: tuple[int, int]
    stride: tuple[int, int] | None
    box: tuple[int, int, int, int]
    unit: tuple[int, int] | None
    clipped: bool

    @property
    def relative_field(self) -> float:
        """The receptive field relative to the input size (the larger of rows and columns)."""
        return max(self.receptive_field[0] / self.input_size[0], self.receptive_field[1] / self.input_size[1])


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@functools.lru_cache(maxsize=32)
def _support_fn(representation: Representation):
    """jit of (params, probes (P, H, W, C), cotangents (U, *code)) -> (U, H, W) bool: where any
    probe's input-gradient of each cotangent-weighted code is non-zero. Compiled once per
    representation structure (the weights are an argument)."""
    def support(params, probes, cotangents):
        def one_probe(x):
            _, vjp = jax.vjp(lambda y: representation(y, params), x)
            grads, = jax.vmap(vjp)(cotangents)
            return jnp.any(grads != 0, axis=-1)
        return jnp.any(jax.vmap(one_probe)(probes), axis=0)
    return jax.jit(support)


def _probe_size(representation: Representation, input_size) -> tuple[int, int]:
    size = representation.input_size if input_size is None else input_size
    if size is None:
        raise ValueError(f"representation {representation.name!r} has no fixed input size; pass input_size")
    return (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))


def measure(representation: Representation, input_size=None, *, probes: int = 8, seed: int = 0) -> Geometry:
    """The receptive field and stride of `representation`'s code on images of `input_size`
    (default its own), from the union of the input-gradient supports over `probes` random images."""
    height, width = _probe_size(representation, input_size)
    rng = np.random.default_rng(seed)
    xs = (rng.standard_normal((probes, height, width, representation.channels)) * PROBE_STD).astype(np.float32)
    code = jax.eval_shape(representation, jax.ShapeDtypeStruct(xs.shape[1:], jnp.float32))
    if not isinstance(code, jax.ShapeDtypeStruct):
        raise ValueError(f"representation {representation.name!r} has a structured code; geometry needs an array code")
    shape = tuple(code.shape)
    params = place_weights(representation.params, shard=False)
    support = _support_fn(representation)
    if len(shape) != 3:  # no spatial map: the pixels any unit sees
        cotangent = rng.uniform(0.5, 1.5, (1,) + shape).astype(np.float32)
        mask = np.asarray(support(params, xs, cotangent))[0]
        if not mask.any():
            raise ValueError(f"the code of {representation.name!r} has zero input gradient on every probe")
        box = _extent(mask)
        return Geometry((height, width), False, (box[2] - box[0], box[3] - box[1]), None, box, None,
                        box[0] == 0 or box[1] == 0 or box[2] == height or box[3] == width)
    h, w = shape[0], shape[1]
    i, j = h // 2, w // 2
    di, dj = (1 if i + 1 < h else -1), (1 if j + 1 < w else -1)
    units = [(i, j)] + ([(i + di, j)] if h > 1 else []) + ([(i, j + dj)] if w > 1 else [])
    cotangents = np.zeros((len(units),) + shape, np.float32)
    for k, (a, b) in enumerate(units):
        cotangents[k, a, b] = rng.uniform(0.5, 1.5, shape[2:])
    masks = np.asarray(support(params, xs, cotangents))
    if not masks[0].any():
        raise ValueError(f"the centre unit {units[0]} of {representation.name!r} has zero input gradient on every "
                         "probe (a dead unit or a constant code); give the stride explicitly")
    box = _extent(masks[0])
    clipped = box[0] == 0 or box[1] == 0 or box[2] == height or box[3] == width
    shifted = {units.index(u): u for u in units[1:]}

    def axis_stride(axis: int, length: int, cells: int) -> int:
        index = next((k for k, u in shifted.items() if u[axis] != units[0][axis]), None)
        if index is None or not masks[index].any():
            return max(int(round(length / cells)), 1)  # one cell along this axis: the input per cell
        other = _extent(masks[index])
        low, high = (box[axis], other[axis]), (box[axis + 2], other[axis + 2])
        if min(low) > 0:  # edges clipped by the border do not move with the unit
            return abs(low[1] - low[0])
        if max(high) < length:
            return abs(high[1] - high[0])
        return max(int(round(length / cells)), 1)

    stride = (axis_stride(0, height, h), axis_stride(1, width, w))
    return Geometry((height, width), True, (box[2] - box[0], box[3] - box[1]), stride, box, (i, j), clipped)


def window_support(representation: Representation, window, input_size=None, *, probes: int = 8,
                   seed: int = 0) -> tuple[int, int, int, int]:
    """Input pixels (top, left, bottom, right; exclusive ends) that influence the cells
    `window` = (top, left, bottom, right) of a spatial code: the extent of the union of the
    input-gradient supports of those cells (every channel, random positive weights) over `probes`
    random images. The measured counterpart of `jaxinv.methods.windows.receptive_field_box`."""
    height, width = _probe_size(representation, input_size)
    rng = np.random.default_rng(seed)
    xs = (rng.standard_normal((probes, height, width, representation.channels)) * PROBE_STD).astype(np.float32)
    shape = tuple(jax.eval_shape(representation, jax.ShapeDtypeStruct(xs.shape[1:], jnp.float32)).shape)
    if len(shape) != 3:
        raise ValueError(f"a window needs a spatial map; {representation.name!r} outputs {shape}")
    top, left, bottom, right = (int(v) for v in window)
    if not (0 <= top < bottom <= shape[0] and 0 <= left < right <= shape[1]):
        raise ValueError(f"window {tuple(window)} is not inside the {shape[0]}x{shape[1]} map of {representation.name!r}")
    cotangent = np.zeros((1,) + shape, np.float32)
    cotangent[0, top:bottom, left:right] = rng.uniform(0.5, 1.5, (bottom - top, right - left) + shape[2:])
    mask = np.asarray(_support_fn(representation)(place_weights(representation.params, shard=False), xs, cotangent))[0]
    if not mask.any():
        raise ValueError(f"the window {tuple(window)} of {representation.name!r} has zero input gradient on every probe")
    return _extent(mask)


def stride_of(representation: Representation, input_size=None, **kwargs) -> int | None:
    """The measured stride (the larger of rows and columns), None for codes with no spatial map."""
    geometry = measure(representation, input_size, **kwargs)
    return None if geometry.stride is None else max(geometry.stride)


def measured_C(geometry: Geometry) -> float:
    """The loss weight C of IJCV Sect. 5.2 (`layer_rules.layer_C`'s thresholds) on a measured geometry."""
    if not geometry.spatial:
        return layer_rules.C_VALUES[3]
    for threshold, value in zip(layer_rules.C_RF_THRESHOLDS, layer_rules.C_VALUES):
        if geometry.relative_field <= threshold:
            return value
    return layer_rules.C_VALUES[2]


def jitter_for(stride: int) -> int:
    """Jitter amount T = max(round(stride / 4), 1) (IJCV Sect. 5.2, as `layer_rules.layer_jitter`)."""
    return max(int(round(stride / 4)), 1)


def problem_for(representation: Representation, *, C: float | None = None, jitter: bool = True,
                loss: str = "inversion", input_size=None, geometry: Geometry | None = None) -> Problem:
    """IJCV Eq. 1 for inverting any representation without a layer table: the Sect. 3.3 defaults
    with C and jitter by the per-layer rules on the measured geometry (`C` overrides the rule;
    `jitter=False` sets T = 1). Mirrors `jaxinv.methods.layer_rules.inversion_problem`. The jitter uses the
    measured stride, or the representation's own for codes with no spatial map."""
    geometry = measure(representation, input_size) if geometry is None else geometry
    stride = max(geometry.stride) if geometry.stride is not None else representation.stride
    return Problem(loss=loss, C=measured_C(geometry) if C is None else float(C),
                   jitter=jitter_for(stride) if jitter else 1)
