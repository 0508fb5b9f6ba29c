"""Sparse SIFT: the grid encoding on synthetic keypoints, and VLFeat's keypoints (skipped without libvl)."""
import numpy as np
import pytest

from jaxinv import vlfeat
from jaxinv.features import sift_grid, sparse_sift
from jaxinv.io.images import to_grey


def keypoints(*rows, descriptor_size=128):
    """Frames (x, y, scale, angle) and descriptors filled with 1, 2, ... (one value per keypoint)."""
    frames = np.array(rows, np.float64).reshape(-1, 4)
    descriptors = np.repeat(np.arange(1, len(frames) + 1, dtype=np.float32)[:, None], descriptor_size, axis=1)
    return frames, descriptors


def test_grid_shape_for_256_images():
    assert sift_grid(*keypoints(), (256, 256)).shape == (64, 64, 133)
    assert sift_grid(*keypoints(), (256, 256, 3), cell=8).shape == (32, 32, 133)
    assert sift_grid(*keypoints(), (18, 23)).shape == (4, 5, 133)
    assert sift_grid(*keypoints(descriptor_size=4), (16, 16)).shape == (4, 4, 9)
    assert not np.any(sift_grid(*keypoints(), (16, 16)))


def test_channels_of_one_keypoint():
    frames, descriptors = keypoints((5.5, 9.25, 2.0, np.pi / 6))
    descriptors[0] = np.arange(128)
    grid = sift_grid(frames, descriptors, (16, 20), cell=4)
    assert grid.dtype == np.float32
    np.testing.assert_array_equal(grid[2, 1, :128], np.arange(128))
    np.testing.assert_allclose(grid[2, 1, 128:], [1.5, 1.25, 0.5, np.sqrt(3) / 2, np.log(2.0)], rtol=1e-6)
    # Every other cell is empty.
    grid[2, 1] = 0
    assert not np.any(grid)


def test_cell_boundaries_and_out_of_range_keypoints():
    frames, descriptors = keypoints(
        (4.0, 0.0, 1.0, 0.0),     # on the left edge of cell (0, 1): x mod 4 = 0
        (3.999, 7.5, 1.0, 0.0),   # cell (1, 0)
        (-0.01, 2.0, 1.0, 0.0),   # left of the image
        (2.0, -3.0, 1.0, 0.0),    # above the image
        (17.0, 2.0, 1.0, 0.0),    # in the partial column beyond the last whole cell (width 18)
        (2.0, 16.5, 1.0, 0.0))    # below the image
    grid = sift_grid(frames, descriptors, (16, 18), cell=4)
    assert grid.shape == (4, 4, 133)
    occupied = {tuple(index) for index in np.argwhere(np.any(grid != 0, axis=-1))}
    assert occupied == {(0, 1), (1, 0)}
    assert grid[0, 1, 0] == 1 and grid[0, 1, 128] == 0 and grid[0, 1, 129] == 0
    assert grid[1, 0, 0] == 2
    np.testing.assert_allclose(grid[1, 0, 128:130], [3.999, 3.5])


def test_one_of_several_keypoints_per_cell_chosen_at_random():
    # Five keypoints in cell (1, 1), two in cell (0, 0), one in cell (2, 3).
    rows = [(5 + 0.5 * k, 6, 1 + k, 0.1 * k) for k in range(5)] + [(1, 1, 1, 0), (2, 2, 2, 0), (13, 9, 3, 0)]
    frames, descriptors = keypoints(*rows)
    grid = sift_grid(frames, descriptors, (12, 16), seed=3)
    # The chosen keypoint's channels all come from one keypoint.
    chosen = int(grid[1, 1, 0]) - 1
    assert 0 <= chosen < 5
    np.testing.assert_allclose(grid[1, 1, 128:], [frames[chosen, 0] - 4, 2, np.sin(0.1 * chosen),
                                                  np.cos(0.1 * chosen), np.log(1 + chosen)], rtol=1e-6)
    assert grid[0, 0, 0] in (6, 7) and grid[2, 3, 0] == 8
    # Deterministic for a seed, uniform over the keypoints of a cell across seeds.
    np.testing.assert_array_equal(sift_grid(frames, descriptors, (12, 16), seed=3), grid)
    picks = np.array([sift_grid(frames, descriptors, (12, 16), seed=seed)[1, 1, 0] for seed in range(1000)])
    frequencies = np.bincount(picks.astype(int), minlength=6)[1:] / len(picks)
    assert np.all(np.abs(frequencies - 0.2) < 0.05), frequencies


