"""Image parameterisations: what the solver optimises, and the map from it to the image.

A parameterisation is a small piece with explicit weights, composed by `chain` like optax
transformations (never a string switch). Each piece is a frozen dataclass, hashable by value (the
static part of a compiled step); its `weights` (a trained decoder's, say) are a pytree that the
engine passes into the compiled step as an argument, as it does a representation's, and that
equality ignores. A piece has

    init(weights, key, shape, bound) -> params     a random start for a batch of images `shape`
                                                    (K, H, W, D) (only the first piece of a chain draws)
    apply(weights, params, shape) -> image          one image (H, W, D), null mean, grey levels
    inverse(weights, image) -> params               exact, for the invertible pieces (else NotImplementedError)
    invertible, bounded                             flags the engine reads (below)

Pieces (images are null-mean, in grey levels, as everywhere in the engine):

- `Pixels()`: the image itself (the IJCV papers'); start: the authors' noise (`random_init`).
- `Fourier(decay)`: the real FFT spectrum (real and imaginary parts as params (2, H, W//2+1, D)),
  scaled by 1 / max(f, 1/max(H, W))^decay (f in cycles per pixel) and inverted by an orthonormal
  inverse real FFT; the scale is normalised so that white parameters of unit variance give pixels of
  about unit variance. Start: white Gaussian parameters with the RMS of the authors' start
  (`start_rms`), so the first image is 1/f ("pink") noise of the pixels' start amplitude.
  decay = 1 is Lucid's default (Olah, Mordvintsev & Schubert 2017, "Feature Visualization", Distill).
- `DecorrelatedColour(matrix)`: x = y M^T per pixel, M the square root of the RGB covariance of
  natural images normalised to a largest gain of 1 (Lucid's `color_correlation_svd_sqrt` idea; ours is
  `COLOUR_SQRT`, estimated from the ImageNet samples by `estimate_colour_sqrt`).
- `Squash(bound)`: x = y B tanh(|y| / B) / |y| per pixel colour: maps every colour into the ball of
  radius B (the B+ of Eq. 6), identity to first order near 0.
- `Decoder(...)`: a trained learned inverter's decoder (Dosovitskiy & Brox 2016) as the map from
  a code to the image (the generator prior of Nguyen et al. 2016, "Synthesizing the preferred inputs
  for neurons in neural networks via deep generator networks"); the weights are the decoder's.

Bounded range (IJCV Eqs. 5-6) for each: the regularisers R_alpha (Eq. 5) and TV act on the produced
image, whatever the parameterisation. The projection Proj_{B+} (Eq. 6) of Algorithm 1:
- pixels: on the image (= the parameters), as in the paper;
- invertible pieces and their chains (Fourier, colour, both): on the produced image, mapped back:
  params <- inverse(Proj(apply(params))); exact, because the maps are linear and invertible;
- a chain ending in `Squash(B+)`: the squash replaces the projection (every produced colour is
  already inside the ball), so nothing is projected;
- a decoder (not invertible): no projection; Eq. 5 on the produced image bounds it, or chain a
  `Squash`.

The rate rule that carries over (Algorithm 1 unchanged, eta0 = 0.05 B^2/alpha x pixels of the
produced image): once G_t dominates 1/eta0, each parameter moves by about the same amount per
iteration whatever its gradient's scale, so what carries over is the *units*: every piece keeps one
parameter unit worth about one grey level (Fourier: orthonormal FFT, normalised 1/f scale; colour:
largest gain 1; squash: gain 1 at 0; decoder: codes scaled to the start's RMS). Measured in
docs/priors.md.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

COLOUR_SQRT = ((0.5652, 0.2075, 0.0614),
               (0.5793, 0.0073, -0.1182),
               (0.5874, -0.2069, 0.0574))
"""M: square root of the RGB covariance of natural images (columns: principal colour directions
scaled by the square roots of their variances), normalised so that the largest column norm is 1.
Estimated by `estimate_colour_sqrt` from all 500 files of ../shared/data/imagenet_samples, each
resized and centre-cropped to 128x128 (8.2 million pixels):

    python -m experiments.priors --colour_sqrt

