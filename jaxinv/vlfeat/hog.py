"""ctypes binding of VLFeat's HOG (`vl/hog.h`), UoCTTI variant: the reference for jaxinv's HOG.

Images are (H, W) or (H, W, C) arrays in [0, 255]; the result is (hogH, hogW, 3n + 4) with
VLFeat's component order (2n directed, n undirected, 4 texture).
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from jaxinv import vlfeat

# enum VlHogVariant_ { VlHogVariantDalalTriggs, VlHogVariantUoctti }
VL_HOG_VARIANT_UOCTTI = 1


@functools.lru_cache(maxsize=None)
def _hog_library() -> ctypes.CDLL:
    """libvl with the HOG functions' signatures declared (vl_size is size_t, vl_bool int)."""
    handle, size, fptr = ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_float)
    signatures = {
        "vl_hog_new": (handle, [ctypes.c_int, size, ctypes.c_int]),
        "vl_hog_delete": (None, [handle]),
        "vl_hog_set_use_bilinear_orientation_assignments": (None, [handle, ctypes.c_int]),
        "vl_hog_put_image": (None, [handle, fptr, size, size, size, size]),
        "vl_hog_get_width": (size, [handle]),
        "vl_hog_get_height": (size, [handle]),
        "vl_hog_get_dimension": (size, [handle]),
        "vl_hog_extract": (None, [handle, fptr]),
    }
    return vlfeat.declared(signatures)


def vlfeat_hog(image, cell_size: int, *, bilinear: bool = False, num_orientations: int = 9) -> np.ndarray:
    """VLFeat's UoCTTI HOG of `image`; raises VLFeatUnavailable when libvl is missing."""
    if isinstance(cell_size, bool) or not isinstance(cell_size, (int, np.integer)) or cell_size <= 0:
        raise ValueError(f"cell_size must be a positive integer; got {cell_size!r}")
    image = np.asarray(image, np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C); got shape {image.shape}")
    planes = image[None] if image.ndim == 2 else np.moveaxis(image, 2, 0)
    num_channels, height, width = planes.shape
    # vl_hog asserts (aborting the process) on images this small: refuse them here instead.
    if min(height, width) <= 3 or min(height, width) + cell_size // 2 < cell_size:
        raise ValueError(f"image of shape {image.shape} is too small for VLFeat HOG with cell size {cell_size}")
    planes = np.ascontiguousarray(planes)

    lib = _hog_library()
    hog = lib.vl_hog_new(VL_HOG_VARIANT_UOCTTI, num_orientations, 0)
    if not hog:
        raise MemoryError("vl_hog_new failed")
    try:
        lib.vl_hog_set_use_bilinear_orientation_assignments(hog, int(bool(bilinear)))
        lib.vl_hog_put_image(hog, vlfeat.float_pointer(planes), width, height, num_channels, cell_size)
        shape = (lib.vl_hog_get_dimension(hog), lib.vl_hog_get_height(hog), lib.vl_hog_get_width(hog))
        features = np.zeros(shape, np.float32)
        lib.vl_hog_extract(hog, vlfeat.float_pointer(features))
    finally:
        lib.vl_hog_delete(hog)
    return np.ascontiguousarray(np.moveaxis(features, 0, 2))
