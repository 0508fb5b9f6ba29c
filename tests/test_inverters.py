"""Learned inverters: the architecture rule, the up-convolution, training, checkpoints, the image error."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxinv import inverters
from jaxinv.engine import graph
from jaxinv.io import paths
from jaxinv.io.outputs import OutputBusyError
from jaxinv.inverters import features as inverter_features
from jaxinv.inverters import feature_pool, layers, training
from jaxinv.nets import layers as net_layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The supplementary tables of Dosovitskiy & Brox (CVPR 2016), layer by layer (H, W, C).
PAPER = {
    "hog": ((32, 32, 31), 256, [(16, 16, 256), (8, 8, 512), (4, 4, 1024), (8, 8, 512), (16, 16, 256), (32, 32, 128),
                                (32, 32, 128), (32, 32, 128), (32, 32, 256), (32, 32, 256), (32, 32, 128),
                                (64, 64, 64), (128, 128, 32), (256, 256, 3)]),
    "lbp": ((16, 16, 58), 256, [(8, 8, 512), (4, 4, 1024), (8, 8, 512), (16, 16, 256),
                                (16, 16, 128), (16, 16, 128), (16, 16, 384), (16, 16, 256), (16, 16, 128),
                                (32, 32, 128), (64, 64, 64), (128, 128, 32), (256, 256, 3)]),
    "sift": ((64, 64, 133), 256, [(32, 32, 256), (16, 16, 512), (8, 8, 1024), (4, 4, 2048), (4, 4, 2048),
                                  (4, 4, 1024), (8, 8, 512), (16, 16, 256), (32, 32, 128), (64, 64, 64),
                                  (128, 128, 32), (256, 256, 3)]),
    "conv": ((6, 6, 256), 192, [(6, 6, 256)] * 3 + [(12, 12, 256), (24, 24, 128), (48, 48, 64), (96, 96, 32),
                                                    (192, 192, 3)]),
    "fc": ((1000,), 128, [(4096,), (4096,), (4096,), (4, 4, 256), (8, 8, 256), (16, 16, 128), (32, 32, 64),
                          (64, 64, 32), (128, 128, 3)]),
}


def without_activations(table, shapes):
    """The shapes the paper lists: its leaky ReLUs are not layers of their own."""
    return [shapes[layer.name] for layer in table if layer.op is not layers.leaky_relu]


@pytest.mark.parametrize("family", list(PAPER))
def test_rule_reproduces_the_papers_shapes(family):
    feature_shape, size, expected = PAPER[family]
    table = inverters.build(family, feature_shape, size)
    assert without_activations(table, inverters.output_shapes(table, feature_shape)) == expected
    # Leaky ReLU after every layer but the last (concat and reshape carry none of their own).
    leaky = [i + 1 < len(table) and table[i + 1].op is layers.leaky_relu
             for i, layer in enumerate(table) if layer.op not in (layers.leaky_relu, graph.concat, layers.reshape)]
    assert leaky[-1] is False
    assert all(leaky[:-1])
    assert sum(layer.op is layers.leaky_relu for layer in table) == len(leaky) - 1
    kernels = {layer.hyper["kernel"] for layer in table if layer.op is layers.upconv}
    assert kernels == ({5} if family in ("conv", "fc") else {4})


def test_rule_at_reduced_sizes():
    def shapes(*args, **kw):
        table = inverters.build(*args, **kw)
        return without_activations(table, inverters.output_shapes(table, args[1]))
    # HOG of 64x64 crops: stream A halves twice (8 -> 4 -> 2), three up-convolutions to 64.
    assert shapes("hog", (8, 8, 31), 64) == [
        (4, 4, 256), (2, 2, 512), (4, 4, 256), (8, 8, 128), (8, 8, 128), (8, 8, 128), (8, 8, 256), (8, 8, 256),
        (8, 8, 128), (16, 16, 64), (32, 32, 32), (64, 64, 3)]
    assert shapes("hog", (8, 8, 31), 64, width=0.5)[:2] == [(4, 4, 128), (2, 2, 256)]
    assert shapes("lbp", (4, 4, 58), 64)[:2] == [(2, 2, 512), (4, 4, 256)]
    assert shapes("sift", (16, 16, 133), 64)[:5] == [(8, 8, 256), (4, 4, 512), (2, 2, 1024), (2, 2, 1024), (2, 2, 512)]
    assert shapes("sift", (16, 16, 133), 64)[-1] == (64, 64, 3)
    # cifar-ref pool2 (8x8x128) and fc8 (10) to 32x32 images.
    assert shapes("conv", (8, 8, 128), 32) == [(8, 8, 256)] * 3 + [(16, 16, 32), (32, 32, 3)]
    assert shapes("fc", (10,), 32, width=0.5) == [(2048,), (2048,), (2048,), (4, 4, 128), (8, 8, 32), (16, 16, 16),
                                                  (32, 32, 3)]
    # No up-convolution left: a final conv 3/1 -> 3.
    assert shapes("conv", (32, 32, 64), 32)[-1] == (32, 32, 3)


def test_rule_rejects_sizes_it_cannot_reach():
    with pytest.raises(ValueError, match="power of two"):
        inverters.build("hog", (6, 6, 31), 64)
    with pytest.raises(ValueError, match="power of two"):
        inverters.build("conv", (8, 8, 128), 12)
    with pytest.raises(ValueError, match="square"):
        inverters.build("hog", (8, 6, 31), 64)
    with pytest.raises(ValueError, match="1-D"):
        inverters.build("fc", (4, 4, 10), 32)
    with pytest.raises(ValueError, match="unknown inverter family 'vgg'"):
        inverters.build("vgg", (8, 8, 31), 64)
    with pytest.raises(ValueError, match="width"):
        inverters.build("hog", (8, 8, 31), 64, width=0)


def test_unpool_places_values_top_left_of_zero_blocks():
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
    expected = [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(layers.unpool(x)[0, :, :, 0], expected)


def test_upconv_of_one_pixel_by_hand():
    # One value v unpooled to [[v, 0], [0, 0]], padded 2 before and 1 after, correlated with w:
    # out[y, x] = w[2 - y, 2 - x] v.
    w = jnp.arange(16.0).reshape(4, 4, 1, 1)
    params = {"w": w, "b": jnp.zeros(1)}
    out = layers.upconv(jnp.full((1, 1, 1, 1), 2.0), params, out_channels=1, kernel=4)[0, :, :, 0]
    np.testing.assert_array_equal(out, 2.0 * np.array([[w[2, 2, 0, 0], w[2, 1, 0, 0]], [w[1, 2, 0, 0], w[1, 1, 0, 0]]]))


@pytest.mark.parametrize("kernel", [4, 5])
def test_upconv_equals_unpool_then_conv(kernel):
    rng = np.random.default_rng(kernel)
    x = rng.standard_normal((2, 5, 3, 4), np.float32)
    params = {"w": rng.standard_normal((kernel, kernel, 4, 6), np.float32), "b": rng.standard_normal(6, np.float32)}
    fast = jax.jit(lambda x, p: layers.upconv(x, p, out_channels=6, kernel=kernel))(x, params)
    reference = jax.jit(lambda x, p: layers.upconv_reference(x, p, out_channels=6, kernel=kernel))(x, params)
    assert fast.shape == (2, 10, 6, 6)
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side,stride", [(4, 2), (2, 1), (8, 2)])
def test_small_map_convolution_path_matches_xla(side, stride):
    # Maps of <= 16 output pixels go through im2col; the others through XLA's convolution.
    rng = np.random.default_rng(side)
    x, w = rng.standard_normal((3, side, side, 5), np.float32), rng.standard_normal((5, 5, 5, 7), np.float32)
    out = jax.jit(lambda x, w: net_layers.conv2d(x, w, stride, (2, 2, 2, 2)))(x, w)
    reference = lax.conv_general_dilated(x, w, (stride, stride), ((2, 2), (2, 2)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-4)


def test_image_error_by_hand():
    # Originals 0, 3 and 6 everywhere (2x2): pairwise distances 6, 12, 6, N = 8. Reconstructions off
    # by 1, 0 and -2 per pixel: distances 2, 0, 4 -> errors 0.25, 0, 0.5.
    originals = np.stack([np.full((2, 2), v) for v in (0.0, 3.0, 6.0)])
    reconstructions = originals + np.array([1.0, 0.0, -2.0])[:, None, None]
    np.testing.assert_allclose(inverters.image_errors(reconstructions, originals), [0.25, 0.0, 0.5])
    assert inverters.image_error(reconstructions, originals) == pytest.approx(0.25)
    # Colour images with equal channels: the same error in colour and in grey (luma weights sum to 1).
    colour = lambda a: np.repeat(a[..., None], 3, axis=-1)
    assert inverters.image_error(colour(reconstructions), colour(originals)) == pytest.approx(0.25)
    assert inverters.image_error(colour(reconstructions), originals, grey=True) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="do not match"):
        inverters.image_error(colour(reconstructions), originals)
    with pytest.raises(ValueError, match="at least 2"):
        inverters.image_error(reconstructions[:1], originals[:1])


def test_flat_baselines_by_hand():
    # Originals [0, 0] and [4, 8] (1x2 grey): N = ||(4, 8)|| = sqrt(80). Mean image (2, 4): distances
    # sqrt(20) each -> 0.5; own mean levels (0, 0) and (6, 6): distances 0 and sqrt(8) -> 0, sqrt(0.1).
    originals = np.array([[[0.0, 0.0]], [[4.0, 8.0]]])
    errors = inverters.flat_baseline_errors(originals)
    np.testing.assert_allclose(errors["mean image"], [0.5, 0.5])
    np.testing.assert_allclose(errors["own mean level"], [0.0, np.sqrt(0.1)])


def test_unknown_representations_are_named():
    with pytest.raises(ValueError, match="unknown representation 'hug'"):
        inverter_features.representation("hug")
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        inverter_features.representation("cifar-ref:conv9")
    with pytest.raises(FileNotFoundError, match="no-such-net"):
        inverter_features.representation("no-such-net:conv1")


def test_network_features_shapes_and_families():
    pool2 = inverter_features.representation("cifar-ref:pool2")
    fc8 = inverter_features.representation("cifar-ref:fc8")
    shape, family = inverter_features.feature_shape, inverter_features.family
    assert (family(pool2, 32), shape(pool2, 32)) == ("conv", (8, 8, 128))
    assert (family(fc8, 32), shape(fc8, 32)) == ("fc", (10,))
    with pytest.raises(ValueError, match="takes 32x32 images"):
        shape(fc8, 64)
    with pytest.raises(ValueError, match="needs 32x32 inputs"):
        inverter_features.representation("cifar-ref:fc8", 64)
    hog = inverter_features.representation("hog")
    assert (family(hog, 64), hog.channels == 1, shape(hog, 64)) == ("hog", True, (8, 8, 31))


TINY = dict(representation="hog", image_size=16, width=0.25, batch_size=4, max_train_images=3)


def test_training_steps_reduce_the_loss():
    # 30 Adam steps at lr 1e-3 on one fixed batch of 4 images: the image-space error must halve.
    feature = inverter_features.representation("hog")
    shape = inverter_features.feature_shape(feature, 16)
    table = inverters.build("hog", shape, 16, 0.25)
    trainable = {"decoder": inverters.init_params(table, jax.random.PRNGKey(0), shape)}
    opt_state = training.make_optimizer().init(trainable)
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    step = training.cached_train_step(table, feature)  # the step test_interrupted_training uses
    losses = []
    for _ in range(30):
        trainable, opt_state, loss = step(trainable, opt_state, np.float32(1e-3), None, np.float32(10.0), images, None)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_a_diverging_run_is_reported_once(tmp_path):
    lines = []
    inverters.train(inverters.TrainConfig(steps=8, learning_rate=10.0, **TINY), str(tmp_path / "a"), log=lines.append,
                    log_every=1, eval_images=0)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and "the run is diverging" in warnings[0] and "(10 now)" in warnings[0], lines
    lines.clear()
    inverters.train(inverters.TrainConfig(steps=8, **TINY), str(tmp_path / "b"), log=lines.append, log_every=1,
                    eval_images=0)
    assert not [line for line in lines if line.startswith("warning:")], lines


def history_without_times(directory):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in training.read_history(str(directory))]


def test_interrupted_training_resumes_to_the_same_parameters(tmp_path):
    config = inverters.TrainConfig(steps=6, validate_every=2, validation_images=3, **TINY)
    quiet = dict(log=lambda s: None, checkpoint_every=3)
    whole = inverters.train(config, str(tmp_path / "whole"), eval_images=0, **quiet)
    assert inverters.train(config, str(tmp_path / "parts"), stop_after=3, **quiet) is None
    assert not os.path.exists(tmp_path / "parts" / "metadata.json")
    # A run killed after its validation at step 4 but before that step's checkpoint: the history it wrote past
    # the checkpoint (step 3) is recomputed, not kept twice.
    stale = json.load(open(tmp_path / "parts" / training.VALIDATION_FILE))
    stale["history"].append(dict(stale["history"][-1], step=4, image_error_grey=0.0))
    json.dump(stale, open(tmp_path / "parts" / training.VALIDATION_FILE, "w"))
    inverters.train(config, str(tmp_path / "parts"), eval_images=2, **quiet)
    loaded = inverters.load(str(tmp_path / "parts"))
    for a, b in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(loaded.params)):
        np.testing.assert_array_equal(a, b)
    assert history_without_times(tmp_path / "whole") == history_without_times(tmp_path / "parts")
    assert [h["step"] for h in training.read_history(str(tmp_path / "parts"))] == [2, 4, 6]
    assert loaded.metadata["validation"] == whole.metadata["validation"]
    assert loaded.metadata["selected_step"] == whole.metadata["selected_step"]
    assert os.path.isfile(tmp_path / "parts" / training.VALIDATION_PLOT)
    assert loaded.metadata["steps"] == 6 and loaded.feature_shape == (2, 2, 31)
    assert set(loaded.metadata["held_out"]) >= {"image_error", "image_error_grey", "num_test_images"}
    images, _ = training.data.ImageSource("imagenet", 16, max_train_images=1).test_images(2)
    out = loaded.invert_images(images)
    assert out.shape == (2, 16, 16, 3) and out.min() >= 0 and out.max() <= 255
    assert inverters.image_error(out, images) == pytest.approx(loaded.metadata["held_out"]["image_error"], rel=1e-6)
    # Clear errors: wrong feature shape, wrong image size, another configuration in the same folder.
    with pytest.raises(ValueError, match=r"features of shape \(2, 2, 31\)"):
        loaded(np.zeros((1, 4, 4, 31)))
    with pytest.raises(ValueError, match="takes 16x16 images"):
        loaded.invert_images(np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="another configuration"):
        inverters.train(inverters.TrainConfig(steps=7, **TINY), str(tmp_path / "parts"), **quiet)


def scripted_validation(monkeypatch, errors):
    """Validation errors taken from `errors` in turn; the parameters seen at each validation are recorded."""
    seen = []

    def fake(self, params, scale):
        seen.append(jax.tree_util.tree_map(np.asarray, params))
        return {"image_error": errors[len(seen) - 1], "image_error_grey": errors[len(seen) - 1]}
    monkeypatch.setattr(training.Validation, "errors", fake)
    return seen


def test_the_best_validation_step_is_kept_and_patience_stops_early(tmp_path, monkeypatch):
    seen = scripted_validation(monkeypatch, [0.5, 0.3, 0.4])
    config = inverters.TrainConfig(steps=6, validate_every=2, validation_images=2, **TINY)
    inverter = inverters.train(config, str(tmp_path / "best"), eval_images=0, log=lambda s: None)
    assert inverter.metadata["selected_step"] == 4 and inverter.metadata["steps_run"] == 6
    assert inverter.metadata["validation"]["best_error"] == pytest.approx(0.3)
    for a, b in zip(jax.tree_util.tree_leaves(seen[1]), jax.tree_util.tree_leaves(inverter.params)):
        np.testing.assert_array_equal(a, b)  # the step-4 parameters, not the last ones
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(seen[2]),
                                                        jax.tree_util.tree_leaves(inverter.params)))
    seen = scripted_validation(monkeypatch, [0.5, 0.6, 0.7])
    config = inverters.TrainConfig(steps=6, validate_every=2, validation_images=2, patience=1, **TINY)
    inverter = inverters.train(config, str(tmp_path / "early"), eval_images=0, log=lambda s: None)
    assert len(seen) == 2 and inverter.metadata["steps_run"] == 4 and inverter.metadata["selected_step"] == 2
    assert inverter.metadata["validation"]["stopped_early"] is True


def test_without_a_validation_split_the_last_step_is_kept(tmp_path):
    config = inverters.TrainConfig(steps=2, validation_images=0, **TINY)
    inverter = inverters.train(config, str(tmp_path), eval_images=0, log=lambda s: None)
    assert inverter.metadata["validation"] is None and inverter.metadata["selected_step"] == 2
    assert not os.path.exists(tmp_path / training.VALIDATION_FILE)


def test_learning_rate_fits_the_run_length():
    schedule = training.learning_rate_schedule(inverters.TrainConfig("hog", 16, steps=1000))
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(500)) == pytest.approx(1e-3 * (training.FINAL_RATE_FRACTION + (1 - training.FINAL_RATE_FRACTION) / 2),
                                                 rel=1e-4)
    assert float(schedule(1000)) == pytest.approx(1e-3 * training.FINAL_RATE_FRACTION)
    held = training.learning_rate_schedule(inverters.TrainConfig("hog", 16, steps=1000, decay_from=0.7))
    assert float(held(699)) == pytest.approx(1e-3) and float(held(1000)) == pytest.approx(1e-5)


@pytest.fixture(scope="module")
def imagenet_folder():
    try:
        return os.path.dirname(training.data.image_io.imagenet_sample_paths()[0])
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_splits_are_disjoint_and_fixed(imagenet_folder):
    train, validation, test = training.data.imagenet_splits()
    everything = training.data.image_io.imagenet_sample_paths()
    assert test == everything[-50:] and len(validation) == 50 and len(train) == len(everything) - 100
    assert not set(train) & set(validation) and sorted(train + validation + test) == everything
    assert validation == [everything[i] for i in range(0, len(everything) - 50, (len(everything) - 50) // 50)][:50]
    assert training.data.imagenet_splits(validation_images=0)[1] == []


def test_multiscale_crops(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    square = rng.uniform(0, 255, (40, 40, 3)).astype(np.uint8)
    Image.fromarray(square).save(tmp_path / "square.png")
    photo = training.data._stored_photo(str(tmp_path / "square.png"), 16)
    whole = training.data.image_io.load_image(str(tmp_path / "square.png"), size=16)
    # Scale 1 of a square photo is the whole photo, resized as the test images are (or its mirror image).
    for seed in range(4):
        crop = training.data.multiscale_crop(photo, 16, np.random.default_rng(seed), min_scale=1.0)
        assert np.array_equal(crop, whole) or np.array_equal(crop, whole[:, ::-1])
    crops = np.stack([training.data.multiscale_crop(photo, 16, np.random.default_rng(s), 0.5) for s in range(20)])
    assert crops.shape == (20, 16, 16, 3) and len({c.tobytes() for c in crops}) == 20
    # Photos larger than STORE_FACTOR x size are kept reduced to that shorter side.
    Image.fromarray(np.zeros((100, 300, 3), np.uint8)).save(tmp_path / "wide.png")
    assert training.data._stored_photo(str(tmp_path / "wide.png"), 16).size == (192, 64)


def test_batches_of_multiscale_crops_are_those_of_one_crop_after_another(imagenet_folder):
    # The resizing runs in threads; the crops are exactly those of sequential multiscale_crop calls on one rng
    # (`threads=False`).
    source = training.data.ImageSource("imagenet", 24, max_train_images=5)
    batch = source.sample(np.random.default_rng(3), 9)
    one_by_one = source.sample(np.random.default_rng(3), 9, threads=False)
    np.testing.assert_array_equal(batch, one_by_one)
    assert len({c.tobytes() for c in batch}) == 9


def test_cifar10_images_mixed_into_imagenet_batches(imagenet_folder):
    from PIL import Image

    from jaxinv.nets import cifar10

    cifar = cifar10.load()["train_images"]
    resized = np.stack([np.asarray(Image.fromarray(c).resize((16, 16), Image.BICUBIC), np.float32) for c in cifar])
    plain = training.data.ImageSource("imagenet", 16, max_train_images=2)
    mixed = training.data.ImageSource("imagenet", 16, max_train_images=2, cifar10_fraction=0.4)
    for seed in range(3):
        batch = mixed.sample(np.random.default_rng(seed), 5)  # round(0.4 * 5) = 2 CIFAR-10 images first
        distance = lambda image: min(np.abs(resized - image).max(axis=(1, 2, 3)).min(),
                                     np.abs(resized - image[:, ::-1]).max(axis=(1, 2, 3)).min())
        assert batch.shape == (5, 16, 16, 3) and [distance(x) == 0 for x in batch] == [True, True, False, False, False]
    # No mixing draws nothing extra: the batches of a fraction 0 are those of the plain source.
    unmixed = training.data.ImageSource("imagenet", 16, max_train_images=2, cifar10_fraction=0.0)
    np.testing.assert_array_equal(unmixed.sample(np.random.default_rng(0), 4), plain.sample(np.random.default_rng(0), 4))
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="cifar10_fraction must be in"):
            inverters.TrainConfig(cifar10_fraction=bad, **TINY)
    with pytest.raises(ValueError, match="mixes CIFAR-10 into ImageNet training batches"):
        inverters.TrainConfig("cifar-ref:pool2", 32, cifar10_fraction=0.5)


def test_a_folder_being_trained_is_refused_to_a_second_run(tmp_path):
    config = inverters.TrainConfig(steps=2, **TINY)
    with paths.lock_folder(str(tmp_path)):
        with pytest.raises(OutputBusyError, match=rf"{tmp_path} is in use by another run \(pid {os.getpid()}\)"):
            inverters.train(config, str(tmp_path), eval_images=0, log=lambda s: None)
    assert inverters.train(config, str(tmp_path), eval_images=0, log=lambda s: None) is not None


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="inverter directory not found"):
        inverters.load(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="metadata.json not found"):
        inverters.load(str(tmp_path / "empty"))


def test_default_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert inverters.default_dir("cifar-ref:pool2", 32) == str(tmp_path / "jaxinv" / "inverters" / "cifar-ref_pool2-32")


def run_binary(module, *flags):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_train_and_compare_binaries_at_tiny_size(tmp_path):
    inverter_dir, compare_dir = str(tmp_path / "inverter"), str(tmp_path / "compare")
    out = run_binary("experiments.train_inverter", "--representation=hog", "--size=16", "--width=0.25", "--steps=4",
                     "--batch_size=4", "--max_train_images=3", "--eval_images=3", "--log_every=2",
                     f"--output_dir={inverter_dir}")
    assert "step 4/4" in out and "held-out image error" in out
    metadata = inverters.load(inverter_dir).metadata
    assert metadata["steps"] == 4 and metadata["command"].startswith("jaxinv-train-inverter ")
    out = run_binary("experiments.compare_inverters", f"--inverter_dir={inverter_dir}", "--num_images=3",
                     "--iterations=5", "--refine_iterations=0", "--skip_hoggle", f"--output_dir={compare_dir}")
    results = json.load(open(os.path.join(compare_dir, "results.json")))
    assert results["learned"]["image_error"] > 0 and results["optimisation"]["image_error"] > 0
    assert results["hoggle"] == {"image_error": None, "skipped": "skipped by flag"}
    assert set(results["baselines"]) == {"mean image", "own mean level"}
    per_image = json.load(open(os.path.join(compare_dir, "per_image.json")))
    assert len(per_image["images"]) == len(per_image["learned"]) == len(per_image["optimisation"]) == 3
    assert os.path.isfile(os.path.join(compare_dir, "figure.png"))


@pytest.mark.parametrize("flag,message", [("--skip_hoggle", "inverter directory not found"),
                                          ("--hoggle_dictionary=/nonexistent.npz", "HOGgle dictionary not found")])
def test_compare_inverters_names_what_is_missing(tmp_path, flag, message):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-m", "experiments.compare_inverters", f"--inverter_dir={tmp_path}/none",
                          flag], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]


@pytest.mark.slow
def test_finetuning_the_encoder_changes_it_and_inversion_uses_it(tmp_path):
    config = inverters.TrainConfig("cifar-ref:pool1", 32, width=0.125, steps=2, batch_size=4, max_train_images=8,
                                   finetune_encoder=True)
    inverter = inverters.train(config, str(tmp_path), log=lambda s: None, eval_images=4)
    original = inverter_features.representation("cifar-ref:pool1").params
    assert inverter.metadata["held_out"]["test_split"] == "cifar10"
    assert not np.array_equal(inverter.params["encoder"]["conv1"]["w"], original["conv1"]["w"])
    loaded = inverters.load(str(tmp_path))
    assert loaded.metadata["encoder_finetuned"] is True
    images, _ = training.data.ImageSource("cifar10", 32, max_train_images=1).test_images(2)
    fixed = inverter_features.compute(inverter_features.representation("cifar-ref:pool1"), images)
    assert np.abs(loaded.features(images) - fixed).max() > 0


@pytest.mark.slow
def test_host_features_train_from_a_cached_pool(tmp_path, monkeypatch):
    # A host (numpy) version of HOG stands in for LBP/SIFT: features come from the fixed pool.
    hog = inverter_features.representation("hog")
    host = dataclasses.replace(hog, apply=lambda _, x: np.asarray(hog.apply(None, x)), traceable=False)
    monkeypatch.setattr(training.features, "representation", lambda name, size: host)
    config = inverters.TrainConfig(steps=4, pool_size=12, **TINY)
    quiet = dict(log=lambda s: None, checkpoint_every=2, eval_images=2)
    assert inverters.train(config, str(tmp_path / "parts"), stop_after=2, **quiet) is None
    pool = feature_pool.load(str(tmp_path / "parts" / "pool.npz"))
    images, phi = pool.batch(np.arange(len(pool)))
    assert images.shape == (12, 16, 16, 3) and phi.shape == (12, 2, 2, 31)
    np.testing.assert_allclose(phi, inverter_features.compute(hog, images), rtol=1e-6)
    resumed = inverters.train(config, str(tmp_path / "parts"), **quiet)
    whole = inverters.train(config, str(tmp_path / "whole"), **quiet)
    for a, b in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)


def test_feature_pool_keeps_the_occupied_cells_and_gives_back_the_dense_features(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3)).astype(np.float32)
    sparse = rng.normal(size=(5, 4, 3, 6)).astype(np.float32) * (rng.random((5, 4, 3, 1)) < 0.25)
    sparse[2] = 0  # a crop without keypoints
    sparse[3, 1, 2, 4] = 0  # a cell with one zero channel is still occupied
    for phi in (sparse, rng.normal(size=(5, 4, 3, 6)).astype(np.float32)):
        pool = feature_pool.from_features(images, phi)
        assert pool.images.dtype == np.uint8
        assert len(pool.cells) == np.any(phi != 0, axis=-1).sum() and pool.cell_fraction == len(pool.cells) / 60
        which = np.array([3, 0, 2, 3, 4])
        got_images, got_phi = pool.batch(which)
        np.testing.assert_array_equal(got_images, images[which])
        np.testing.assert_array_equal(got_phi, phi[which])
        halves = feature_pool.assemble(images.astype(np.uint8), [feature_pool.occupied_cells(phi[:2]),
                                                                 feature_pool.occupied_cells(phi[2:])], phi.shape[1:])
        np.testing.assert_array_equal(halves.batch(which)[1], phi[which])
        feature_pool.save(str(tmp_path / "pool.npz"), pool)
        np.testing.assert_array_equal(feature_pool.load(str(tmp_path / "pool.npz")).batch(which)[1], phi[which])
    assert feature_pool.from_features(images, sparse).nbytes < feature_pool.from_features(images, phi).nbytes
    with pytest.raises(ValueError, match="5 crops but features of 2"):
        feature_pool.assemble(images.astype(np.uint8), [feature_pool.occupied_cells(phi[:2])], phi.shape[1:])
    # The dense pool.npz of earlier versions still loads (a run started before resumes with its pool).
    np.savez(tmp_path / "old.npz", images=images.astype(np.uint8), features=sparse)
    np.testing.assert_array_equal(feature_pool.load(str(tmp_path / "old.npz")).batch(np.arange(5))[1], sparse)


def test_a_pool_too_large_for_memory_is_refused_before_crops_are_computed(tmp_path, monkeypatch):
    sift256 = inverters.TrainConfig("sift", 256, pool_size=6400)
    with pytest.raises(ValueError, match=r"a pool of 6400 crops of 'sift' at 256 px needs 14\.2 GiB .* set pool_size 0 "
                                         r"\(features of fresh crops every step\) or at most 5423"):
        feature_pool.check_pool_fits(sift256, (64, 64, 133), 24 * 2**30)
    feature_pool.check_pool_fits(dataclasses.replace(sift256, pool_size=5423), (64, 64, 133), 24 * 2**30)
    # Stored by occupied cell (`feature_pool`), SIFT's pool at 256 px fits: about 6% of its 64x64 cells hold a keypoint.
    feature_pool.check_pool_fits(sift256, (64, 64, 133), 24 * 2**30, cell_fraction=0.06)
    with pytest.raises(ValueError, match=r"features in 90\.0% of the cells"):
        feature_pool.check_pool_fits(sift256, (64, 64, 133), 24 * 2**30, cell_fraction=0.9)
    # train() refuses it before any training crop's features are computed (the feature scale's calibration).
    hog = inverter_features.representation("hog")
    calls = []
    host = dataclasses.replace(hog, apply=lambda _, x: calls.append(1) or np.asarray(hog.apply(None, x)), traceable=False)
    monkeypatch.setattr(training.features, "representation", lambda name, size: host)
    monkeypatch.setattr(feature_pool, "physical_memory_bytes", lambda: 2**16)
    with pytest.raises(ValueError, match="a pool of 100 crops of 'hog' at 16 px needs"):
        inverters.train(inverters.TrainConfig(steps=2, pool_size=100, **TINY), str(tmp_path), log=lambda s: None)
    assert calls == [1] and not (tmp_path / training.CHECKPOINTS_DIR).exists()  # [1]: the decoder's shape probe
    # Crops that fit with features that do not: refused while the pool is built, after its first chunk.
    monkeypatch.setattr(feature_pool, "physical_memory_bytes", lambda: 2 * (100 * 16 * 16 * 3 + 20000))
    calls.clear()
    with pytest.raises(ValueError, match=r"a pool of 100 crops of 'hog' at 16 px needs .* or at most 76"):
        inverters.train(inverters.TrainConfig(steps=2, pool_size=100, **TINY), str(tmp_path / "b"), log=lambda s: None)
    assert not (tmp_path / "b" / feature_pool.POOL_FILE).exists()
    monkeypatch.undo()
    # Every default pool fits a machine of 64 GiB (the accelerator defaults at 256 px included).
    for table in (inverters.run_config.CPU_DEFAULTS, inverters.run_config.ACCELERATOR_DEFAULTS):
        for name in ("lbp", "sift"):
            config = inverters.TrainConfig(name, **table[name])
            shape = inverter_features.feature_shape(inverter_features.representation(name), config.image_size)
            feature_pool.check_pool_fits(config, shape, 64 * 2**30)


@pytest.mark.slow
def test_host_features_without_a_pool_are_computed_for_every_step(tmp_path, monkeypatch):
    # pool_size=0: a host representation's features are computed from each step's fresh crops (on the
    # prefetch thread), so training matches, bitwise, the same representation computed inside the step.
    config = inverters.TrainConfig(steps=4, **TINY)
    quiet = dict(log=lambda s: None, eval_images=0)
    in_step = inverters.train(config, str(tmp_path / "in_step"), **quiet)
    hog = inverter_features.representation("hog")
    host = dataclasses.replace(hog, apply=lambda _, x: np.asarray(hog.apply(None, x)), traceable=False)
    monkeypatch.setattr(training.features, "representation", lambda name, size: host)
    on_host = inverters.train(config, str(tmp_path / "host"), **quiet)
    assert not (tmp_path / "host" / feature_pool.POOL_FILE).exists()
    for a, b in zip(jax.tree_util.tree_leaves(in_step.params), jax.tree_util.tree_leaves(on_host.params)):
        np.testing.assert_array_equal(a, b)
