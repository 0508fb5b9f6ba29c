"""ctypes binding of VLFeat 0.9.21's SIFT detector and descriptor (`vl/sift.h`), as `vl_sift` runs it.

`vlfeat_sift(image)` follows the MATLAB driver (toolbox/sift/vl_sift.c) with its defaults:
3 levels per octave, first octave 0, as many octaves as the image allows (libvl picks
max(floor(log2(min(H, W))) - 3, 1)), peak threshold 0, edge threshold 10, norm threshold 0,
magnification 3, window size 2. The octaves are processed in turn; after `vl_sift_detect` every
keypoint gets up to four orientations from `vl_sift_calc_keypoint_orientations`, and each
orientation is a separate frame with its own descriptor, in libvl's order.

Conventions (those of vl_sift on a MATLAB image, re-expressed for a row-major array):

- input: a grey (H, W) or (H, W, 1) image, float, pixel values in [0, 255] (what VLFeat's
  examples pass, `single(rgb2gray(I))`; the driver does not rescale). With a zero peak threshold
  and a scale-free edge test, the detections do not depend on the range.
- frames: (N, 4) float64 rows (x, y, scale, angle). x is the column and y the row, in pixels,
  0-based (MATLAB's frames are these plus 1); scale is the keypoint's sigma in pixels of the
  input image; angle is in radians in [0, 2 pi), measured from +x towards +y (y pointing down),
  which is what MATLAB's `pi/2 - angle` of the transposed image amounts to.
- descriptors: (N, 128) float32, component `t + 8 (bx + 4 by)` for orientation bin t (angle of
  the bin 2 pi t / 8 relative to the frame's angle), spatial bin column bx and row by, the order
  vl_sift returns after its `transpose_descriptor` undoes MATLAB's transposition. libvl's
  descriptor d is L2-normalised, clamped at 0.2 and normalised again; by default it is converted
  as the driver's default uint8 output, floor(min(512 d, 255)) (integers in [0, 255], returned as
  float32); `float_descriptors=True` gives the driver's 'FloatDescriptors' values, 512 d.
  A keypoint too close to the border for libvl's descriptor bounds check (libvl leaves the
  buffer untouched there) gets an all-zero descriptor.

The filter's setters and getters are inline in sift.h and not exported by libvl, so the filter
struct is mirrored here and the thresholds are written to it directly, as the setters do.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from jaxinv import vlfeat

DESCRIPTOR_SIZE = 128
MAX_ORIENTATIONS = 4
LEVELS_PER_OCTAVE = 3
FIRST_OCTAVE = 0
PEAK_THRESHOLD = 0.0
EDGE_THRESHOLD = 10.0
MIN_SIDE = 8  # smallest image side accepted (libvl makes one octave of it)


class VlSiftKeypoint(ctypes.Structure):
    _fields_ = [("o", ctypes.c_int), ("ix", ctypes.c_int), ("iy", ctypes.c_int), ("is_", ctypes.c_int),
                ("x", ctypes.c_float), ("y", ctypes.c_float), ("s", ctypes.c_float), ("sigma", ctypes.c_float)]


class VlSiftFilt(ctypes.Structure):
    _fields_ = [
        ("sigman", ctypes.c_double), ("sigma0", ctypes.c_double),
        ("sigmak", ctypes.c_double), ("dsigma0", ctypes.c_double),
        ("width", ctypes.c_int), ("height", ctypes.c_int), ("O", ctypes.c_int), ("S", ctypes.c_int),
        ("o_min", ctypes.c_int), ("s_min", ctypes.c_int), ("s_max", ctypes.c_int), ("o_cur", ctypes.c_int),
        ("temp", ctypes.POINTER(ctypes.c_float)), ("octave", ctypes.POINTER(ctypes.c_float)),
        ("dog", ctypes.POINTER(ctypes.c_float)),
        ("octave_width", ctypes.c_int), ("octave_height", ctypes.c_int),
        ("gaussFilter", ctypes.POINTER(ctypes.c_float)), ("gaussFilterSigma", ctypes.c_double),
        ("gaussFilterWidth", ctypes.c_size_t),
        ("keys", ctypes.POINTER(VlSiftKeypoint)), ("nkeys", ctypes.c_int), ("keys_res", ctypes.c_int),
        ("peak_thresh", ctypes.c_double), ("edge_thresh", ctypes.c_double), ("norm_thresh", ctypes.c_double),
        ("magnif", ctypes.c_double), ("windowSize", ctypes.c_double),
        ("grad", ctypes.POINTER(ctypes.c_float)), ("grad_o", ctypes.c_int),
    ]


@functools.lru_cache(maxsize=None)
def _sift_library() -> ctypes.CDLL:
    """libvl with the exported SIFT functions' signatures declared."""
    handle, fptr = ctypes.POINTER(VlSiftFilt), ctypes.POINTER(ctypes.c_float)
    keypoint = ctypes.POINTER(VlSiftKeypoint)
    signatures = {
        "vl_sift_new": (handle, [ctypes.c_int] * 5),
        "vl_sift_delete": (None, [handle]),
        "vl_sift_process_first_octave": (ctypes.c_int, [handle, fptr]),
        "vl_sift_process_next_octave": (ctypes.c_int, [handle]),
        "vl_sift_detect": (None, [handle]),
        "vl_sift_calc_keypoint_orientations": (ctypes.c_int, [handle, ctypes.POINTER(ctypes.c_double), keypoint]),
        "vl_sift_calc_keypoint_descriptor": (None, [handle, fptr, keypoint, ctypes.c_double]),
    }
    return vlfeat.declared(signatures)


