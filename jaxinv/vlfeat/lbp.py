"""ctypes binding of VLFeat's local binary patterns (`vl/lbp.h`): the reference for jaxinv's LBP.

`vlfeat_lbp(image, cell_size)` runs `vl_lbp_new(VlLbpUniform, transposed=false)` and
`vl_lbp_process` on a row-major (H, W) grey image in [0, 255] and returns the
(H // cell_size, W // cell_size, 58) histograms with x (the second axis) the column index.

MATLAB's `vl_lbp` passes its column-major array as a row-major image of width H, that is the
transposed image, and asks libvl for transposed patterns so that the codes still describe the
untransposed image; a row-major caller needs neither. libvl accumulates into the caller's
buffer, so the buffer is zeroed first (as MATLAB's `mxCreateNumericArray` does).
"""
from __future__ import annotations

import ctypes
import functools
import numbers

import numpy as np

from jaxinv import vlfeat

# enum VlLbpMappingType { VlLbpUniform }
VL_LBP_UNIFORM = 0


class VlLbp(ctypes.Structure):
    """VLFeat 0.9.21's `VlLbp` (read only by the tests, to check the uniform-pattern table)."""
    _fields_ = [("dimension", ctypes.c_size_t), ("mapping", ctypes.c_uint8 * 256), ("transposed", ctypes.c_int)]


@functools.lru_cache(maxsize=None)
def _lbp_library() -> ctypes.CDLL:
    """libvl with the LBP functions' signatures declared (vl_size is size_t, vl_bool int)."""
    handle, size, fptr = ctypes.POINTER(VlLbp), ctypes.c_size_t, ctypes.POINTER(ctypes.c_float)
    signatures = {
        "vl_lbp_new": (handle, [ctypes.c_int, ctypes.c_int]),
        "vl_lbp_delete": (None, [handle]),
        "vl_lbp_get_dimension": (size, [handle]),
        "vl_lbp_process": (None, [handle, fptr, fptr, size, size, size]),
    }
    return vlfeat.declared(signatures)


def check_lbp_input(image, cell_size) -> tuple[int, int, int]:
    """(height, width, cell_size) of a valid LBP input; ValueError naming the problem otherwise."""
    if isinstance(cell_size, bool) or not isinstance(cell_size, numbers.Integral) or cell_size <= 0:
        raise ValueError(f"cell_size must be a positive integer; got {cell_size!r}")
    shape = tuple(np.shape(image))
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) != 2:
        raise ValueError(f"LBP needs a grey (H, W) or (H, W, 1) image; got shape {shape}")
    if shape[0] < cell_size or shape[1] < cell_size:
        raise ValueError(f"image of shape {shape} is smaller than one LBP cell of {cell_size}x{cell_size} pixels")
    return shape[0], shape[1], int(cell_size)


def uniform_mapping(transposed: bool = False) -> np.ndarray:
    """libvl's table from the 256 8-bit codes to the 58 uniform-pattern indices (uint8)."""
    lib = _lbp_library()
    lbp = lib.vl_lbp_new(VL_LBP_UNIFORM, int(bool(transposed)))
    if not lbp:
        raise MemoryError("vl_lbp_new failed")
    try:
        return np.array(lbp.contents.mapping[:], np.uint8)
    finally:
        lib.vl_lbp_delete(lbp)


def vlfeat_lbp(image, cell_size: int = 16) -> np.ndarray:
    """VLFeat's uniform LBP histograms (H // cell, W // cell, 58) of a grey image in [0, 255].

    Raises ValueError for a non-grey image, an image smaller than one cell or a bad cell size,
    and VLFeatUnavailable when libvl is missing.
    """
    height, width, cell_size = check_lbp_input(image, cell_size)
    image = np.ascontiguousarray(np.reshape(np.asarray(image, np.float32), (height, width)))
    lib = _lbp_library()
    lbp = lib.vl_lbp_new(VL_LBP_UNIFORM, 0)
    if not lbp:
        raise MemoryError("vl_lbp_new failed")
    try:
        dimension = lib.vl_lbp_get_dimension(lbp)
        features = np.zeros((dimension, height // cell_size, width // cell_size), np.float32)
        lib.vl_lbp_process(lbp, vlfeat.float_pointer(features), vlfeat.float_pointer(image), width, height, cell_size)
    finally:
        lib.vl_lbp_delete(lbp)
    return np.ascontiguousarray(np.moveaxis(features, 0, 2))
