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

from jaxinv.engine.layer_shapes import POINTWISE, Rule, register
from jaxinv.nets import winograd_kernel


def conv(x, params, *, out_channels, kernel, stride=1, pad=(0, 0, 0, 0), groups=1):
    """Convolution (cross-correlation, as Caffe/PyTorch/MatConvNet) with zero padding.

    `pad` is (top, bottom, left, right). Groups run as separate convolutions concatenated on
    the channel axis: XLA's CPU backend is ~3x slower on `feature_group_count`; depthwise
    convolutions (one group per input channel, MobileNet's) as `depthwise2d`.
    """
    del out_channels, kernel  # recorded for shape inference; the filters carry them.
    w, b = params["w"], params["b"]
    if groups == 1:
        y = conv2d(x, w, stride, pad)
    elif groups == x.shape[-1]:
        y = depthwise2d(x, w, stride, pad)
    else:
        xs = jnp.split(x, groups, axis=-1)
        ws = jnp.split(w, groups, axis=-1)
        y = jnp.concatenate([conv2d(xg, wg, stride, pad) for xg, wg in zip(xs, ws)], axis=-1)
    return y + b


IM2COL_MAX_PIXELS = 16
SPACE_TO_DEPTH_MAX_CHANNELS = 4
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_TILES = 128
FUSED_WINOGRAD_MIN_CHANNELS = 64