@pytest.mark.parametrize("frames, descriptors, shape, cell, message", [
    (np.zeros((2, 3)), np.zeros((2, 128)), (16, 16), 4, "frames must have shape"),
    (np.ones((2, 4)), np.zeros((3, 128)), (16, 16), 4, "descriptors must have shape"),
    (np.ones((2, 4)), np.zeros(128), (16, 16), 4, "descriptors must have shape"),
    (np.full((1, 4), np.nan), np.zeros((1, 128)), (16, 16), 4, "finite"),
    (np.zeros((1, 4)), np.zeros((1, 128)), (16, 16), 4, "scales"),
    (np.ones((1, 4)), np.zeros((1, 128)), (3, 16), 4, "smaller than one"),
    (np.ones((1, 4)), np.zeros((1, 128)), (16,), 4, "image_shape"),
    (np.ones((1, 4)), np.zeros((1, 128)), (16, 16), 0, "cell must be a positive integer"),
    (np.ones((1, 4)), np.zeros((1, 128)), (16, 16), 2.0, "cell must be a positive integer"),
])
def test_bad_arguments_raise(frames, descriptors, shape, cell, message):
    with pytest.raises(ValueError, match=message):
        sift_grid(frames, descriptors, shape, cell)


# ---------------------------------------------------------------------------- with VLFeat


def sift(image, **kwargs):
    from jaxinv.vlfeat.sift import vlfeat_sift
    return vlfeat_sift(image, **kwargs)


def test_keypoints_on_a_natural_image(vl, natural_images):
    image = to_grey(natural_images[-1])  # the 256x256 sample
    frames, descriptors = sift(image)
    assert frames.shape[1] == 4 and descriptors.shape == (len(frames), 128) and len(frames) > 100
    x, y, scale, angle = frames.T
    assert np.all((x >= 0) & (x <= 255) & (y >= 0) & (y <= 255))
    assert np.all(scale > 1.5) and np.all((angle >= 0) & (angle <= 2 * np.pi))
    # The driver's default uint8 descriptors: integers in [0, 255] of a unit vector times 512.
    assert descriptors.dtype == np.float32 and np.all(descriptors == np.floor(descriptors))
    assert descriptors.min() >= 0 and descriptors.max() <= 255
    norms = np.linalg.norm(descriptors, axis=1)
    assert np.all((norms > 450) & (norms <= 512.5)), (norms.min(), norms.max())
    float_frames, float_descriptors = sift(image, float_descriptors=True)
    np.testing.assert_array_equal(float_frames, frames)
    np.testing.assert_allclose(np.linalg.norm(float_descriptors, axis=1), 512, rtol=1e-3)
    np.testing.assert_array_equal(np.floor(np.minimum(float_descriptors, 255)), descriptors)
    # A keypoint with several dominant orientations gives one frame per orientation.
    _, repeats = np.unique(frames[:, :3], axis=0, return_counts=True)
    assert repeats.max() > 1


@pytest.mark.parametrize("sigma", [4.0, 8.0])
def test_gaussian_blob_gives_a_keypoint_at_its_centre(vl, sigma):
    y, x = np.mgrid[:128, :128]
    blob = 50 + 150 * np.exp(-((x - 70.3) ** 2 + (y - 50.6) ** 2) / (2 * sigma ** 2))
    frames, _ = sift(blob)
    distance = np.hypot(frames[:, 0] - 70.3, frames[:, 1] - 50.6)
    centre = frames[distance < 0.5]
    assert len(centre) >= 1, frames
    # A Gaussian blob of std sigma peaks in the DoG scale space at about sigma.
    assert np.all((centre[:, 2] > 0.7 * sigma) & (centre[:, 2] < 1.1 * sigma)), centre


