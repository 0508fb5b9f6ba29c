"""The engine: convergence, vmapped restarts, loops, determinism, sharding, errors."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.engine.preimage import Problem, Stage
from jaxinv.engine.representation import Representation


def pool4(x):
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (4, 4, 1), (4, 4, 1), "VALID") / 16


POOL = Representation("pool4", lambda _, x: pool4(x), channels=1, mean=(128.0,))
SHORT = (Stage(40, 1.0, True), Stage(10, 0.1, False))


@pytest.fixture(scope="module")
def image():
    return images.load_sample_image(grey=True, size=32)


def test_inversion_reduces_the_loss_on_every_restart(image):
    problem = Problem(C=100)
    target = preimage.make_target(POOL, problem, image)
    result = preimage.solve(POOL, problem, target, image_shape=image.shape, key=jax.random.key(0),
                            restarts=3, stages=SHORT)
    assert result.images.shape == (3, 32, 32, 1)
    assert result.history["loss"].shape == (50, 3)
    assert np.all(result.history["loss"][-1] < 0.1 * result.history["loss"][0])
    assert np.all(result.history["loss"][-1] < 0.02)
    assert np.all(np.linalg.norm(result.images, axis=-1) <= problem.B_plus * (1 + 1e-5))


def test_same_seed_same_result_bitwise_and_other_seed_differs(image):
    problem = Problem(C=100, jitter=3)
    target = preimage.make_target(POOL, problem, image)
    run = lambda seed: preimage.solve(POOL, problem, target, image_shape=image.shape,
                                      key=jax.random.key(seed), restarts=2, stages=SHORT).images
    a, b, c = run(0), run(0), run(1)
    assert a.shape == (2, 34, 34, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_vmapped_restarts_equal_separate_runs(image):
    problem = Problem(C=100)
    target = preimage.make_target(POOL, problem, image)
    x0 = preimage.random_init(jax.random.key(3), (2, 32, 32, 1), problem.bound)
    key = jax.random.key(0)
    both = preimage.solve(POOL, problem, target, image_shape=image.shape, key=key, restarts=2,
                          stages=SHORT, x_init=x0).images
    for k in range(2):
        one = preimage.solve(POOL, problem, target, image_shape=image.shape, key=key, restarts=1,
                             stages=SHORT, x_init=x0[k:k + 1]).images
        np.testing.assert_allclose(one[0], both[k], rtol=1e-4, atol=1e-3)


def test_batched_targets_invert_several_images_in_one_run(image):
    problem = Problem(C=100)
    other = images.load_image(images.imagenet_sample_paths(num_images=1)[0], grey=True, size=32)
    targets = [preimage.make_target(POOL, problem, im) for im in (image, other)]
    batched = preimage.Target(jnp.stack([t.phi0 for t in targets]))
    x0 = preimage.random_init(jax.random.key(3), (2, 32, 32, 1), problem.bound)
    both = preimage.solve(POOL, problem, batched, image_shape=image.shape, key=jax.random.key(0), restarts=2,
                          stages=SHORT, x_init=x0, batched_target=True).images
    for k, target in enumerate(targets):
        one = preimage.solve(POOL, problem, target, image_shape=image.shape, key=jax.random.key(0),
                             stages=SHORT, x_init=x0[k:k + 1]).images
        np.testing.assert_allclose(one[0], both[k], rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="leading axis of size 3"):
        preimage.solve(POOL, problem, batched, image_shape=image.shape, key=jax.random.key(0), restarts=3,
                       stages=SHORT, batched_target=True)


def test_python_and_scan_loops_agree(image):
    problem = Problem(C=100, jitter=2)
    target = preimage.make_target(POOL, problem, image)
    run = lambda loop: preimage.solve(POOL, problem, target, image_shape=image.shape, key=jax.random.key(0),
                                      restarts=2, stages=SHORT, loop=loop)
    python, scan = run("python"), run("scan")
    np.testing.assert_allclose(python.images, scan.images, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(python.history["energy"], scan.history["energy"], rtol=1e-4)


def test_stages_set_their_step_scale_without_recompiling(image):
    from jaxinv.engine import compilation

    problem = Problem(C=100)
    target = preimage.make_target(POOL, problem, image)
    run = lambda *stages: preimage.solve(POOL, problem, target, image_shape=image.shape, key=jax.random.key(0),
                                         stages=stages).images
    whole = run(Stage(3, 1.0, False), Stage(2, 1.0, False))
    with compilation.counting() as record:
        split = run(Stage(3, 1.0, False), Stage(0, 0.5, False), Stage(2, 1.0, False))
        slower = run(Stage(3, 1.0, False), Stage(2, 0.1, False))
    assert record.count == 0  # other step scales: the same compiled step
    np.testing.assert_array_equal(split, whole)  # an empty stage changes nothing
    assert not np.allclose(slower, whole)
    opt_state = preimage.with_step_scale(preimage.make_solver(problem, image.shape).init(jnp.zeros((2, 2, 1))), 0.1)
    assert float(opt_state.hyperparams["step_scale"]) == pytest.approx(0.1)


def test_masked_and_inner_product_losses_run(image):
    masked = Problem(loss="masked_inversion", C=100)
    phi0 = POOL(POOL.to_null_mean(image))
    mask = jnp.zeros_like(phi0).at[2:5, 2:5].set(1.0)
    target = preimage.make_target(POOL, masked, phi0=phi0, mask=mask)
    result = preimage.solve(POOL, masked, target, image_shape=image.shape, key=jax.random.key(0), stages=SHORT)
    assert result.history["loss"][-1, 0] < 0.05
    maximise = Problem(loss="inner_product", C=1)
    one_hot = jnp.zeros_like(phi0).at[4, 4, 0].set(1.0)
    target = preimage.make_target(POOL, maximise, phi0=one_hot, z=10.0)
    result = preimage.solve(POOL, maximise, target, image_shape=image.shape, key=jax.random.key(0), stages=SHORT)
    assert result.history["loss"][-1, 0] < result.history["loss"][0, 0]


def test_clear_errors(image):
    problem = Problem()
    phi0 = POOL(POOL.to_null_mean(image))
    with pytest.raises(ValueError, match=r"\|\|Phi0\|\| = 0"):
        preimage.make_target(POOL, problem, phi0=jnp.zeros_like(phi0))
    with pytest.raises(ValueError, match="mask shape"):
        preimage.make_target(POOL, Problem(loss="masked_inversion"), phi0=phi0, mask=jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        preimage.make_target(POOL, problem, phi0=phi0.at[0, 0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="unknown loss"):
        Problem(loss="l1")
    with pytest.raises(ValueError, match="non-finite"):
        POOL.to_null_mean(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="1-channel"):
        POOL.to_null_mean(np.zeros((8, 8, 3)))
    target = preimage.make_target(POOL, problem, phi0=phi0)
    with pytest.raises(ValueError, match="x_init contains non-finite"):
        preimage.solve(POOL, problem, target, image_shape=image.shape, key=jax.random.key(0),
                       x_init=np.full((1, 32, 32, 1), np.inf), stages=SHORT)
    with pytest.raises(ValueError, match="x_init must have shape"):
        preimage.solve(POOL, problem, target, image_shape=image.shape, key=jax.random.key(0),
                       x_init=np.zeros((1, 31, 32, 1)), stages=SHORT)


def test_unknown_representation_lists_valid_names():
    from jaxinv import representations
    with pytest.raises(ValueError, match="valid representations: hog, hogb, dsift"):
        representations.get("gist")


SHARDED_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from tests.test_preimage import POOL, SHORT
    from jaxinv.engine import preimage
    from jaxinv.io import images
    assert len(jax.devices()) == 2, jax.devices()
    image = images.load_sample_image(grey=True, size=32)
    problem = preimage.Problem(C=100, jitter=2)
    target = preimage.make_target(POOL, problem, image)
    run = lambda shard: preimage.solve(POOL, problem, target, image_shape=image.shape, key=jax.random.key(0),
                                       restarts=4, stages=SHORT, shard=shard)
    sharded, single = run(True), run(False)
    np.testing.assert_allclose(sharded.images, single.images, rtol=1e-5, atol=1e-4)
    print("SHARDED_OK")
""")


def test_restarts_sharded_over_two_host_devices_equal_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], cwd=root, env=env, capture_output=True, text=True)
    assert "SHARDED_OK" in out.stdout, out.stderr[-3000:]
