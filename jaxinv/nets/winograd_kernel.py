"""Winograd F(2x2, 3x3) convolution as an XLA CPU custom call: `kernels/winograd.cc`, built on first use.

`layers.winograd_conv3x3` writes Winograd's transforms as XLA operations, so XLA stores the transformed tiles
(4x the input) and the 16 products (4x the output) in memory between separate loops; on maps of 56x56 and
larger, or with fewer than 256 channels, that traffic costs more than the 2.25x fewer multiplications save. The
custom call transforms a block of tiles into a buffer that stays in cache while its 16 matmuls run (register-
blocked AVX-512 or AVX2 kernels) and turns the products into output pixels right after (docs/performance.md).

It needs Linux on x86-64 with AVX-512 (AVX2 and FMA with JAXINV_FUSED_WINOGRAD=1) and a C++17 compiler ($CXX,
else c++): the library is compiled once per source, compiler, jaxlib and CPU into <cache root>/kernels and
loaded from there afterwards. Where any of that is missing, `available()` is False, `unavailable_reason()` says
why, and `layers.conv2d` uses XLA's convolutions. JAXINV_FUSED_WINOGRAD=0 turns it off.

Why AVX-512 by default: on the AVX-512 CPU it was measured on, VGG-16's step to conv5_3 took 0.71x PyTorch's
time with the AVX-512 build and 0.90x with the AVX2 build, no better than XLA's own convolutions (0.91x); on a
CPU with AVX2 only it was not measured (docs/performance.md).

Units: float32 NHWC input, HWIO kernel, as `layers.conv2d`; results agree with XLA's direct convolution to
float32 rounding (~1e-6 relative).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess

import jax
import jax.numpy as jnp
import jaxlib
from jax import lax

from jaxinv.io import cache, outputs

SOURCE = os.path.join(os.path.dirname(__file__), "kernels", "winograd.cc")
COMPILE_FLAGS = ("-O3", "-std=c++17", "-march=native", "-fPIC", "-shared")
"""-march=native: AVX-512 where the CPU has it (an 8x32 register block instead of AVX2's 6x16), so the library is
keyed by the CPU too."""
_TARGET, _KERNEL_TARGET = "jaxinv_winograd", "jaxinv_winograd_kernel"
_panel = 0
"""Output channels per packed kernel panel, the register block's width in the built library (32 with AVX-512,
else 16); set when it is loaded."""


def _cpu_description() -> str:
    """The first processor's model name and flags in /proc/cpuinfo ("" where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))]
    except OSError:
        return ""
    return "".join(sorted(set(lines)))


def _cpu_problem(avx2_allowed: bool) -> str | None:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"needs Linux on x86-64 (this is {platform.system()} on {platform.machine()})"
    flags = next((line.split(":", 1)[1].split() for line in _cpu_description().splitlines()
                  if line.startswith("flags")), [])
    missing = [flag for flag in ("avx2", "fma") if flag not in flags]
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    if "avx512f" not in flags and not avx2_allowed:
        return "the CPU lacks AVX-512, where it was not measured to win (JAXINV_FUSED_WINOGRAD=1 uses AVX2)"
    return None


def find_compiler() -> str | None:
    """The C++ compiler to build with: $CXX, else c++, else g++ (a path, or None when there is none)."""
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")


def library_path(compiler: str) -> str:
    """<cache root>/kernels/winograd-<hash>.so, the hash over the source, the flags, the compiler's version,
    jaxlib's (whose FFI headers it is compiled against) and the CPU's model and flags (-march=native)."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256()
    for part in (open(SOURCE, "rb").read(), " ".join(COMPILE_FLAGS).encode(), version.encode(),
                 jaxlib.__version__.encode(), _cpu_description().encode()):
        digest.update(part)
    return os.path.join(cache.cache_root(), "kernels", f"winograd-{digest.hexdigest()[:16]}.so")


def build(compiler: str) -> str:
    """Compiles kernels/winograd.cc unless its library is in the cache already; returns the library's path."""
    path = library_path(compiler)
    if not os.path.exists(path):
        def compile_to(tmp):
            command = [compiler, *COMPILE_FLAGS, f"-I{jax.ffi.include_dir()}", SOURCE, "-o", tmp]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
        outputs.atomic_write(path, compile_to, ".so")
    return path


