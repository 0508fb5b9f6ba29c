"""HOGgle paired dictionaries: training pairs, normalisation, storage, lasso, blending, inversion."""
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxinv import features
from jaxinv.inverters import hoggle, hoggle_learning
from jaxinv.io import images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def training_paths():
    try:
        return images.imagenet_sample_paths(num_images=20)
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def pairs(training_paths):
    return hoggle_learning.sample_training_pairs(training_paths, 300, image_size=64, seed=0)


@pytest.fixture(scope="module")
def dictionary(pairs):
    pytest.importorskip("sklearn")
    return hoggle_learning.learn_paired_dictionary(pairs, num_atoms=32, batch_size=100, epochs=2, log=lambda s: None)


def random_dictionary(num_atoms=4, seed=0, **overrides):
    rng = np.random.default_rng(seed)
    fields = dict(image_atoms=rng.standard_normal((num_atoms, 40 * 40)),
                  hog_atoms=rng.standard_normal((num_atoms, 775)),
                  cell_size=8, window_cells=5, lam=0.02, patch_mean=110.0, patch_contrast=1500.0,
                  training_info={"note": "random"})
    fields.update(overrides)
    return hoggle.PairedDictionary(**fields)


def test_each_half_is_zero_mean_and_unit_norm(pairs):
    vectors = hoggle_learning.paired_vectors(pairs)
    assert vectors.shape == (300, 40 * 40 + 5 * 5 * 31)
    for half in (vectors[:, :1600], vectors[:, 1600:]):
        np.testing.assert_allclose(half.mean(axis=1), 0, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1, atol=1e-5)
    assert np.all(hoggle.zero_mean_unit_norm(np.full((2, 5), 3.0)) == 0)  # a flat row stays zero


def test_zero_epochs_keep_random_training_pairs_as_atoms(pairs):
    random_atoms = hoggle_learning.learn_paired_dictionary(pairs, num_atoms=8, epochs=0, log=lambda s: None)
    vectors = hoggle_learning.paired_vectors(pairs) / np.sqrt(2)
    atoms = np.concatenate([random_atoms.image_atoms, random_atoms.hog_atoms], axis=1)
    distances = np.linalg.norm(atoms[:, None] - vectors[None], axis=2)
    assert np.all(distances.min(axis=1) < 1e-6)
    np.testing.assert_allclose(np.linalg.norm(atoms, axis=1), 1, atol=1e-5)
    assert random_atoms.training_info["solver"] == "random training pairs"


def test_pairs_are_whole_image_hog_cells_and_the_pixels_they_tile(training_paths):
    pairs = hoggle_learning.sample_training_pairs(training_paths[:1], None, image_size=64, seed=1)
    image = images.load_image(training_paths[0], grey=True, size=64)
    code = np.asarray(features.hog(image))
    assert len(pairs) == 16  # 8x8 cells: 4x4 windows of 5x5 cells
    found = set()
    for patch, hog_window in zip(pairs.patches, pairs.hogs):
        matches = [(r, c) for r in range(4) for c in range(4)
                   if np.array_equal(patch, image[8 * r:8 * r + 40, 8 * c:8 * c + 40])]
        assert len(matches) == 1
        r, c = matches[0]
        np.testing.assert_allclose(hog_window, code[r:r + 5, c:c + 5], atol=1e-6)
        found.add((r, c))
    assert len(found) == 16


def test_sampling_rejects_impossible_requests(training_paths):
    with pytest.raises(ValueError, match="hold only 32 windows"):
        hoggle_learning.sample_training_pairs(training_paths[:2], 33, image_size=64)
    with pytest.raises(ValueError, match="smaller than a window"):
        hoggle_learning.sample_training_pairs(training_paths[:2], 1, image_size=32)
    with pytest.raises(ValueError, match="no training images"):
        hoggle_learning.sample_training_pairs([], 1)


def test_save_load_round_trip(tmp_path):
    original = random_dictionary()
    path = original.save(str(tmp_path / "sub" / "dictionary.npz"))
    assert os.listdir(tmp_path / "sub") == ["dictionary.npz"]  # no temporary file left
    loaded = hoggle.PairedDictionary.load(path)
    np.testing.assert_array_equal(loaded.image_atoms, original.image_atoms)
    np.testing.assert_array_equal(loaded.hog_atoms, original.hog_atoms)
    for name in ("cell_size", "window_cells", "lam", "patch_mean", "patch_contrast", "training_info"):
        assert getattr(loaded, name) == getattr(original, name)


