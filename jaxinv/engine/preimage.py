"""The pre-image engine: x* = argmin_x R_alpha(x) + R_TV^beta(x) + C * loss(Phi(x), Phi0)  (IJCV Eq. 1).

One compiled step holds the representation, the objective and the solver update; K random restarts
are one vmapped computation, sharded over devices when several are present. Images here have
null mean (the representation's mean subtracted), units of [0, 255] pixels, shape (H, W, D).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxinv.engine import compilation, parameterisation
from jaxinv.engine import solver as solvers
from jaxinv.objectives import losses, regularisers
from jaxinv.objectives.losses import Target
from jaxinv.engine.representation import Representation


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_number(name: str, value, *, optional: bool = False, infinite: bool = False) -> None:
    """Raises ValueError unless `value` is a positive real number (finite unless `infinite`; None if `optional`)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if np.isnan(value) or (np.isinf(value) and not infinite) or not value > 0:
        raise ValueError(f"{name} must be a positive{'' if infinite else ' finite'} number, got {value}")


@dataclasses.dataclass(frozen=True)
class Problem:
    """Parameters of IJCV Eq. 1; defaults are Sect. 3.3's (C = 1, alpha = 6, beta = 2, B = 80,
    B+ = 2B, V = B/6.5) and the loss is Eq. 2. `loss` names a registered loss
    (`jaxinv.objectives.losses.names()`): 'inversion' (Eq. 2), 'masked_inversion' (Eq. 3),
    'inner_product' (Eq. 4), 'texture' (the Gram term of Eq. 8) or 'style' (Eq. 2 on a content layer
    plus the Gram term)."""
    loss: str = "inversion"
    C: float = 1.0
    alpha: float = 6.0
    beta: float = 2.0
    bound: float = 80.0
    bound_plus: float | None = None
    tv_scale: float | None = None
    jitter: int = 1

    def __post_init__(self):
        losses.get(self.loss)  # raises, listing the registered losses
        for name in ("C", "alpha", "beta", "bound"):
            _check_number(name, getattr(self, name))
        _check_number("bound_plus", self.bound_plus, optional=True, infinite=True)  # inf: no projection (CVPR 2015)
        _check_number("tv_scale", self.tv_scale, optional=True)
        if not _is_integer(self.jitter) or self.jitter < 1:
            raise ValueError(f"jitter T must be an integer >= 1 (1 = none), got {self.jitter!r}")

    @property
    def B_plus(self) -> float:
        return 2 * self.bound if self.bound_plus is None else self.bound_plus

    @property
    def V(self) -> float:
        return self.bound / 6.5 if self.tv_scale is None else self.tv_scale


@dataclasses.dataclass(frozen=True)
class Stage:
    """A run of `iterations` solver steps at `step_scale` times the rate, with or without jitter."""
    iterations: int
    step_scale: float = 1.0
    jitter: bool = True

    def __post_init__(self):
        if not _is_integer(self.iterations) or self.iterations < 0:
            raise ValueError(f"a stage's iterations must be an integer >= 0, got {self.iterations!r}")
        _check_number("step_scale", self.step_scale)


def default_stages(iterations: int = 300, refine_iterations: int = 50) -> tuple[Stage, ...]:
    """The authors' schedule: `iterations` with jitter, then `refine_iterations` at a tenth of the rate without."""
    stages = (Stage(iterations, 1.0, True),)
    return stages + ((Stage(refine_iterations, 0.1, False),) if refine_iterations else ())


def check_traceable(representation: Representation) -> None:
    if not representation.traceable:
        raise ValueError(f"representation {representation.name!r} is computed on the host and has no gradient: "
                         "it cannot be inverted by optimisation (train a learned inverter: jaxinv.inverters)")


def make_target(representation: Representation, problem: Problem, image=None, *, phi0=None, mask=None,
                z=None, weights=None) -> Target:
    """The checked Target of `problem.loss` (`jaxinv.objectives.losses`), from an image in [0, 255]
    or a code phi0 (the Gram losses need phi0 = {"grams": ..., "content": ...} and `weights`, see
    jaxinv.methods.texture)."""
    if phi0 is None:
        if image is None:
            raise ValueError("give the reference image or the target code phi0")
        phi0 = representation(representation.to_null_mean(image))
    return losses.get(problem.loss).check(Target(phi0, mask, z, weights))


def energy_terms(x, key, representation: Representation, problem: Problem, target: Target, max_shift,
                 params=None):
    """IJCV Eq. 1 for one null-mean image x: returns {'loss', 'range', 'tv', 'energy'}.
    `params` are the representation's weights (default: its own)."""
    seen = x
    if problem.jitter > 1:
        size = (x.shape[0] - problem.jitter + 1, x.shape[1] - problem.jitter + 1)
        seen = regularisers.jitter(x, key, max_shift, size)
    loss = losses.get(problem.loss).value(representation(seen, params), target)
    range_term = regularisers.bounded_range(x, problem.alpha, problem.bound)
    tv_term = regularisers.total_variation(x, problem.beta, problem.V)
    return {"loss": loss, "range": range_term, "tv": tv_term,
            "energy": range_term + tv_term + problem.C * loss}