def conv2d(x, w, stride: int, pad=(0, 0, 0, 0)):
    """Zero-padded convolution of x (N, H, W, Cin) with w (kh, kw, Cin, Cout), `pad` (top, bottom,
    left, right): the one place choosing how convolutions of the networks and inverters run.

    - Maps of at most IM2COL_MAX_PIXELS output pixels run as im2col (shifted slices + one matmul):
      XLA CPU's convolution backward is pathological for small maps with many channels (training
      step of a 4x4x256 -> 2x2x512 conv 5/2 at batch 64: 4.7 s native, 0.15 s im2col; of the
      2x2x512 -> 4x4x256 up-convolution: 12 s against 0.25 s), while it is faster on larger maps
      (cifar-ref's training step, all maps >= 7x7: 0.95 s XLA against 1.2 s im2col per batch of 128).
    - On CPU, float32 stride-1 3x3 convolutions with at least FUSED_WINOGRAD_MIN_CHANNELS input and output
      channels and WINOGRAD_MIN_TILES 2x2 output tiles in the batch run as Winograd F(2x2, 3x3) through the
      custom call `winograd_kernel.conv3x3`, where it could be built (AVX-512 CPUs by default): 2.25x fewer
      multiplications, with the tile transforms inside the matmuls' cache blocks. VGG-16's step to conv5_3
      took 0.71x PyTorch's time at 1 restart, against 0.91x with the rule below (docs/performance.md); on
      13x13 maps (caffe-ref conv3-conv5, 49 tiles) it was slower than XLA's direct convolution.
    - Without the custom call, stride-1 3x3 convolutions with at least WINOGRAD_MIN_CHANNELS input and output
      channels and WINOGRAD_MIN_TILES tiles run as Winograd F(2x2, 3x3) in XLA operations (`winograd_conv3x3`),
      which pays once the 16 matmuls outweigh the tile transforms XLA keeps in memory (`python -m
      benchmarks.winograd` per VGG-16 layer geometry). Neither on GPU or TPU, where they were not measured and
      the vendors' convolutions choose their own algorithms.
    - On CPU, strided convolutions of at most SPACE_TO_DEPTH_MAX_CHANNELS input channels (the networks'
      first layers, on RGB or grey images) whose kernel is larger than the stride run at stride 1 on
      space-to-depth folded input (`space_to_depth_conv`): value and input gradient of caffe-ref's conv1
      (11x11/4), VGG-M's and ResNet's (7x7/2) for 8 images took 0.38-0.65x the time of XLA's strided
      convolution, while layers with 96 or more input channels ran up to 2.4x slower that way
      (`python -m benchmarks.strided`; docs/performance.md).
    - Strided 1x1 convolutions without padding (ResNet's downsampling shortcuts) read every stride-th pixel, and
      do so explicitly: their input gradient is then a stride-1 convolution scattered into the input, where
      XLA's is a convolution of a zero-dilated gradient map (stride^2 the work).
    - The rest run as XLA's convolution (`_conv_xla`).
    """
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    if (kh, kw) == (1, 1) and stride > 1 and not any(pad):
        return conv2d(x[:, ::stride, ::stride], w, 1)
    ho, wo = (h + pad[0] + pad[1] - kh) // stride + 1, (wd + pad[2] + pad[3] - kw) // stride + 1
    if ho * wo > IM2COL_MAX_PIXELS:
        if (stride > 1 and max(kh, kw) > stride and cin <= SPACE_TO_DEPTH_MAX_CHANNELS
                and jax.default_backend() == "cpu"):
            return space_to_depth_conv(x, w, stride, tuple(pad))
        tiles = n * ((ho + 1) // 2) * ((wo + 1) // 2)
        if ((kh, kw, stride) == (3, 3, 1) and tiles >= WINOGRAD_MIN_TILES and jax.default_backend() == "cpu"):
            if (min(cin, cout) >= FUSED_WINOGRAD_MIN_CHANNELS and x.dtype == w.dtype == jnp.float32
                    and winograd_kernel.available()):
                return winograd_kernel.conv3x3(x, w, tuple(pad))
            if min(cin, cout) >= WINOGRAD_MIN_CHANNELS:
                return winograd_conv3x3(x, w, tuple(pad))
        return _conv_xla(x, w, stride, tuple(pad))
    x = jnp.pad(x, ((0, 0), (pad[0], pad[1]), (pad[2], pad[3]), (0, 0)))
    return _conv_im2col(x, w, stride, ho, wo)


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv_plain(x, w, stride, pad):
    return lax.conv_general_dilated(x, w, (stride, stride), ((pad[0], pad[1]), (pad[2], pad[3])),
                                    dimension_numbers=_DIMENSIONS)


_conv_xla = jax.custom_vjp(_conv_plain, nondiff_argnums=(2, 3))


def _conv_xla_forward(x, w, stride, pad):
    return _conv_xla(x, w, stride, pad), (x, w)


def _conv_xla_backward(stride, pad, residuals, g):
    """The input gradient as the transposed convolution with the flipped kernel, its input and output
    channels swapped into a materialised HWIO array. Left to autodiff, XLA folds that transpose into
    the convolution's dimension numbers (kernel `01oi`); inside a while loop (`lax.scan`) XLA CPU then
    runs the convolution with its generic loop emitter instead of Eigen: the engine's scan step was 1.3-3.4x
    slower than its Python-loop step on every network (caffe-ref pool5: 69.1 against 36.6 ms; docs/performance.md)."""
    x, w = residuals
    kh, kw = w.shape[:2]
    (_, h, wd, _), (_, ho, wo, _) = x.shape, g.shape
    padding = []
    for size, out, k, before in ((h, ho, kh, pad[0]), (wd, wo, kw, pad[2])):
        pad_before = k - 1 - before
        padding.append((pad_before, size + k - 1 - ((out - 1) * stride + 1) - pad_before))
    flipped = lax.optimization_barrier(jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
    dx = lax.conv_general_dilated(g, flipped, (1, 1), padding, lhs_dilation=(stride, stride),
                                  dimension_numbers=_DIMENSIONS)
    _, weight_vjp = jax.vjp(lambda kernel: _conv_plain(x, kernel, stride, pad), w)
    return dx, weight_vjp(g)[0]


_conv_xla.defvjp(_conv_xla_forward, _conv_xla_backward)


def _winograd_data_rows(z, axis: int, tiles: int):
    """B^T d along `axis` for every stride-2 window of 4 rows d0..d3: d0 - d2, d1 + d2, d2 - d1, d1 - d3."""
    d0, d1, d2, d3 = (lax.slice_in_dim(z, i, i + 2 * tiles - 1, 2, axis) for i in range(4))
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _winograd_kernel_rows(w, axis: int):
    """G g along `axis` of the 3 taps g0..g2: g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2."""
    g0, g1, g2 = (lax.index_in_dim(w, i, axis, keepdims=False) for i in range(3))
    return [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]


def winograd_conv3x3(x, w, pad=(1, 1, 1, 1)):
    """Stride-1 3x3 convolution (as `conv2d`) by Winograd F(2x2, 3x3) (Lavin & Gray, CVPR 2016): each 2x2
    output tile is Y = A^T [(G g G^T) . (B^T d B)] A of its 4x4 input tile d, so the 9 taps become 16
    (tiles x Cin) @ (Cin x Cout) matmuls, 16 multiplications per tile instead of 36. B, G and A hold only
    0, +-1 and +-1/2: the transforms are strided slices and additions (XLA fuses them; einsums with the
    matrices ran 2-3.5x slower), and autodiff's backward is the transposed transforms and matmuls, so the
    gradients save the same factor. float32 results differ from the direct convolution by ~1e-6 relative."""
    n, h, wd, cin = x.shape
    cout = w.shape[-1]
    ho, wo = h + pad[0] + pad[1] - 2, wd + pad[2] + pad[3] - 2
    th, tw = (ho + 1) // 2, (wo + 1) // 2
    x = jnp.pad(x, ((0, 0), (pad[0], 2 * th + 2 - h - pad[0]), (pad[2], 2 * tw + 2 - wd - pad[2]), (0, 0)))
    data = jnp.stack([c for r in _winograd_data_rows(x, 1, th) for c in _winograd_data_rows(r, 2, tw)])
    kernel = jnp.stack([c for r in _winograd_kernel_rows(w, 0) for c in _winograd_kernel_rows(r, 0)])
    m = jnp.einsum("spc,sck->spk", data.reshape(16, n * th * tw, cin), kernel).reshape(4, 4, n, th, tw, cout)
    rows = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]  # A^T M: output row 0 and 1 of each tile
    y = [[r[0] + r[1] + r[2], r[1] - r[2] - r[3]] for r in rows]  # ... then M A: y[row][column]
    y = jnp.stack([jnp.stack(y[0], -2), jnp.stack(y[1], -2)], 2)  # (n, th, 2, tw, 2, cout)
    return y.reshape(n, 2 * th, 2 * tw, cout)[:, :ho, :wo]


def space_to_depth_conv(x, w, stride: int, pad=(0, 0, 0, 0)):
    """Strided convolution (as `conv2d`) rewritten as a stride-1 one: with k = q s + r, output o sums
    x[(o + q) s + r] w[q s + r], so folding each s x s block of pixels into channels (N, H/s, W/s, s s Cin)
    and the kernel, zero-padded to a multiple of s, into (ceil(kh/s), ceil(kw/s), s s Cin, Cout) gives the
    same sums as a stride-1 convolution. Its input gradient is then a stride-1 convolution too, where the
    strided one's is a convolution of a zero-dilated gradient map (s^2 times the work on zeros)."""
    n, h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    s = stride
    ho, wo = (h + pad[0] + pad[1] - kh) // s + 1, (wd + pad[2] + pad[3] - kw) // s + 1
    qh, qw = -(-kh // s), -(-kw // s)
    rows, cols = (ho + qh - 1) * s, (wo + qw - 1) * s  # the padded input rows and columns the windows read
    x = jnp.pad(x, ((0, 0), (pad[0], max(0, rows - h - pad[0])), (pad[2], max(0, cols - wd - pad[2])), (0, 0)))
    x = x[:, :rows, :cols].reshape(n, rows // s, s, cols // s, s, cin).transpose(0, 1, 3, 2, 4, 5)
    w = jnp.pad(w, ((0, qh * s - kh), (0, qw * s - kw), (0, 0), (0, 0)))
    w = w.reshape(qh, s, qw, s, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    return _conv_xla(x.reshape(n, rows // s, cols // s, s * s * cin), w.reshape(qh, qw, s * s * cin, cout), 1,
                     (0, 0, 0, 0))


def _conv_im2col(x, w, stride, ho, wo):
    kh, kw, cin, cout = w.shape
    n = x.shape[0]
    patches = [x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
               for i in range(kh) for j in range(kw)]
    columns = jnp.concatenate(patches, axis=-1)  # channel order (i, j, c) matches w.reshape
    return (columns.reshape(n * ho * wo, kh * kw * cin) @ w.reshape(kh * kw * cin, cout)).reshape(n, ho, wo, cout)


def depthwise2d(x, w, stride: int, pad=(0, 0, 0, 0)):
    """Depthwise convolution of x (N, H, W, C) with w (kh, kw, 1, C * m): output channel o filters
    input channel o // m. Written as kh * kw shifted, strided slices times per-channel weights: on
    XLA CPU `feature_group_count=C` measured 18-45x slower forward and up to 2.4x slower backward
    (MobileNetV2's depthwise layers, 7x7x960 to 112x112x96)."""
    _, h, wd, c = x.shape
    kh, kw, _, cout = w.shape
    if cout != c:
        x = jnp.repeat(x, cout // c, axis=-1)
    ho, wo = (h + pad[0] + pad[1] - kh) // stride + 1, (wd + pad[2] + pad[3] - kw) // stride + 1
    x = jnp.pad(x, ((0, 0), (pad[0], pad[1]), (pad[2], pad[3]), (0, 0)))
    y = 0
    for i in range(kh):
        for j in range(kw):
            y = y + x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :] * w[i, j, 0]
    return y


def relu(x):
    return jnp.maximum(x, 0)


def relu6(x):
    """min(max(x, 0), 6) (MobileNet's ReLU6)."""
    return jnp.minimum(jnp.maximum(x, 0), 6)


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
    rows, cols = (jnp.asarray(_adaptive_matrix(n, output_size), x.dtype) for n in (h, w))  # exact 1/k in float64
    return jnp.einsum("ih,jw,nhwc->nijc", rows, cols, x)


def _adaptive_matrix(n, o):
    matrix = [[0.0] * n for _ in range(o)]
    for i in range(o):
        start, stop = (i * n) // o, math.ceil((i + 1) * n / o)
        for t in range(start, stop):
            matrix[i][t] = 1.0 / (stop - start)
    return matrix


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
ACTIVATIONS = (relu, relu6)  # the rectifiers: taps of texture, caricature and pre-activation rules


# Geometry of the operators (jaxinv.engine.layer_shapes derives a table's shapes and fields from these).

def _map(shape, op):
    if len(shape) != 3:
        raise ValueError(f"{op} needs an (H, W, C) input, got {tuple(shape)}")
    return shape


def _conv_output(hyper, shape):
    h, w, _ = _map(shape, "conv")
    k, s, p = hyper["kernel"], hyper["stride"], hyper["pad"]
    return (h + p[0] + p[1] - k) // s + 1, (w + p[2] + p[3] - k) // s + 1, hyper["out_channels"]


def _conv_params(hyper, shape):
    k, out = hyper["kernel"], hyper["out_channels"]
    return {"w": (k, k, shape[-1] // hyper["groups"], out), "b": (out,)}


def _maxpool_output(hyper, shape):
    h, w, c = _map(shape, "maxpool")
    k, s, p, ceil = hyper["kernel"], hyper["stride"], hyper["pad"], hyper["ceil_mode"]
    return pool_output_length(h, k, s, p[0], p[1], ceil), pool_output_length(w, k, s, p[2], p[3], ceil), c


def _adaptive_window(hyper, shape):
    # Bins of an adaptive pool are uneven unless o divides h; report the widest bin. A global pool
    # (o = 1) has one unit, which does not slide: it keeps its input's stride, as fc does.
    h, o = shape[0], hyper["output_size"]
    return math.ceil(h / o), max(h // o, 1) if o > 1 else 1


def _fc_params(hyper, shape):
    spatial = tuple(shape) if len(shape) == 3 else (1, 1) + tuple(shape)
    return {"w": spatial + (hyper["units"],), "b": (hyper["units"],)}


def fc_window(hyper, shape):
    """fc's kernel is its whole input: the receptive field grows to everything it sees."""
    return (shape[0] if len(shape) == 3 else 1), 1


_sliding = lambda hyper, shape: (hyper["kernel"], hyper["stride"], hyper["pad"][0])
register(conv, Rule(output=_conv_output, params=_conv_params, window=_sliding))
register(maxpool, Rule(output=_maxpool_output, window=_sliding))
register(adaptive_avgpool, Rule(output=lambda hyper, shape: (hyper["output_size"],) * 2 + (_map(shape, "pool")[-1],),
                                window=_adaptive_window))
register(fc, Rule(output=lambda hyper, shape: (hyper["units"],), params=_fc_params, window=fc_window))
for _op in (relu, relu6, lrn, softmax):
    register(_op, POINTWISE)