def test_frames_follow_vl_sifts_conventions_under_transposition(vl, natural_images):
    """vl_sift on a MATLAB array sees the transposed image and maps its frames back: on a
    row-major array the frames of the transposed image must be the same frames with x and y
    swapped, angles theta -> pi/2 - theta, and descriptors with the spatial rows flipped and
    orientation bins t -> -t (MATLAB's transpose_descriptor)."""
    image = to_grey(natural_images[-1])[:120, :90]
    frames, descriptors = sift(image, float_descriptors=True)
    t_frames, t_descriptors = sift(np.ascontiguousarray(image.T), float_descriptors=True)
    flipped = t_descriptors.reshape(-1, 4, 4, 8)[:, ::-1][..., -np.arange(8) % 8].reshape(-1, 128)
    matched, agreeing = 0, 0
    # Same place: within 1e-2 px. The transposed image takes other float32 roundings through VLFeat's separable
    # smoothing and sub-pixel refinement: on an AMD EPYC (libvlfeat1 0.9.21, with or without its SIMD) 4 of 30
    # keypoints land 1.5e-3 to 2.5e-3 px from their transposed twins, the rest within 5e-4. A convention error
    # (x/y, a half-pixel origin, the scale) moves them by 0.5 px or more.
    for frame, descriptor in zip(frames, descriptors):
        same_place = np.all(np.abs(t_frames[:, [1, 0, 2]] - frame[:3]) < 1e-2, axis=1)
        turn = np.angle(np.exp(1j * (t_frames[:, 3] - (np.pi / 2 - frame[3]))))
        same = np.flatnonzero(same_place & (np.abs(turn) < 1e-3))
        if len(same):
            matched += 1
            agreeing += np.abs(flipped[same[0]] - descriptor).max() < 1.0
    assert matched >= 0.9 * len(frames) and agreeing >= 0.9 * matched, (len(frames), matched, agreeing)


def test_sparse_sift_is_sift_grid_of_vlfeat_keypoints(vl, natural_images):
    image = natural_images[-1]  # colour, 256x256
    grid = sparse_sift(image, seed=1)
    assert grid.shape == (64, 64, 133)
    frames, descriptors = sift(to_grey(image))
    np.testing.assert_array_equal(grid, sift_grid(frames, descriptors, image.shape, seed=1))
    occupied = np.any(grid != 0, axis=-1)
    cells = {(int(y // 4), int(x // 4)) for x, y in frames[:, :2]}
    assert occupied.sum() == len(cells)
    np.testing.assert_array_equal(sparse_sift(to_grey(image)[..., None], seed=1), grid)
    assert not np.array_equal(sparse_sift(image, seed=2), grid)


@pytest.mark.parametrize("image, message", [
    (np.zeros((40, 40, 3)), "grey"),
    (np.zeros(40), "grey"),
    (np.zeros((7, 40)), "too small"),
    (np.full((40, 40), np.inf), "non-finite"),
])
def test_vlfeat_binding_refuses_bad_input(vl, image, message):
    with pytest.raises(ValueError, match=message):
        sift(image)


@pytest.mark.parametrize("image, cell, message", [
    (np.zeros((40, 40, 2)), 4, "channels"),
    (np.zeros((3, 40)), 4, "smaller than one"),
    (np.zeros((40, 40)), -4, "cell must be a positive integer"),
])
def test_sparse_sift_refuses_bad_input(image, cell, message):
    with pytest.raises(ValueError, match=message):
        sparse_sift(image, cell)


def test_missing_vlfeat_raises_unavailable(monkeypatch):
    from jaxinv.vlfeat import sift as vlfeat_sift_module

    def missing():
        raise vlfeat.VLFeatUnavailable("libvl.so not found")

    monkeypatch.setattr(vlfeat, "library", missing)
    vlfeat_sift_module._sift_library.cache_clear()
    try:
        with pytest.raises(vlfeat.VLFeatUnavailable):
            sparse_sift(np.zeros((32, 32)))
    finally:
        monkeypatch.undo()
        vlfeat_sift_module._sift_library.cache_clear()
