"""The Winograd F(2x2, 3x3) custom call (`jaxinv.nets.winograd_kernel`): lax's convolution and gradients to float32
rounding, under vmap and jit, built once into the cache, and left out (with the reason) where it cannot run."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxinv.nets import layers, winograd_kernel

needs_kernel = pytest.mark.skipif(not winograd_kernel.available(),
                                  reason=f"custom call unavailable: {winograd_kernel.unavailable_reason()}")


def _lax(x, w, pad):
    return lax.conv_general_dilated(x, w, (1, 1), ((pad[0], pad[1]), (pad[2], pad[3])),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@needs_kernel
@pytest.mark.parametrize("n, height, width, cin, cout, pad", [
    (2, 14, 14, 6, 5, (1, 1, 1, 1)),      # channels below one panel, an even map
    (1, 7, 9, 130, 40, (1, 1, 1, 1)),     # odd sizes (cropped tiles), channels not multiples of 8 or of a panel
    (3, 8, 11, 16, 33, (0, 0, 0, 0)),     # no padding
    (1, 10, 6, 64, 64, (2, 0, 1, 3)),     # asymmetric padding
    (1, 3, 3, 1, 1, (1, 1, 1, 1)),        # one channel, one tile row
    (1, 4, 6, 1100, 20, (1, 1, 1, 1)),    # more input channels than one pass over the accumulators (kDepth)
])
def test_custom_call_matches_lax(n, height, width, cin, cout, pad):
    """Value, input gradient (the custom call on the padded gradient with the rotated kernel) and kernel gradient."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, height, width, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
    y, reference_vjp = jax.vjp(lambda x, w: _lax(x, w, pad), x, w)
    ours, vjp = jax.vjp(jax.jit(lambda x, w: winograd_kernel.conv3x3(x, w, pad)), x, w)
    assert ours.shape == y.shape
    scale = float(jnp.max(jnp.abs(y)))
    np.testing.assert_allclose(ours, y, rtol=1e-5, atol=1e-6 * scale)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    for found, expected in zip(vjp(g), reference_vjp(g)):
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(expected))))


