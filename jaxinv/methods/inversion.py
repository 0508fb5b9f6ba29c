"""Inverting representations of whole images: the library behind the inversion experiments."""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv.engine import preimage
from jaxinv.io import arguments
from jaxinv.io.progress import solver_progress
from jaxinv.methods import metrics
from jaxinv.engine import solver as solvers
from jaxinv.engine.preimage import Problem, Stage
from jaxinv.engine.representation import Representation


def shallow_problem(C: float = 100.0) -> Problem:
    """IJCV Sect. 5.1 settings for HOG, HOGb and DSIFT: C = 100, no jitter, other terms at defaults."""
    return Problem(C=C, jitter=1)


@dataclasses.dataclass(frozen=True)
class Cvpr2015:
    """The CVPR 2015 formulation and solver, as in the authors' code for shallow representations:

    ||Phi(x) - Phi0||^2/||Phi0||^2 + (lambda_tv/2 TV^tv_beta(x) + lambda_l/2 sum x^beta) / sigma^2,
    minimised by momentum 0.9 on the gradient scaled by sigma^2 with the rate dropped tenfold every
    `iterations_per_rate` iterations (momentum reset at each drop). sigma is the average norm of
    null-mean natural images in pixel units. The energy is IJCV Eq. 1 with C = 1 and
    B = (2 sigma^2 / (lambda_l H W))^(1/beta), V = (2 sigma^2 / (lambda_tv H W))^(1/tv_beta)
    (for grey images the isotropic and per-component norms coincide).
    """
    sigma: float
    lambda_tv: float = 1.0
    lambda_l: float = 8e-10
    beta: float = 6.0
    tv_beta: float = 2.0
    learning_rate: float = 0.004
    rate_drops: int = 4
    iterations_per_rate: int = 200
    momentum: float = 0.9

    def problem(self, image_shape) -> Problem:
        area = image_shape[0] * image_shape[1]
        return Problem(C=1.0, alpha=self.beta, beta=self.tv_beta,
                       bound=(2 * self.sigma ** 2 / (self.lambda_l * area)) ** (1 / self.beta),
                       tv_scale=(2 * self.sigma ** 2 / (self.lambda_tv * area)) ** (1 / self.tv_beta),
                       bound_plus=float("inf"))

    def stages(self) -> tuple[Stage, ...]:
        return (Stage(self.rate_drops * self.iterations_per_rate, 1.0, False),)

    @functools.cached_property
    def solver(self) -> optax.GradientTransformation:
        """One transformation per preset, so that repeated inversions reuse the compiled step."""
        rates = self.learning_rate * 0.1 ** np.repeat(np.arange(self.rate_drops), self.iterations_per_rate)
        return optax.chain(optax.scale(self.sigma ** 2), solvers.momentum_with_resets(rates, self.momentum))


def average_image_norm(null_mean_images) -> float:
    """sigma of the CVPR 2015 formulation: the mean Euclidean norm of null-mean images."""
    return float(np.mean([np.linalg.norm(np.asarray(x)) for x in null_mean_images]))


@dataclasses.dataclass
class Inversion:
    """Reconstructions of N images with K restarts each, and how well they match the targets."""
    representation: str
    images: np.ndarray  # (N, K, H, W[, 3]) in [0, 255] for display
    null_mean: np.ndarray  # (N, K, H, W, D) as optimised (representation's input minus its mean)
    errors: np.ndarray  # (N, K) IJCV Eq. 3 normalised error of Phi(x*) against Phi(x_i)
    codes: np.ndarray  # (N, K, ...) Phi(x*)
    target_codes: np.ndarray  # (N, ...) Phi(x_i)
    history: dict  # term -> (iterations, N * K)
    seconds: float


@functools.lru_cache(maxsize=16)
def _batched_codes(representation: Representation):
    return jax.jit(jax.vmap(representation, in_axes=(0, None)))


def codes_of(representation: Representation, x) -> np.ndarray:
    """Phi of a batch of null-mean images (B, H, W, D), compiled once per representation structure
    (the weights are an argument)."""
    params = preimage.place_weights(representation.params, shard=False)
    return np.asarray(_batched_codes(representation)(jnp.asarray(x, jnp.float32), params))


def invert_images(representation: Representation, images_in: Sequence[np.ndarray], *, problem: Problem | None = None,
                  restarts: int = 1, seed: int = 0, stages: Sequence[Stage] = preimage.default_stages(),
                  loop: str = "scan", progress=None, progress_every: int = 50,
                  cvpr2015: Cvpr2015 | None = None, prior=None) -> Inversion:
    """Inverts Phi of each image (all the same size, [0, 255]) from `restarts` random starts each,
    all N * K problems in one vmapped computation (`cvpr2015` switches to that formulation; `prior`,
    a `jaxinv.engine.image_prior.Prior`, to the engine's prior path: the restarts of image i are the
    consecutive block i, the groups of a diversity term)."""
    if not len(images_in):
        raise ValueError("no images to invert")
    restarts, seed = arguments.check_count("restarts", restarts), arguments.check_seed(seed)
    for i, image in enumerate(images_in):
        if np.ndim(image) not in (2, 3):
            raise ValueError(f"image {i} must have shape (H, W) or (H, W, C); got shape {np.shape(image)}")
    shapes = {np.shape(im)[:2] for im in images_in}
    if len(shapes) != 1:
        raise ValueError(f"images must share one size to be inverted together; got sizes {sorted(shapes)}")
    (height, width), = shapes
    if min(height, width) < representation.min_size:
        raise ValueError(f"images of {height}x{width} are too small for {representation.name!r} "
                         f"(need at least {representation.min_size} pixels a side)")
    x_ref = jnp.stack([representation.to_null_mean(im) for im in images_in])
    solver = None
    if cvpr2015 is not None:
        problem, stages, solver = cvpr2015.problem((height, width)), cvpr2015.stages(), cvpr2015.solver
    problem = problem or Problem()
    target_codes = codes_of(representation, x_ref)
    for code in target_codes:  # checks each target (e.g. a blank image has a zero code)
        preimage.make_target(representation, problem, phi0=code)
    num = len(target_codes)
    batched = preimage.Target(jnp.repeat(jnp.asarray(target_codes), restarts, axis=0))
    result = preimage.solve(representation, problem, batched, image_shape=(height, width), key=jax.random.key(seed),
                            restarts=num * restarts, stages=stages, loop=loop, batched_target=True, solver=solver,
                            progress=solver_progress(progress, stages), progress_every=progress_every, prior=prior)
    seen = preimage.crop_seen(problem, result.images)
    codes = codes_of(representation, seen)
    errors = np.array([metrics.normalised_error(c, target_codes[i // restarts]) for i, c in enumerate(codes)])
    shape = lambda a: a.reshape((num, restarts) + a.shape[1:])
    return Inversion(representation.name, shape(representation.to_display(seen)), shape(seen), shape(errors),
                     shape(codes), target_codes, result.history, result.seconds)