(principal standard deviations 111.5, 32.7 and 16.2 grey levels, 15 s). Lucid's matrix, estimated on
ImageNet the same way, has the same structure (a luminance column and two weaker opponent ones)."""


def start_rms(bound: float) -> float:
    """RMS of the authors' start (`random_init`): uniform noise whose 95th percentile of |x| is B/sqrt(3)
    has standard deviation (B / (sqrt(3) 0.95)) / sqrt(3) = B / 2.85."""
    return bound / (3 * 0.95)


def random_init(key, shape, bound: float):
    """Uniform noise in [-1, 1] rescaled so that its 95th percentile maps to B/sqrt(3) (authors' init)."""
    noise = jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
    return noise * (bound / np.sqrt(3) / jnp.percentile(jnp.abs(noise), 95))


@dataclasses.dataclass(frozen=True)
class Pixels:
    """The image is the parameter (IJCV): Eq. 6 projects it directly."""
    weights: Any = dataclasses.field(default=None, compare=False, repr=False)
    invertible = True
    bounded = False

    def init(self, weights, key, shape, bound):
        return random_init(key, shape, bound)

    def apply(self, weights, params, shape):
        return params

    def inverse(self, weights, image):
        return image


@functools.lru_cache(maxsize=32)
def fourier_scale(height: int, width: int, decay: float) -> np.ndarray:
    """(H, W//2+1) amplitude of each rfft2 coefficient: 1 / max(f, 1/max(H, W))^decay, normalised so that
    white parameters of unit variance give pixels of about unit variance (mean of 2 scale^2 over the
    half spectrum = 1 under the orthonormal FFT; exact but for the self-conjugate columns)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    scale = 1.0 / np.maximum(f, 1.0 / max(height, width)) ** decay
    return (scale / np.sqrt(2 * np.mean(scale ** 2))).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Fourier:
    """Spectrum parameters (2, H, W//2+1, D) -> image by an orthonormal inverse real FFT of the spectrum
    scaled by 1/f^decay (`fourier_scale`)."""
    decay: float = 1.0
    weights: Any = dataclasses.field(default=None, compare=False, repr=False)
    invertible = True
    bounded = False

    def __post_init__(self):
        if not np.isfinite(self.decay) or self.decay < 0:
            raise ValueError(f"decay must be a finite number >= 0, got {self.decay}")

    def init(self, weights, key, shape, bound):
        batch, (height, width, depth) = shape[:-3], shape[-3:]
        return jax.random.normal(key, tuple(batch) + (2, height, width // 2 + 1, depth), jnp.float32) * start_rms(bound)

    def apply(self, weights, params, shape):
        height, width = shape[0], shape[1]
        scale = jnp.asarray(fourier_scale(height, width, float(self.decay)))[..., None]
        spectrum = jax.lax.complex(params[0] * scale, params[1] * scale)
        return jnp.fft.irfft2(spectrum, s=(height, width), axes=(0, 1), norm="ortho")

    def inverse(self, weights, image):
        height, width = image.shape[0], image.shape[1]
        scale = jnp.asarray(fourier_scale(height, width, float(self.decay)))[..., None]
        spectrum = jnp.fft.rfft2(image, axes=(0, 1), norm="ortho") / scale
        return jnp.stack([jnp.real(spectrum), jnp.imag(spectrum)])


@dataclasses.dataclass(frozen=True)
class DecorrelatedColour:
    """Decorrelated colour y -> RGB x = y M^T per pixel (M = `COLOUR_SQRT` by default; 3 channels)."""
    matrix: tuple = COLOUR_SQRT
    weights: Any = dataclasses.field(default=None, compare=False, repr=False)
    invertible = True
    bounded = False

    def __post_init__(self):
        m = np.asarray(self.matrix, np.float64)
        if m.shape != (3, 3) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m)) < 1e-8:
            raise ValueError(f"the colour matrix must be an invertible 3x3 matrix; got {self.matrix!r}")

    def init(self, weights, key, shape, bound):
        return random_init(key, shape, bound)

    def apply(self, weights, params, shape):
        return params @ jnp.asarray(self.matrix, jnp.float32).T

    def inverse(self, weights, image):
        return image @ jnp.asarray(np.linalg.inv(np.asarray(self.matrix, np.float64)).T, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Squash:
    """x = y B tanh(|y|/B) / |y| per pixel colour: every produced colour inside the ball of radius B."""
    bound: float
    weights: Any = dataclasses.field(default=None, compare=False, repr=False)
    invertible = True
    bounded = True

    def __post_init__(self):
        if not np.isfinite(self.bound) or self.bound <= 0:
            raise ValueError(f"the squash bound must be positive and finite, got {self.bound}")

    def init(self, weights, key, shape, bound):
        return random_init(key, shape, bound)

    def apply(self, weights, params, shape):
        norm = jnp.sqrt(jnp.sum(jnp.square(params), axis=-1, keepdims=True))
        r = norm / self.bound
        safe = jnp.where(r > 1e-4, r, 1.0)
        gain = jnp.where(r > 1e-4, jnp.tanh(safe) / safe, 1.0 - jnp.square(r) / 3)  # tanh(r)/r, series near 0
        return params * gain

    def inverse(self, weights, image):
        norm = jnp.sqrt(jnp.sum(jnp.square(image), axis=-1, keepdims=True))
        r = jnp.minimum(norm / self.bound, 1.0 - 1e-6)
        safe = jnp.where(r > 1e-4, r, 0.5)
        gain = jnp.where(r > 1e-4, jnp.arctanh(safe) / safe, 1.0 + jnp.square(r) / 3)
        return image * gain


@dataclasses.dataclass(frozen=True)
class Decoder:
    """A learned inverter's decoder as the parameterisation: params are a code in the units of the
    decoder's input times `code_rms` (the inverter scales natural codes to unit RMS), and the image is
    network(weights, params / code_rms) - mean. `network(weights, codes) -> (N, S, S, 3)` images in
    [0, 255] is a hashable pure function of a batch of codes (`jaxinv.inverters.model.DecoderNetwork`);
    `weights` are its parameters. Build one from a trained `jaxinv.inverters.Inverter` with
    `jaxinv.inverters.model.decoder_parameterisation`."""
    network: Any
    feature_shape: tuple
    image_size: int
    mean: tuple
    code_rms: float
    weights: Any = dataclasses.field(default=None, compare=False, repr=False)
    invertible = False
    bounded = False

    def init(self, weights, key, shape, bound):
        batch = shape[:-3]
        return jax.random.normal(key, tuple(batch) + tuple(self.feature_shape), jnp.float32) * self.code_rms

    def apply(self, weights, params, shape):
        if tuple(shape[:2]) != (self.image_size, self.image_size):
            raise ValueError(f"the decoder produces {self.image_size}x{self.image_size} images, not "
                             f"{shape[0]}x{shape[1]} (use jitter T = 1 and size-preserving transforms)")
        pixels = self.network(weights, (params / self.code_rms)[None])[0]
        return pixels - jnp.asarray(self.mean, jnp.float32)

    def inverse(self, weights, image):
        raise NotImplementedError("a decoder has no inverse: start it from a random code")


@dataclasses.dataclass(frozen=True)
class Chain:
    """pieces[0] draws the parameters; each later piece maps the previous one's image."""
    pieces: tuple

    @property
    def weights(self):
        return tuple(piece.weights for piece in self.pieces)

    @property
    def invertible(self) -> bool:
        return all(piece.invertible for piece in self.pieces)

    @property
    def bounded(self) -> bool:
        return self.pieces[-1].bounded

    def init(self, weights, key, shape, bound):
        return self.pieces[0].init(weights[0], key, shape, bound)

    def apply(self, weights, params, shape):
        x = params
        for piece, w in zip(self.pieces, weights):
            x = piece.apply(w, x, shape)
        return x

    def inverse(self, weights, image):
        for piece, w in zip(reversed(self.pieces), reversed(weights)):
            image = piece.inverse(w, image)
        return image


PIECES = (Pixels, Fourier, DecorrelatedColour, Squash, Decoder)


def chain(*pieces) -> Chain:
    """The composition params -> pieces[0] -> pieces[1] -> ... -> image (nested chains are flattened):
    `chain(Fourier(1.0), DecorrelatedColour())` is Lucid's image (spectrum, then colour)."""
    flat = []
    for piece in pieces:
        if isinstance(piece, Chain):
            flat.extend(piece.pieces)
        elif isinstance(piece, PIECES) or all(hasattr(piece, a) for a in ("init", "apply", "inverse", "weights")):
            flat.append(piece)
        else:
            raise TypeError(f"not a parameterisation piece: {piece!r}")
    if not flat:
        raise ValueError("chain needs at least one piece")
    return Chain(tuple(flat))


def as_chain(parameterisation) -> Chain:
    """Any piece or chain as a Chain (None: pixels)."""
    return chain(Pixels() if parameterisation is None else parameterisation)


def projection(parameterisation: Chain, bound_plus: float):
    """Eq. 6 for the parameterisation, as a function of one restart's (weights, params) -> params, or
    None when nothing is projected (see the module docstring)."""
    from jaxinv.objectives import regularisers
    if not np.isfinite(bound_plus) or parameterisation.bounded or not parameterisation.invertible:
        return None
    if all(isinstance(piece, Pixels) for piece in parameterisation.pieces):
        return lambda weights, params, shape: regularisers.project_bounded_range(params, bound_plus)
    return lambda weights, params, shape: parameterisation.inverse(
        weights, regularisers.project_bounded_range(parameterisation.apply(weights, params, shape), bound_plus))


def estimate_colour_sqrt(images) -> np.ndarray:
    """M (3, 3) from RGB images (N, H, W, 3) in [0, 255]: the covariance C of all their pixels' colours
    (each channel's mean removed), C = U S U^T, M = U S^(1/2) / sqrt(max S) (columns ordered by variance,
    each signed so that its entries sum to >= 0). Then y of unit variance per channel gives x = y M^T
    with the colour covariance of the images divided by the largest variance."""
    pixels = np.asarray(images, np.float64).reshape(-1, 3)
    if len(pixels) < 3:
        raise ValueError("need at least three pixels to estimate a colour covariance")
    covariance = np.cov(pixels, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    vectors = vectors * np.where(vectors.sum(axis=0) < 0, -1.0, 1.0)
    return vectors * np.sqrt(np.maximum(values, 0)) / np.sqrt(values[0])