def test_load_names_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        hoggle.PairedDictionary.load(str(tmp_path / "absent.npz"))
    text = tmp_path / "text.npz"
    text.write_text("not a dictionary")
    with pytest.raises(ValueError, match="not a HOGgle dictionary"):
        hoggle.PairedDictionary.load(str(text))
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match="no format marker"):
        hoggle.PairedDictionary.load(str(other))
    good = random_dictionary().save(str(tmp_path / "good.npz"))
    with np.load(good) as data:
        stored = dict(data)
    np.savez(tmp_path / "incomplete.npz", **{k: v for k, v in stored.items() if k != "hog_atoms"})
    with pytest.raises(ValueError, match="missing hog_atoms"):
        hoggle.PairedDictionary.load(str(tmp_path / "incomplete.npz"))
    np.savez(tmp_path / "wrong.npz", **dict(stored, hog_atoms=np.zeros((4, 700), np.float32)))
    with pytest.raises(ValueError, match=r"hog_atoms must have shape \(K, 775\)"):
        hoggle.PairedDictionary.load(str(tmp_path / "wrong.npz"))


def test_dictionary_validates_its_fields():
    with pytest.raises(ValueError, match="image_atoms must have shape"):
        random_dictionary(image_atoms=np.zeros((4, 100)))
    with pytest.raises(ValueError, match="same number"):
        random_dictionary(hog_atoms=np.zeros((3, 775)))
    with pytest.raises(ValueError, match="lam must be a positive"):
        random_dictionary(lam=0.0)


def test_nonnegative_lasso_matches_scikit_learn():
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    atoms = hoggle.zero_mean_unit_norm(rng.standard_normal((24, 60)))
    targets = hoggle.zero_mean_unit_norm(np.maximum(rng.standard_normal((10, 24)), 0) @ atoms
                                         + 0.3 * rng.standard_normal((10, 60)))
    ours = hoggle.nonnegative_lasso(atoms, targets, 0.05, iterations=2000)
    reference = decomposition.sparse_encode(targets.astype(np.float64), atoms.astype(np.float64), algorithm="lasso_cd",
                                            alpha=0.05, positive=True, max_iter=10000)

    def objective(codes):
        return 0.5 * np.sum((targets - codes @ atoms) ** 2, axis=1) + 0.05 * codes.sum(axis=1)
    assert np.all(ours >= 0)
    np.testing.assert_allclose(objective(ours), objective(reference), rtol=1e-5)
    np.testing.assert_allclose(ours, reference, atol=2e-3)


def brute_force_blend(patches, cell, shape, sigma):
    rows, cols, size, _ = patches.shape
    height, width = (rows - 1) * cell + size, (cols - 1) * cell + size
    numerator, denominator = np.zeros((height, width)), np.zeros((height, width))
    weight = hoggle.gaussian_window(size, sigma)
    for r in range(rows):
        for c in range(cols):
            numerator[r * cell:r * cell + size, c * cell:c * cell + size] += weight * patches[r, c]
            denominator[r * cell:r * cell + size, c * cell:c * cell + size] += weight
    return (numerator / denominator)[:shape[0], :shape[1]]


def test_gaussian_blending_is_a_normalised_weighted_average():
    rng = np.random.default_rng(0)
    patches = rng.standard_normal((3, 4, 40, 40)).astype(np.float32)
    blended = hoggle.blend_patches(patches, 8, (56, 64))
    np.testing.assert_allclose(blended, brute_force_blend(patches, 8, (56, 64), 9.0), atol=1e-5)
    # Constant patches give the constant everywhere, corners (one patch) and overlaps alike,
    # and rows/columns past the last cell (61 px from 7 cells) repeat the covered edge.
    constant = hoggle.blend_patches(np.full((3, 4, 40, 40), 7.0), 8, (61, 67))
    assert constant.shape == (61, 67)
    np.testing.assert_allclose(constant, 7.0, rtol=1e-6)
    weight = hoggle.gaussian_window(40)
    np.testing.assert_allclose(weight, weight[::-1, ::-1])  # centred between pixels 19 and 20
    assert weight[0, 0] == pytest.approx(np.exp(-2 * 19.5 ** 2 / (2 * 9.0 ** 2)))


def test_zero_patch_atoms_invert_to_the_training_mean():
    flat = random_dictionary(image_atoms=np.zeros((4, 1600)))
    image = images.load_sample_image(grey=True, size=(67, 75))
    out = hoggle.invert_hog(flat, features.hog(image), image.shape)
    assert out.shape == (67, 75)
    np.testing.assert_allclose(out, 110.0, atol=1e-4)


def test_invert_hog_shape_and_range(dictionary):
    image = images.load_sample_image(grey=True, size=(61, 90))
    for mapping in hoggle.PIXEL_MAPPINGS:
        out = hoggle.invert_hog(dictionary, features.hog(image), image.shape, pixel_mapping=mapping)
        assert out.shape == (61, 90) and out.dtype == np.float32
        assert np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 255
        assert out.std() > 1  # not flat
    assert out.min() == 0 and out.max() == 255  # "stretch" spans the range