def default_eta0(problem: Problem, image_shape: Sequence[int]) -> float:
    """The authors' rate: 0.05 B^2 / alpha times the number of pixels (regularisers are per-pixel means)."""
    return 0.05 * problem.bound ** 2 / problem.alpha * image_shape[0] * image_shape[1]


def make_solver(problem: Problem, image_shape: Sequence[int], *, eta0: float | None = None,
                rho: float = 0.9) -> optax.GradientTransformation:
    """Algorithm 1 with the Eq. 6 projection. The step scale is a value in the solver's state
    (`optax.inject_hyperparams`), which `solve` sets at the start of each stage: the compiled step
    does not depend on the stages' scales. (A scan chunk's length is still a static shape: a stage
    whose length is not a multiple of `progress_every` compiles one more scan for the remainder.)"""
    eta0 = default_eta0(problem, image_shape) if eta0 is None else eta0
    adagrad = optax.inject_hyperparams(solvers.preimage_adagrad, static_args=("eta0", "rho"))
    return solvers.projected(adagrad(eta0=eta0, rho=rho, step_scale=1.0),
                             lambda x: regularisers.project_bounded_range(x, problem.B_plus))


def with_step_scale(opt_state, scale: float):
    """The solver state with the step scale of a stage (unchanged for a solver without one)."""
    if "step_scale" in getattr(opt_state, "hyperparams", {}):  # optax.inject_hyperparams' state
        value = jnp.asarray(scale, opt_state.hyperparams["step_scale"].dtype)
        return opt_state._replace(hyperparams={**opt_state.hyperparams, "step_scale": value})
    return opt_state


random_init = parameterisation.random_init  # the authors' init (one rule, shared with the Pixels piece)


def start_from(null_mean_image, problem: Problem, restarts: int = 1) -> np.ndarray:
    """x_init from one null-mean image (H, W, D): edge-replicated by T - 1 pixels at the bottom and right
    (the representation sees the top-left H x W at zero shift), tiled to (restarts, H + T - 1, W + T - 1, D)."""
    pad = problem.jitter - 1
    x = np.pad(np.asarray(null_mean_image, np.float32), ((0, pad), (0, pad), (0, 0)), mode="edge")
    return np.repeat(x[None], restarts, axis=0)


class PreimageResult(NamedTuple):
    images: np.ndarray  # (K, H, W, D) null-mean
    history: dict  # term name -> (iterations, K)
    seconds: float  # of the iterations (compilation on a first call included), not of the start
    parameters: Any = None  # with a prior: the optimised parameters (leading axis K); else None (the images)


def _restart_mesh() -> Mesh | None:
    devices = jax.local_devices()  # this process's: in a multi-process run each process solves its own problems
    return Mesh(np.array(devices), ("restarts",)) if len(devices) > 1 else None


def _shard_restarts(tree, num_restarts: int):
    """Places arrays with a leading restart axis across all of this process's devices (others replicated)."""
    mesh = _restart_mesh()
    if mesh is None or num_restarts % mesh.size:
        return tree
    split, whole = NamedSharding(mesh, PartitionSpec("restarts")), NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda a: jax.device_put(a, split if a.ndim and a.shape[0] == num_restarts else whole), tree)


def place_weights(tree, shard: bool = True):
    """Places a representation's weights whole on every device (whatever their leading axis), or
    on the default device. Always committed: freshly made and restored weights then hit the same
    compiled program (jit's cache tells committed from uncommitted arrays)."""
    mesh = _restart_mesh() if shard else None
    return jax.device_put(tree, jax.local_devices()[0] if mesh is None else NamedSharding(mesh, PartitionSpec()))


