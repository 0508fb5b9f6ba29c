"""ctypes binding of VLFeat 0.9.21's dense SIFT (vl/dsift.h), flat-window ("fast") variant.

The filter's setters and getters are inline in dsift.h and not exported by libvl, so the
filter struct is mirrored here and its fields are set directly, followed by the exported
_vl_dsift_update_buffers, as the inline setters do.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from jaxinv import vlfeat


class VlDsiftKeypoint(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double),
                ("s", ctypes.c_double), ("norm", ctypes.c_double)]


class VlDsiftDescriptorGeometry(ctypes.Structure):
    _fields_ = [("numBinT", ctypes.c_int), ("numBinX", ctypes.c_int), ("numBinY", ctypes.c_int),
                ("binSizeX", ctypes.c_int), ("binSizeY", ctypes.c_int)]


class VlDsiftFilter(ctypes.Structure):
    _fields_ = [
        ("imWidth", ctypes.c_int), ("imHeight", ctypes.c_int),
        ("stepX", ctypes.c_int), ("stepY", ctypes.c_int),
        ("boundMinX", ctypes.c_int), ("boundMinY", ctypes.c_int),
        ("boundMaxX", ctypes.c_int), ("boundMaxY", ctypes.c_int),
        ("geom", VlDsiftDescriptorGeometry),
        ("useFlatWindow", ctypes.c_int),
        ("windowSize", ctypes.c_double),
        ("numFrames", ctypes.c_int), ("descrSize", ctypes.c_int),
        ("frames", ctypes.POINTER(VlDsiftKeypoint)),
        ("descrs", ctypes.POINTER(ctypes.c_float)),
        ("numBinAlloc", ctypes.c_int), ("numFrameAlloc", ctypes.c_int), ("numGradAlloc", ctypes.c_int),
        ("grads", ctypes.POINTER(ctypes.POINTER(ctypes.c_float))),
        ("convTmp1", ctypes.POINTER(ctypes.c_float)), ("convTmp2", ctypes.POINTER(ctypes.c_float)),
    ]


@functools.lru_cache(maxsize=None)
def _dsift_library() -> ctypes.CDLL:
    """libvl with the exported dsift entry points' signatures declared."""
    handle = ctypes.POINTER(VlDsiftFilter)
    return vlfeat.declared({
        "vl_dsift_new_basic": (handle, [ctypes.c_int] * 4),
        "_vl_dsift_update_buffers": (None, [handle]),
        "vl_dsift_process": (None, [handle, ctypes.POINTER(ctypes.c_float)]),
        "vl_dsift_delete": (None, [handle]),
    })


def vlfeat_dsift(image, bin_size: int = 8, step: int = 8, window_size: float = 2.0):
    """VLFeat flat-window dense SIFT of a grey (H, W) image.

    Returns frames (N, 2) as (x, y) descriptor centres in pixels, descriptors (N, 128) float32
    and norms (N,) (VLFeat's `frame.norm`: the raw descriptor's sum over the frame area), frames
    in VLFeat's y-major order. Raises VLFeatUnavailable when libvl is missing.
    """
    lib = _dsift_library()
    image = np.ascontiguousarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"vlfeat_dsift needs a grey (H, W) image; got shape {image.shape}")
    height, width = image.shape
    handle = lib.vl_dsift_new_basic(width, height, step, bin_size)
    if not handle:
        raise MemoryError("vl_dsift_new_basic returned NULL")
    try:
        filt = handle.contents
        filt.useFlatWindow = 1
        filt.windowSize = window_size
        lib._vl_dsift_update_buffers(handle)
        lib.vl_dsift_process(handle, vlfeat.float_pointer(image))
        num_frames, descr_size = filt.numFrames, filt.descrSize
        if num_frames == 0:
            return np.zeros((0, 2)), np.zeros((0, descr_size), np.float32), np.zeros((0,))
        descriptors = np.ctypeslib.as_array(filt.descrs, shape=(num_frames, descr_size)).copy()
        keypoints = np.ctypeslib.as_array(
            ctypes.cast(filt.frames, ctypes.POINTER(ctypes.c_double)), shape=(num_frames, 4)).copy()
    finally:
        lib.vl_dsift_delete(handle)
    return keypoints[:, :2], descriptors, keypoints[:, 3]
