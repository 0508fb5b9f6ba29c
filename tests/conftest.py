import pytest

from jaxinv import vlfeat
from jaxinv.io import images


@pytest.fixture(scope="session")
def vl():
    if not vlfeat.available():
        pytest.skip(f"VLFeat not available: {vlfeat.INSTALL_HINT}")
    return vlfeat.library()


@pytest.fixture(scope="session")
def natural_images():
    """13 natural test images in [0, 255]: 12 ImageNet samples of assorted sizes (several not
    multiples of 8; even indices grey, odd colour) and the built-in 256x256 colour sample."""
    try:
        paths = images.imagenet_sample_paths()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    sizes = [(64, 64), (67, 93), (100, 75), (45, 130), (128, 96), (81, 81),
             (33, 50), (120, 160), (96, 61), (73, 110), (56, 56), (150, 99)]
    out = [images.load_image(path, grey=(i % 2 == 0), size=size)
           for i, (path, size) in enumerate(zip(paths[::40], sizes))]
    out.append(images.load_sample_image())
    return out
