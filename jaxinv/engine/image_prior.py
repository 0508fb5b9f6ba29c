"""Priors beyond the papers' (the engine's second path): a parameterisation of the image, random
transformations, and a diversity term coupling the restarts of one target.

    prior = Prior(parameterisation=chain(Fourier(1.0), DecorrelatedColour()),
                  transforms=transforms.lucid_transforms(32), regularisers=False)
    preimage.solve(representation, problem, target, image_shape=(32, 32), key=key, restarts=4, prior=prior)

`preimage.solve(..., prior=None)` is the IJCV engine, unchanged. With a `Prior` the solver (Algorithm 1
and its rate rule, or the given optax transformation) optimises the parameters of
`prior.parameterisation` (`jaxinv.engine.parameterisation`); each restart's energy is IJCV Eq. 1 on
the produced image x:

    E_k = [R_alpha(x_k) + R_TV(x_k)] + C loss(Phi(t_k(x_k)), Phi0) (+ w s_k)

with t_k the Eq. 7 jitter of the problem followed by `prior.transforms` (`jaxinv.engine.transforms`),
drawn afresh for every restart and iteration, the regularisers included when `prior.regularisers`,
and s_k (with `prior.diversity`) restart k's mean cosine similarity of Gram matrices to the other
restarts of its target (`objectives.regularisers.gram_cosine_similarity`, at the diversity layer,
on the transformed images). Only that term couples restarts: the gradient is of sum_k E_k, which
for the rest is each restart's own gradient, so restarts stay one vmapped computation. The Eq. 6
projection follows `parameterisation.projection`. Weights (the representation's, the decoder's,
the diversity layer's) are arguments of the compiled step, cached on the static structure.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv.engine import compilation
from jaxinv.engine import parameterisation as parameterisations
from jaxinv.engine import preimage
from jaxinv.engine import solver as solvers
from jaxinv.engine import transforms as transformations
from jaxinv.engine.representation import Representation
from jaxinv.objectives import losses, regularisers


@dataclasses.dataclass(frozen=True)
class Diversity:
    """w * (each restart's mean Gram cosine similarity to the others of its target) at `representation`
    (a layer with an (h, w, c) map); the restarts of one target are consecutive blocks of `group`."""
    representation: Representation
    weight: float
    group: int

    def __post_init__(self):
        preimage._check_number("diversity weight", self.weight)
        if not preimage._is_integer(self.group) or self.group < 2:
            raise ValueError(f"diversity needs groups of at least 2 restarts, got {self.group!r}")


@dataclasses.dataclass(frozen=True)
class Prior:
    """How the image is made and seen: `parameterisation` (a piece or chain; None: pixels),
    `transforms` after the Eq. 7 jitter, whether Eq. 1's regularisers R_alpha and R_TV are included,
    and an optional `Diversity` term."""
    parameterisation: Any = None
    transforms: tuple = ()
    regularisers: bool = True
    diversity: Diversity | None = None

    def __post_init__(self):
        object.__setattr__(self, "parameterisation", parameterisations.as_chain(self.parameterisation))
        object.__setattr__(self, "transforms", tuple(self.transforms))
        if not all(callable(t) for t in self.transforms):
            raise ValueError(f"transforms must be keyed functions t(key, x, active); got {self.transforms!r}")

    def weights(self) -> dict:
        """The pytree of weights the compiled step takes (image pieces', diversity layer's)."""
        return {"image": self.parameterisation.weights,
                "diversity": None if self.diversity is None else self.diversity.representation.params}


def restart_terms(p, key, active, target, params, weights, *, representation: Representation, problem, prior: Prior,
                  shape):
    """One restart's terms {'loss', 'range', 'tv', 'energy'} and the image the representation saw."""
    x = prior.parameterisation.apply(weights["image"], p, shape)
    seen = transformations.Jitter(problem.jitter)(key, x, active)
    seen = transformations.compose(prior.transforms, jax.random.fold_in(key, 1), seen, active)
    loss = losses.get(problem.loss).value(representation(seen, params), target)
    if prior.regularisers:
        range_term = regularisers.bounded_range(x, problem.alpha, problem.bound)
        tv_term = regularisers.total_variation(x, problem.beta, problem.V)
    else:
        range_term = tv_term = jnp.zeros((), jnp.float32)
    return {"loss": loss, "range": range_term, "tv": tv_term,
            "energy": range_term + tv_term + problem.C * loss}, seen


def batch_energy(P, keys, active, target, params, weights, *, representation, problem, prior, shape, batched_target):
    """sum_k E_k over the restarts (P: leading restart axis) and the per-restart terms."""
    one = functools.partial(restart_terms, representation=representation, problem=problem, prior=prior, shape=shape)
    terms, seen = jax.vmap(one, in_axes=(0, 0, None, 0 if batched_target else None, None, None))(
        P, keys, active, target, params, weights)
    if prior.diversity is not None:
        d = prior.diversity
        features = jax.vmap(d.representation, in_axes=(0, None))(seen, weights["diversity"])
        terms["diversity"] = regularisers.gram_cosine_similarity(features, d.group)
        terms["energy"] = terms["energy"] + d.weight * terms["diversity"]
    return jnp.sum(terms["energy"]), terms


def term_names(prior: Prior) -> tuple[str, ...]:
    return preimage.TERMS + (("diversity",) if prior.diversity is not None else ())


@functools.lru_cache(maxsize=32)
def compiled_steps(representation: Representation, problem, prior: Prior, eta0: float, image_shape: tuple,
                   batched_target: bool, solver: optax.GradientTransformation | None):
    """(init, step, scan, render) for this static structure; weights and targets are arguments."""
    shape = (image_shape[0], image_shape[1], representation.channels)
    energy = functools.partial(batch_energy, representation=representation, problem=problem, prior=prior,
                               shape=shape, batched_target=batched_target)
    grad_fn = jax.value_and_grad(energy, has_aux=True)
    if solver is None:
        adagrad = optax.inject_hyperparams(solvers.preimage_adagrad, static_args=("eta0", "rho"))
        inner = adagrad(eta0=eta0, rho=0.9, step_scale=1.0)
    else:
        inner = solver
    project = parameterisations.projection(prior.parameterisation, problem.B_plus)

    def transformation(weights):
        if solver is not None or project is None:
            return inner
        batched = jax.vmap(lambda p: project(weights["image"], p, shape))
        return solvers.projected(inner, batched)

    def step(carry, shift, target, params, weights):
        P, opt_state, keys = carry
        keys, step_keys = jnp.split(jax.vmap(jax.random.split)(keys), 2, axis=1)
        (_, terms), grads = grad_fn(P, step_keys[:, 0], shift > 0, target, params, weights)
        updates, opt_state = transformation(weights).update(grads, opt_state, P)
        return (optax.apply_updates(P, updates), opt_state, keys[:, 0]), terms

    def scan(carry, shifts, target, params, weights):
        return jax.lax.scan(lambda c, shift: step(c, shift, target, params, weights), carry, shifts)

    def render(weights, P):
        return jax.vmap(lambda p: prior.parameterisation.apply(weights["image"], p, shape))(P)

    return (inner.init, compilation.jit(step, donate_argnums=0), compilation.jit(scan, donate_argnums=0),
            compilation.jit(render))


def initial_parameters(prior: Prior, weights, key, x_init, shape, bound: float):
    """The start: the parameterisation's own random draw, or x_init's parameters (invertible ones only)."""
    chain = prior.parameterisation
    if x_init is None:
        return chain.init(weights["image"], jax.random.split(key)[0], shape, bound)
    if not chain.invertible:
        raise ValueError("x_init needs an invertible parameterisation (a decoder has no inverse)")
    x = preimage._initial_images(key, x_init, shape, bound)
    return jax.jit(jax.vmap(lambda image: chain.inverse(weights["image"], image)))(x)


def solve(representation: Representation, problem, target, prior: Prior, *, height: int, width: int, key,
          restarts: int, stages, x_init, eta0, loop, shard, batched_target, solver, progress,
          progress_every) -> preimage.PreimageResult:
    """`preimage.solve` with a prior (its arguments already checked there)."""
    if prior.diversity is not None and restarts % prior.diversity.group:
        raise ValueError(f"{restarts} restarts do not split into diversity groups of {prior.diversity.group}")
    shape = (restarts, height, width, representation.channels)
    weights = preimage.place_weights(prior.weights(), shard)
    P = initial_parameters(prior, weights, key, x_init, shape, problem.bound)
    eta0 = preimage.default_eta0(problem, (height, width)) if eta0 is None else float(eta0)
    init, step, scan, render = compiled_steps(representation, problem, prior, eta0, (height, width), batched_target,
                                              solver)
    carry = (P, init(P), jax.random.split(jax.random.split(key)[1], restarts))
    params = preimage.place_weights(representation.params, shard)
    if shard:
        carry = preimage._shard_restarts(carry, restarts)
        if batched_target:
            target = preimage._shard_restarts(target, restarts)
    run = functools.partial(step if loop == "python" else scan, target=target, params=params, weights=weights)
    names = term_names(prior)
    carry = jax.block_until_ready(carry)  # as preimage.solve: the clock times the iterations, not the start
    start = preimage.time.perf_counter()
    carry, history = preimage._run_stages(run, carry, stages, problem.jitter, loop, progress, progress_every, start,
                                          off_shift=0, names=names)
    stacked = {name: np.concatenate([np.asarray(h[name]) for h in history]) for name in names}
    images = np.asarray(render(weights, carry[0]))
    return preimage.PreimageResult(images, stacked, preimage.time.perf_counter() - start, carry[0])