@functools.cache
def _load() -> str | None:
    """Builds, loads and registers the custom calls once per process; None when done, else why not."""
    choice = os.environ.get("JAXINV_FUSED_WINOGRAD", "")
    if choice == "0":
        return "turned off by JAXINV_FUSED_WINOGRAD=0"
    problem = _cpu_problem(avx2_allowed=choice == "1")
    if problem:
        return problem
    compiler = find_compiler()
    if compiler is None:
        return "no C++ compiler found ($CXX, c++ or g++)"
    try:
        library = ctypes.cdll.LoadLibrary(build(compiler))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        return f"building {SOURCE} failed: {error}"
    library.JaxinvWinogradPanel.restype = ctypes.c_int64
    global _panel
    _panel = library.JaxinvWinogradPanel()
    jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(library.JaxinvWinograd), platform="cpu")
    jax.ffi.register_ffi_target(_KERNEL_TARGET, jax.ffi.pycapsule(library.JaxinvWinogradKernel), platform="cpu")
    return None


def available() -> bool:
    """Whether the custom call can run here (building it on the first call)."""
    return _load() is None


def unavailable_reason() -> str | None:
    return _load()


def transformed_kernel(w, flip: bool = False):
    """(16, ceil(K/P), C, P): G g G^T of the 3x3 kernel w (3, 3, C, K), packed in panels of P output channels
    (`_panel`). flip: that of the input gradient's kernel, w rotated by 180 degrees with C and K swapped."""
    if not available():
        raise RuntimeError(f"the Winograd custom call cannot run here: {unavailable_reason()}")
    c, k = (w.shape[3], w.shape[2]) if flip else (w.shape[2], w.shape[3])
    shape = (*w.shape[:-4], 16, -(-k // _panel), c, _panel)
    return jax.ffi.ffi_call(_KERNEL_TARGET, jax.ShapeDtypeStruct(shape, jnp.float32),
                            vmap_method="expand_dims")(w, flip=flip)


def _tiles(xp, u):
    """y (..., 2T, 2S, P ceil(K/P)): the valid 3x3 convolution of xp (..., 2T+2, 2S+2, C) with packed u."""
    *lead, h, w, _ = xp.shape
    shape = (*lead, h - 2, w - 2, u.shape[-3] * u.shape[-1])
    return jax.ffi.ffi_call(_TARGET, jax.ShapeDtypeStruct(shape, jnp.float32), vmap_method="expand_dims")(xp, u)


@jax.custom_vjp
def valid_conv3x3(xp, w):
    """Valid 3x3 convolution of xp (N, 2T+2, 2S+2, C) with w (3, 3, C, K): (N, 2T, 2S, K)."""
    return _tiles(xp, transformed_kernel(w))[..., :w.shape[-1]]


def _forward(xp, w):
    return valid_conv3x3(xp, w), (xp, w)


def _backward(residuals, g):
    """The input gradient is the full convolution of g with the rotated kernel: g padded by 2 on every side
    (2T+4 = 2(T+1)+2 rows, whole tiles again) through the same custom call. The kernel gradient is XLA's, and
    the compiler drops it where nothing uses it (pre-images differentiate the image only)."""
    xp, w = residuals
    gp = jnp.pad(g, ((0, 0),) * (g.ndim - 3) + ((2, 2), (2, 2), (0, 0)))
    dx = _tiles(gp, transformed_kernel(w, flip=True))[..., :w.shape[2]]
    _, kernel_vjp = jax.vjp(lambda kernel: lax.conv_general_dilated(
        xp, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")), w)
    return dx, kernel_vjp(g)[0]


valid_conv3x3.defvjp(_forward, _backward)


def conv3x3(x, w, pad=(1, 1, 1, 1)):
    """Stride-1 3x3 convolution of x (N, H, W, C) with w (3, 3, C, K), `pad` (top, bottom, left, right), as
    `layers.conv2d`: padded to whole 2x2 output tiles, convolved, cropped."""
    n, h, wd, _ = x.shape
    ho, wo = h + pad[0] + pad[1] - 2, wd + pad[2] + pad[3] - 2
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    x = jnp.pad(x, ((0, 0), (pad[0], 2 * th + 2 - h - pad[0]), (pad[2], 2 * tw + 2 - wd - pad[2]), (0, 0)))
    return valid_conv3x3(x, w)[:, :ho, :wo]