def test_training_images_are_reconstructed_better_than_flat_grey(dictionary, training_paths):
    grey = np.stack([images.load_image(path, grey=True, size=64) for path in training_paths[:4]])
    codes = features.batched_hog(grey)
    out = hoggle.invert_hogs(dictionary, codes, (64, 64))
    flat = grey.mean(axis=(1, 2), keepdims=True)  # the best flat image of each
    assert np.linalg.norm(out - grey) < 0.9 * np.linalg.norm(flat - grey)
    # The batch is the images one by one (one lasso solve for all windows).
    np.testing.assert_allclose(out[1], hoggle.invert_hog(dictionary, codes[1], (64, 64)), atol=1e-3)


def test_invert_hog_rejects_bad_input(dictionary):
    code = np.zeros((8, 8, 31), np.float32)
    with pytest.raises(ValueError, match="gives 9x8 cells"):
        hoggle.invert_hog(dictionary, code, (72, 64))
    with pytest.raises(ValueError, match=r"shape \(hogH, hogW, 31\)"):
        hoggle.invert_hog(dictionary, code[..., :27], (64, 64))
    with pytest.raises(ValueError, match="smaller than the dictionary"):
        hoggle.invert_hog(dictionary, code[:4, :4], (32, 32))
    with pytest.raises(ValueError, match="pixel_mapping"):
        hoggle.invert_hog(dictionary, code, (64, 64), pixel_mapping="match")
    with pytest.raises(ValueError, match="non-finite"):
        hoggle.invert_hog(dictionary, np.full((8, 8, 31), np.nan, np.float32), (64, 64))


@pytest.mark.slow
def test_train_and_evaluate_binaries(tmp_path):
    pytest.importorskip("sklearn")
    env = dict(os.environ, PYTHONPATH=ROOT)
    path = str(tmp_path / "dictionary.npz")

    def run(module, *flags):
        out = subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout
    run("experiments.train_hoggle", "--num_images=20", "--num_patches=200", "--num_atoms=16", "--epochs=1",
        f"--output={path}")
    info = hoggle.PairedDictionary.load(path).training_info
    assert info["num_images"] == 20 and info["exclude_last"] == 50
    stdout = run("experiments.evaluate_hoggle", f"--dictionary={path}", "--num_test=4", "--figure_images=2",
                 f"--output_dir={tmp_path / 'eval'}")
    assert "training  error" in stdout
    assert sorted(os.listdir(tmp_path / "eval")) == ["figure.png", "results.json"]


def test_training_split_holds_out_the_last_files(training_paths):
    from jaxinv.inverters import hoggle_experiments as H
    every = images.imagenet_sample_paths()
    kept = H.training_paths(None, 50, None)
    assert kept == every[:-50] and H.training_paths(None, 50, 3) == every[:3]
    with pytest.raises(ValueError, match="--exclude_last must be >= 0"):
        H.training_paths(None, -1, None)
    with pytest.raises(ValueError, match="leaves none of the"):
        H.training_paths(None, len(every), None)


def test_train_records_the_images_it_saw(training_paths):
    pytest.importorskip("sklearn")
    from jaxinv.inverters import hoggle_experiments as H
    lines = []
    dictionary = H.train(H.TrainConfig(num_images=4, num_patches=50, num_atoms=8, epochs=1, batch_size=25),
                         log=lines.append)
    info = dictionary.training_info
    assert dictionary.num_atoms == 8 and info["num_images"] == 4 and info["exclude_last"] == 50
    assert info["first_image"] == os.path.basename(training_paths[0]) and info["last_image"] == os.path.basename(
        training_paths[3])
    assert lines[0].startswith("50 windows from 4 images of 64x64 (last 50 held out)")


def test_evaluate_scores_each_pixel_mapping_and_flat_grey(tmp_path, training_paths):
    from jaxinv.inverters import hoggle_experiments as H
    path = str(tmp_path / "random.npz")
    random_dictionary().save(path)
    evaluation = H.evaluate(path, num_test=3, size=48, log=lambda line: None)
    results = evaluation.results
    assert results["num_images"] == 3 and results["num_atoms"] == 4 and results["training_info"] == {"note": "random"}
    assert set(evaluation.reconstructions) == {"training", "stretch"}
    for mapping in ("training", "stretch"):
        assert results[mapping]["mean_error"] > 0 and evaluation.reconstructions[mapping].shape == (3, 48, 48)
    assert results["flat_grey"]["mean_error"] > 0
    written = H.write_evaluation(evaluation, str(tmp_path / "out"), figure_images=2)
    assert [p.rsplit("/", 1)[1] for p in written] == ["results.json", "figure.png"]
    with pytest.raises(ValueError, match="is not one of training, stretch"):
        H.evaluate(path, pixel_mappings=["match"])
    with pytest.raises(ValueError, match="--num_test must be at least 2"):
        H.evaluate(path, num_test=1)
