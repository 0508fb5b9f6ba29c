"""ctypes access to Debian's libvlfeat1 (VLFeat 0.9.21), the numerical reference.

Used by the tests and benchmarks to compare jaxinv's graphs with VLFeat, and by the learned
inverters for SIFT keypoints. No compiled extension: the shared library is loaded at run time.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob


class VLFeatUnavailable(RuntimeError):
    pass


INSTALL_HINT = "install Debian's libvlfeat1 (`apt-get install libvlfeat1`, as root) to enable it"


@functools.lru_cache(maxsize=None)
def library() -> ctypes.CDLL:
    """The loaded libvl; raises VLFeatUnavailable with an install hint when it is missing."""
    candidates = [ctypes.util.find_library("vl")] + sorted(glob.glob("/usr/lib/*/libvl.so*"))
    for path in filter(None, candidates):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise VLFeatUnavailable(f"VLFeat shared library (libvl.so) not found; {INSTALL_HINT}")


def declared(signatures: dict) -> ctypes.CDLL:
    """`library()` with each named function's C signature set: {name: (restype, [argtypes])}."""
    lib = library()
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


def float_pointer(array) -> ctypes.POINTER(ctypes.c_float):
    """A float* to a C-contiguous float32 numpy array's data."""
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def available() -> bool:
    try:
        library()
        return True
    except VLFeatUnavailable:
        return False