@functools.lru_cache(maxsize=64)
def _compiled_steps(representation: Representation, problem: Problem, eta0: float, image_shape: tuple[int, int],
                    batched_target: bool, solver: optax.GradientTransformation | None):
    """The solver's init and the jitted step (one iteration) and scan (many) for this configuration.

    Cached on the static structure only: the target and the representation's weights are arguments,
    so inverting many images, the same representation with other weights, or other stages, compiles once.
    """
    tx = solver or make_solver(problem, image_shape, eta0=eta0)

    def one_restart_energy(xk, key, shift, target, params):
        terms = energy_terms(xk, key, representation, problem, target, shift, params)
        return terms["energy"], terms

    grad_fn = jax.vmap(jax.value_and_grad(one_restart_energy, has_aux=True),
                       in_axes=(0, 0, None, 0 if batched_target else None, None))

    def step(carry, shift, target, params):
        x, opt_state, keys = carry
        keys, step_keys = jnp.split(jax.vmap(jax.random.split)(keys), 2, axis=1)
        (_, terms), grads = grad_fn(x, step_keys[:, 0], shift, target, params)
        updates, opt_state = tx.update(grads, opt_state, x)
        return (optax.apply_updates(x, updates), opt_state, keys[:, 0]), terms

    def scan(carry, shifts, target, params):
        return jax.lax.scan(lambda c, shift: step(c, shift, target, params), carry, shifts)

    return tx.init, compilation.jit(step, donate_argnums=0), compilation.jit(scan, donate_argnums=0)


def compile_step(representation: Representation, problem: Problem, target: Target, image_shape: Sequence[int],
                 restarts: int = 1):
    """The compiled single step `solve` runs for `restarts` restarts of image_shape (H, W), as a
    `jax.stages.Compiled` (for its HLO text, memory and cost analyses). The traced step is `solve`'s own
    (`_compiled_steps`); each call compiles it ahead of time again, so callers keep the result."""
    shape = tuple(image_shape)
    init, step, _ = _compiled_steps(representation, problem, default_eta0(problem, shape), shape, False, None)
    x = jnp.zeros((restarts, *shape, representation.channels), jnp.float32)
    carry = (x, init(x), jax.random.split(jax.random.key(0), restarts))
    return step.lower(carry, 1, target, place_weights(representation.params)).compile()


def solve(representation: Representation, problem: Problem, target: Target, *, image_shape: Sequence[int],
          key, restarts: int = 1, stages: Sequence[Stage] = default_stages(), x_init=None,
          eta0: float | None = None, loop: Literal["python", "scan"] = "scan", shard: bool = True,
          batched_target: bool = False, solver: optax.GradientTransformation | None = None,
          progress: Callable[[int, dict, float], Any] | None = None, progress_every: int = 50,
          prior=None) -> PreimageResult:
    """Minimises IJCV Eq. 1 from `restarts` random initialisations (or `x_init`, (K, H, W, D)) at once.

    `image_shape` is the (H, W) the representation sees; with jitter T the optimised image is
    T-1 pixels larger. With `batched_target` every leaf of `target` has a leading axis of size
    `restarts` and batch element k is compared with target k (many images in one computation).
    With several devices and `shard`, the batch is split across them. `loop` = 'scan' (default,
    measured faster on CPU: benchmarks/engine.py) runs `progress_every` iterations per call inside
    one XLA program; 'python' calls a jitted single step per iteration. `solver` replaces
    Algorithm 1 (then `eta0` and the stages' step scales are unused; jitter still follows the stages).
    `prior` (`jaxinv.engine.image_prior.Prior`: a parameterisation, transformations, a diversity term)
    switches to the engine's second path; None is IJCV's, unchanged.
    Returns the final images and the per-iteration energy terms.
    """
    stages = _check_run(representation, target, restarts, stages, loop, progress_every, batched_target)
    height, width = _seen_shape(image_shape, representation)
    height, width = height + problem.jitter - 1, width + problem.jitter - 1
    if prior is not None:
        from jaxinv.engine import image_prior
        if not isinstance(prior, image_prior.Prior):
            raise ValueError(f"prior must be a jaxinv.engine.image_prior.Prior; got {type(prior).__name__}")
        return image_prior.solve(representation, problem, target, prior, height=height, width=width, key=key,
                                 restarts=restarts, stages=stages, x_init=x_init, eta0=eta0, loop=loop, shard=shard,
                                 batched_target=batched_target, solver=solver, progress=progress,
                                 progress_every=progress_every)
    x = _initial_images(key, x_init, (restarts, height, width, representation.channels), problem.bound)
    eta0 = default_eta0(problem, (height, width)) if eta0 is None else float(eta0)
    init, step, scan = _compiled_steps(representation, problem, eta0, (height, width), batched_target, solver)
    carry = (x, init(x), jax.random.split(jax.random.split(key)[1], restarts))
    params = place_weights(representation.params, shard)
    if shard:
        carry = _shard_restarts(carry, restarts)
        if batched_target:
            target = _shard_restarts(target, restarts)
    run = functools.partial(step if loop == "python" else scan, target=target, params=params)
    # The clock times the iterations only: the random start (a sort for its 95th percentile, 44 ms per
    # 227x227 RGB restart on CPU) is dispatched asynchronously and would otherwise land in the first chunk.
    carry = jax.block_until_ready(carry)
    start = time.perf_counter()
    carry, history = _run_stages(run, carry, stages, problem.jitter, loop, progress, progress_every, start)
    stacked = {name: np.concatenate([np.asarray(h[name]) for h in history]) for name in TERMS}
    return PreimageResult(np.asarray(carry[0]), stacked, time.perf_counter() - start)


