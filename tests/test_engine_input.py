"""The engine refuses bad numbers at its boundary and stops on a diverged objective (never a NaN result)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.engine import preimage
from jaxinv.engine.preimage import Problem, Stage
from jaxinv.engine.representation import Representation

POOL = Representation("pool4", lambda _, x: jax.lax.reduce_window(x, 0.0, jax.lax.add, (4, 4, 1), (4, 4, 1), "VALID"),
                      channels=1, mean=(128.0,))
IMAGE = np.random.default_rng(0).uniform(0, 255, (16, 16)).astype(np.float32)


@pytest.mark.parametrize("settings,message", [
    (dict(C=float("inf")), "C must be a positive finite number, got inf"),
    (dict(C=float("nan")), "C must be a positive finite number, got nan"),
    (dict(bound=0.0), "bound must be a positive finite number"),
    (dict(bound_plus=float("nan")), "bound_plus must be a positive number"),
    (dict(tv_scale=0.0), "tv_scale must be a positive finite number"),
    (dict(jitter=2.5), "jitter T must be an integer >= 1"),
    (dict(alpha="6"), "alpha must be a number"),
])
def test_problem_numbers_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        Problem(**settings)


def test_infinite_projection_bound_is_allowed():
    assert Problem(bound_plus=float("inf")).B_plus == float("inf")  # the CVPR 2015 preset projects nothing


@pytest.mark.parametrize("stage,message", [
    (lambda: Stage(10, float("nan")), "step_scale must be a positive finite number, got nan"),
    (lambda: Stage(10, 0.0), "step_scale must be a positive finite number"),
    (lambda: Stage(-1), "iterations must be an integer >= 0"),
    (lambda: Stage(2.5), "iterations must be an integer >= 0"),
])
def test_stage_numbers_are_checked(stage, message):
    with pytest.raises(ValueError, match=message):
        stage()


def solve(**overrides):
    problem = overrides.pop("problem", Problem(C=100))
    target = overrides.pop("target", preimage.make_target(POOL, problem, IMAGE))
    arguments = dict(image_shape=(16, 16), key=jax.random.key(0), restarts=2, stages=(Stage(4),))
    return preimage.solve(POOL, problem, target, **dict(arguments, **overrides))


@pytest.mark.parametrize("overrides,message", [
    (dict(restarts=2.5), "restarts must be an integer >= 1, got 2.5"),
    (dict(restarts=0), "restarts must be an integer >= 1"),
    (dict(stages=(Stage(0), Stage(0, 0.1))), "the stages have no iterations"),
    (dict(progress_every=-1), "progress_every must be an integer >= 1"),
    (dict(image_shape=(0, 0)), r"image_shape must be \(H, W\) with H, W >= 1"),
    (dict(image_shape=(16,)), r"image_shape must be \(H, W\)"),
    (dict(target=np.ones((4, 4, 1))), "target must be a jaxinv.engine.preimage.Target"),
])
def test_run_arguments_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        solve(**overrides)


@pytest.mark.parametrize("loop", ["scan", "python"])
def test_a_non_finite_objective_stops_naming_the_iteration(loop):
    # sqrt of pixels below the mean: the loss is NaN from the first iteration on.
    broken = Representation("sqrt", lambda _, x: jnp.sqrt(x - 128.0), channels=1, mean=(128.0,))
    problem = Problem(C=100)
    target = preimage.make_target(broken, problem, phi0=np.ones((16, 16, 1)))
    with pytest.raises(FloatingPointError, match="non-finite by iteration 1 .terms: energy, loss"):
        preimage.solve(broken, problem, target, image_shape=(16, 16), key=jax.random.key(0), stages=(Stage(4),),
                       loop=loop, progress_every=1)


def test_a_sane_run_passes_the_checks():
    result = solve()
    assert np.all(np.isfinite(result.images)) and result.history["energy"].shape == (4, 2)
    assert jnp.all(result.history["loss"][-1] < result.history["loss"][0])
