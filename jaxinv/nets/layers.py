"""Layer operators of the deep networks: pure functions of an NHWC batch (and parameters).

Parameter layouts follow MatConvNet: conv filters (kh, kw, in_channels / groups, out_channels),
fully connected weights (h, w, in_channels, units) so that fc6 is a convolution whose kernel covers
its whole input, biases (out_channels,). Geometry (padding, ceil-mode pooling) follows Caffe, which
PyTorch's `ceil_mode=True` and MatConvNet's asymmetric pool padding both reproduce.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax


def conv(x, params, *, out_channels, kernel, stride=1, pad=(0, 0, 0, 0), groups=1, impl="xla"):
    """Convolution (cross-correlation, as Caffe/PyTorch/MatConvNet) with zero padding.

    `pad` is (top, bottom, left, right). Groups run as separate convolutions concatenated on
    the channel axis: XLA's CPU backend is ~3x slower on `feature_group_count`. `impl` picks
    XLA's native convolution or "im2col" (shifted slices + one matmul), whose backward pass is
    several times faster for small CIFAR-size layers.
    """
    del out_channels  # recorded for shape inference; the filters carry it.
    w, b = params["w"], params["b"]
    x = jnp.pad(x, ((0, 0), (pad[0], pad[1]), (pad[2], pad[3]), (0, 0)))
    single = _conv_im2col if impl == "im2col" else _conv_xla
    if groups == 1:
        y = single(x, w, stride)
    else:
        xs = jnp.split(x, groups, axis=-1)
        ws = jnp.split(w, groups, axis=-1)
        y = jnp.concatenate([single(xg, wg, stride) for xg, wg in zip(xs, ws)], axis=-1)
    return y + b


def _conv_xla(x, w, stride):
    return lax.conv_general_dilated(x, w, (stride, stride), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_im2col(x, w, stride):
    kh, kw, cin, cout = w.shape
    n, h, wd, _ = x.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    patches = [x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
               for i in range(kh) for j in range(kw)]
    columns = jnp.concatenate(patches, axis=-1)  # channel order (i, j, c) matches w.reshape
    return (columns.reshape(n * ho * wo, kh * kw * cin) @ w.reshape(kh * kw * cin, cout)).reshape(n, ho, wo, cout)


def relu(x):
    return jnp.maximum(x, 0)


def lrn(x, *, size, alpha, beta, k):
    """Local response normalisation across channels, Caffe/PyTorch convention:
    x / (k + alpha / size * sum of squares over `size` neighbouring channels) ** beta."""
    # The channel-window sum as a matmul with a band matrix: summing shifted slices of the
    # minor axis made LRN the most expensive layer of cifar-ref's training step on XLA CPU.
    channels = x.shape[-1]
    source, target = jnp.arange(channels)[:, None], jnp.arange(channels)[None, :]
    band = ((source >= target - (size - 1) // 2) & (source <= target + size // 2)).astype(x.dtype)
    window_sum = jnp.square(x) @ band
    # exp(-beta log d) rather than d ** -beta: XLA CPU's pow (and its gradient) is ~4x slower.
    return x * jnp.exp(-beta * jnp.log(k + (alpha / size) * window_sum))


def pool_output_length(n, kernel, stride, pad_before, pad_after, ceil_mode):
    """Output length of a pooling window; ceil mode as Caffe (the last window must start inside
    the input or its leading padding)."""
    span = n + pad_before + pad_after - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and pad_before > 0 and (out - 1) * stride >= n + pad_before:
        out -= 1
    return out


def maxpool(x, *, kernel, stride, pad=(0, 0, 0, 0), ceil_mode=False):
    """Max pooling padded with -inf; `ceil_mode` rounds the output size up as Caffe does."""
    _, h, w, _ = x.shape
    ho = pool_output_length(h, kernel, stride, pad[0], pad[1], ceil_mode)
    wo = pool_output_length(w, kernel, stride, pad[2], pad[3], ceil_mode)
    # Pad the far edges so that exactly ho x wo windows fit ("VALID" drops any remainder).
    bottom = max(pad[1], (ho - 1) * stride + kernel - h - pad[0])
    right = max(pad[3], (wo - 1) * stride + kernel - w - pad[2])
    x = jnp.pad(x, ((0, 0), (pad[0], bottom), (pad[2], right), (0, 0)), constant_values=-jnp.inf)
    return _maxpool_valid(x, kernel, stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _maxpool_valid(x, kernel, stride):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, kernel, kernel, 1), (1, stride, stride, 1), "VALID")


def _maxpool_valid_fwd(x, kernel, stride):
    y = _maxpool_valid(x, kernel, stride)
    return y, (x, y)


def _maxpool_valid_bwd(kernel, stride, residuals, g):
    # The gradient of reduce_window max is ~20x slower on XLA CPU than routing the incoming
    # gradient to the first maximum of each window through k*k strided slices.
    x, y = residuals
    _, h, w, _ = x.shape
    _, ho, wo, _ = y.shape
    dx = jnp.zeros_like(x)
    unclaimed = jnp.ones(y.shape, bool)
    for i in range(kernel):
        for j in range(kernel):
            window = x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
            hit = unclaimed & (window == y)
            unclaimed = unclaimed & ~hit
            routed = jnp.where(hit, g, 0)
            dx = dx + lax.pad(routed, jnp.zeros((), g.dtype),
                              ((0, 0, 0), (i, h - i - stride * (ho - 1) - 1, stride - 1),
                               (j, w - j - stride * (wo - 1) - 1, stride - 1), (0, 0, 0)))
    return (dx,)


_maxpool_valid.defvjp(_maxpool_valid_fwd, _maxpool_valid_bwd)


def adaptive_avgpool(x, *, output_size):
    """PyTorch's AdaptiveAvgPool2d: bin i averages rows floor(i*n/o) .. ceil((i+1)*n/o) - 1."""
    _, h, w, _ = x.shape
    rows, cols = _adaptive_matrix(h, output_size), _adaptive_matrix(w, output_size)
    return jnp.einsum("ih,jw,nhwc->nijc", rows, cols, x)


def _adaptive_matrix(n, o):
    matrix = [[0.0] * n for _ in range(o)]
    for i in range(o):
        start, stop = (i * n) // o, math.ceil((i + 1) * n / o)
        for t in range(start, stop):
            matrix[i][t] = 1.0 / (stop - start)
    return jnp.asarray(matrix, jnp.float32)


def fc(x, params, *, units):
    """Fully connected layer; a 4-D input is contracted over (h, w, c), i.e. a convolution whose
    kernel is the whole input, so weights keep MatConvNet's (h, w, c, units) layout."""
    del units  # recorded for shape inference; the weights carry it.
    w, b = params["w"], params["b"]
    if x.ndim == 4 and x.shape[1:] != w.shape[:3]:
        raise ValueError(f"fc input of shape {x.shape[1:]} does not match weights {w.shape[:3]}")
    # Flattened to one matmul: the same contraction written as a 4-D einsum made XLA CPU copy the
    # weights on every input-gradient step (fc6 of caffe-ref: 286 ms against 22 ms).
    return x.reshape(x.shape[0], -1) @ w.reshape(-1, w.shape[-1]) + b


def softmax(x):
    return jax.nn.softmax(x, axis=-1)


PARAMETRIC_OPS = (conv, fc)