TERMS = ("energy", "loss", "range", "tv")


def _check_run(representation, target, restarts, stages, loop, progress_every, batched_target) -> tuple[Stage, ...]:
    check_traceable(representation)
    if not isinstance(target, Target):
        raise ValueError(f"target must be a jaxinv.engine.preimage.Target (see make_target); got {type(target).__name__}")
    if loop not in ("python", "scan"):
        raise ValueError(f"unknown loop {loop!r}; use 'python' or 'scan'")
    if not _is_integer(restarts) or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    if not _is_integer(progress_every) or progress_every < 1:
        raise ValueError(f"progress_every must be an integer >= 1, got {progress_every!r}")
    stages = tuple(stages)
    if not stages or not all(isinstance(s, Stage) for s in stages):
        raise ValueError("stages must be a non-empty list of Stage")
    if sum(s.iterations for s in stages) == 0:
        raise ValueError("the stages have no iterations: nothing would be optimised (the result would be the start)")
    if batched_target:
        sizes = {leaf.shape[0] for leaf in jax.tree_util.tree_leaves(target) if jnp.ndim(leaf)}
        if sizes != {restarts}:
            raise ValueError(f"batched_target needs a leading axis of size {restarts} on every target array; "
                             f"found sizes {sorted(sizes)}")
    return stages


def _seen_shape(image_shape, representation: Representation) -> tuple[int, int]:
    if len(image_shape) < 2 or not all(_is_integer(n) and n >= representation.min_size for n in image_shape[:2]):
        raise ValueError(f"image_shape must be (H, W) with H, W >= {representation.min_size} for representation "
                         f"{representation.name!r}; got {tuple(image_shape)}")
    return int(image_shape[0]), int(image_shape[1])


def _initial_images(key, x_init, shape, bound: float):
    """Random starts (the authors' init) or a copy of x_init, checked: the step donates its input buffers."""
    if x_init is None:
        return random_init(jax.random.split(key)[0], shape, bound)
    x = jnp.array(x_init, jnp.float32, copy=True)
    if x.shape != shape:
        raise ValueError(f"x_init must have shape {shape} (restarts, H + T - 1, W + T - 1, channels); "
                         f"got {tuple(x.shape)}")
    if not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x_init contains non-finite values")
    return x


def _run_stages(run, carry, stages, jitter, loop, progress, progress_every, start, off_shift=1, names=TERMS):
    """Runs every stage: the jitted step once per iteration ('python') or scans of `progress_every`
    iterations ('scan'); checks the energy terms `names` for non-finite values at every report. A stage
    without jitter passes the shift `off_shift` (the prior path's steps read 0 as "transformations off")."""
    history, done, total = [], 0, sum(s.iterations for s in stages)
    for stage in stages:
        shift = jitter if stage.jitter else off_shift
        x, opt_state, keys = carry
        carry, begin = (x, with_step_scale(opt_state, stage.step_scale), keys), 0
        while begin < stage.iterations:
            length = 1 if loop == "python" else min(progress_every, stage.iterations - begin)
            if loop == "python":
                carry, terms = run(carry, jnp.int32(shift))
                terms = jax.tree_util.tree_map(lambda a: a[None], terms)
            else:
                carry, terms = run(carry, jnp.full((length,), shift, jnp.int32))
            history.append(terms)
            begin, done = begin + length, done + length
            if loop == "scan" or done % progress_every == 0 or done == total:
                last = jax.tree_util.tree_map(lambda a: np.asarray(a[-1]), terms)
                _check_finite(last, done, names)
                if progress:
                    progress(done, last, time.perf_counter() - start)
    return carry, history


def _check_finite(terms: dict, done: int, names=TERMS) -> None:
    bad = [name for name in names if not np.all(np.isfinite(terms[name]))]
    if bad:
        raise FloatingPointError(f"the objective became non-finite by iteration {done} (terms: {', '.join(bad)}); "
                                 "check C, the bounds and the step sizes")


def print_progress(done: int, terms: dict, elapsed: float) -> None:
    """Default progress line: iteration, mean energy terms over restarts, elapsed seconds."""
    print(f"  iter {done:4d}  energy {np.mean(terms['energy']):.4f}  loss {np.mean(terms['loss']):.4f}  "
          f"range {np.mean(terms['range']):.4f}  tv {np.mean(terms['tv']):.4f}  {elapsed:6.1f}s", flush=True)


def crop_seen(problem: Problem, x):
    """The part of an optimised (jittered-size) image that the representation sees at offset 0."""
    t = problem.jitter - 1
    return x[..., : x.shape[-3] - t, : x.shape[-2] - t, :]