@needs_kernel
def test_custom_call_under_vmap_with_shared_and_batched_kernels():
    """Restarts vmap the input only (one kernel for all); vmapping the kernel too gives each its own."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(4, 2, 12, 10, 24)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(4, 3, 3, 24, 20)), jnp.float32)
    pad = (1, 1, 1, 1)
    shared = jax.jit(jax.vmap(lambda x: winograd_kernel.conv3x3(x, w[0], pad)))(x)
    own = jax.jit(jax.vmap(lambda x, w: winograd_kernel.conv3x3(x, w, pad)))(x, w)
    for i in range(4):
        np.testing.assert_allclose(shared[i], _lax(x[i], w[0], pad), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(own[i], _lax(x[i], w[i], pad), rtol=1e-5, atol=1e-4)
    grads = jax.vmap(jax.grad(lambda x: jnp.sum(jnp.sin(winograd_kernel.conv3x3(x, w[0], pad)))))(x)
    expected = jax.vmap(jax.grad(lambda x: jnp.sum(jnp.sin(_lax(x, w[0], pad)))))(x)
    np.testing.assert_allclose(grads, expected, rtol=1e-4, atol=1e-4)


@needs_kernel
def test_conv2d_takes_the_custom_call_for_float32_stride_one_3x3_layers():
    def uses_kernel(shape, kernel, stride=1, dtype=jnp.float32):
        jaxpr = jax.make_jaxpr(lambda x, w: layers.conv2d(x, w, stride, (1, 1, 1, 1)))(
            jax.ShapeDtypeStruct(shape, dtype), jax.ShapeDtypeStruct(kernel, dtype))
        return "jaxinv_winograd" in str(jaxpr)
    assert uses_kernel((1, 224, 224, 64), (3, 3, 64, 64))        # VGG conv1_2
    assert uses_kernel((1, 28, 28, 512), (3, 3, 512, 512))       # VGG conv4_2
    assert not uses_kernel((1, 14, 14, 512), (3, 3, 512, 512))   # 49 tiles: direct was faster (caffe-ref conv3-5)
    assert not uses_kernel((1, 224, 224, 3), (3, 3, 3, 64))      # 3 input channels
    assert not uses_kernel((1, 56, 56, 64), (3, 3, 64, 64), stride=2)
    with jax.enable_x64(True):
        assert not uses_kernel((1, 28, 28, 64), (3, 3, 64, 64), dtype=jnp.float64)  # float32 only


def test_the_custom_call_without_its_library_says_why(monkeypatch):
    monkeypatch.setattr(winograd_kernel, "_load", lambda: "no C++ compiler found ($CXX, c++ or g++)")
    x, w = jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2))
    with pytest.raises(RuntimeError, match="cannot run here: no C.. compiler found"):
        winograd_kernel.conv3x3(x, w)


def test_conv2d_without_the_custom_call_uses_xla(monkeypatch):
    monkeypatch.setattr(winograd_kernel, "available", lambda: False)
    jaxpr = str(jax.make_jaxpr(lambda x, w: layers.conv2d(x, w, 1, (1, 1, 1, 1)))(
        jax.ShapeDtypeStruct((1, 28, 28, 64), jnp.float32), jax.ShapeDtypeStruct((3, 3, 64, 64), jnp.float32)))
    assert "jaxinv_winograd" not in jaxpr and "conv_general_dilated" in jaxpr


def test_reasons_for_leaving_the_custom_call_out(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXINV_FUSED_WINOGRAD", "0")
    assert "JAXINV_FUSED_WINOGRAD=0" in winograd_kernel._load.__wrapped__()
    monkeypatch.delenv("JAXINV_FUSED_WINOGRAD")
    monkeypatch.setattr(winograd_kernel.platform, "machine", lambda: "aarch64")
    assert "x86-64" in winograd_kernel._load.__wrapped__()
    monkeypatch.undo()
    if winograd_kernel._cpu_problem(avx2_allowed=True):
        return
    flags = winograd_kernel._cpu_description()
    monkeypatch.setattr(winograd_kernel, "_cpu_description", lambda: flags.replace(" avx512f", " "))
    assert "lacks AVX-512" in winograd_kernel._load.__wrapped__()
    monkeypatch.undo()
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(winograd_kernel, "SOURCE", str(broken))
    reason = winograd_kernel._load.__wrapped__()
    assert reason.startswith(f"building {broken} failed") and "error" in reason
    assert not os.path.exists(tmp_path / "cache" / "kernels") or not os.listdir(tmp_path / "cache" / "kernels")


@needs_kernel
def test_the_library_is_built_once_into_the_cache_with_the_umask(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    compiler = winograd_kernel.find_compiler()
    old_umask = os.umask(0o027)
    try:
        path = winograd_kernel.build(compiler)
    finally:
        os.umask(old_umask)
    assert path.startswith(str(tmp_path / "jaxinv" / "kernels")) and os.path.getsize(path) > 0
    assert os.stat(path).st_mode & 0o777 == 0o750  # the compiler's executable mode, less the umask
    built = os.stat(path).st_mtime_ns
    assert winograd_kernel.build(compiler) == path and os.stat(path).st_mtime_ns == built


@pytest.mark.skipif(winograd_kernel._cpu_problem(avx2_allowed=True) is not None, reason="needs x86-64 with AVX2")
def test_the_avx2_build_matches_lax(monkeypatch, tmp_path):
    """The 6x16 AVX2 register block (what CPUs without AVX-512 build, with JAXINV_FUSED_WINOGRAD=1), checked here by
    building it without -march=native; a subprocess, as a process registers one library per custom call name."""
    script = (
        "import jax, jax.numpy as jnp, numpy as np\n"
        "from jax import lax\n"
        "from jaxinv.nets import winograd_kernel as K\n"
        "K.COMPILE_FLAGS = ('-O3', '-std=c++17', '-mavx2', '-mfma', '-fPIC', '-shared')\n"
        "assert K.available(), K.unavailable_reason()\n"
        "assert K._panel == 16, K._panel\n"
        "rng = np.random.default_rng(0)\n"
        "x = jnp.asarray(rng.normal(size=(2, 13, 10, 70)), jnp.float32)\n"
        "w = jnp.asarray(rng.normal(size=(3, 3, 70, 37)), jnp.float32)\n"
        "ref = lambda x: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))\n"
        "y = ref(x)\n"
        "np.testing.assert_allclose(jax.jit(lambda x: K.conv3x3(x, w))(x), y, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(y))))\n"
        "g = jax.grad(lambda x: jnp.sum(jnp.sin(K.conv3x3(x, w))))(x)\n"
        "e = jax.grad(lambda x: jnp.sum(jnp.sin(ref(x))))(x)\n"
        "np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(e))))\n"
        "print('avx2 ok')\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), JAXINV_FUSED_WINOGRAD="1",
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "avx2 ok" in result.stdout, result.stderr[-3000:]