def grey_array(image) -> np.ndarray:
    """A validated (H, W) float32 C-order copy of a grey (H, W) or (H, W, 1) image."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(f"SIFT needs a grey (H, W) or (H, W, 1) image; got shape {image.shape}")
    if min(image.shape) < MIN_SIDE:
        raise ValueError(
            f"image of shape {image.shape} is too small for SIFT: need at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains non-finite values (NaN or inf)")
    return np.ascontiguousarray(image, np.float32)


def vlfeat_sift(image, *, float_descriptors: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints of a grey image in [0, 255]: frames (N, 4) (x, y, scale, angle), descriptors (N, 128).

    Raises ValueError for a non-grey, too small or non-finite image and VLFeatUnavailable when
    libvl is missing. See the module docstring for units and the descriptor scaling.
    """
    image = grey_array(image)
    height, width = image.shape
    lib = _sift_library()
    handle = lib.vl_sift_new(width, height, -1, LEVELS_PER_OCTAVE, FIRST_OCTAVE)
    if not handle:
        raise MemoryError("vl_sift_new failed")
    frames, descriptors = [], []
    try:
        filt = handle.contents
        filt.peak_thresh, filt.edge_thresh = PEAK_THRESHOLD, EDGE_THRESHOLD
        angles = (ctypes.c_double * MAX_ORIENTATIONS)()
        descriptor = np.zeros(DESCRIPTOR_SIZE, np.float32)
        descriptor_pointer = descriptor.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        status = lib.vl_sift_process_first_octave(handle, image.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        while status == 0:
            lib.vl_sift_detect(handle)
            for i in range(filt.nkeys):
                keypoint = ctypes.pointer(filt.keys[i])
                num_angles = lib.vl_sift_calc_keypoint_orientations(handle, angles, keypoint)
                for angle in angles[:num_angles]:
                    descriptor[:] = 0
                    lib.vl_sift_calc_keypoint_descriptor(handle, descriptor_pointer, keypoint, angle)
                    key = filt.keys[i]
                    frames.append((key.x, key.y, key.sigma, angle))
                    descriptors.append(descriptor.copy())
            status = lib.vl_sift_process_next_octave(handle)
    finally:
        lib.vl_sift_delete(handle)
    frames = np.array(frames, np.float64).reshape(-1, 4)
    descriptors = 512.0 * np.array(descriptors, np.float32).reshape(-1, DESCRIPTOR_SIZE)
    if not float_descriptors:
        descriptors = np.floor(np.minimum(descriptors, 255.0))
    return frames, descriptors.astype(np.float32)
