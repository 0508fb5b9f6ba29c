"""Image I/O, validation and display helpers.

Convention used everywhere in jaxinv: an image is a float array of shape (H, W) (grey) or
(H, W, C) (colour, RGB) with pixel values in [0, 255]. Representations that are not scale
invariant (HOG's 1e-4 block-norm floor, for instance) are defined for this range.
"""
from __future__ import annotations

import os
from importlib import resources
from typing import Sequence

import jax
import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxinv.io import outputs, paths

SAMPLE_IMAGE_PROVENANCE = (
    "astronaut.png: Eileen Collins, NASA portrait (public domain), as shipped by scikit-image "
    "(skimage.data.astronaut), resized from 512x512 to 256x256 with Lanczos filtering."
)


DATA_ENV = "JAXINV_DATA"
DATA_LAYOUT = ("DATA/imagenet_samples/ (the ImageNet sample photographs, *.JPEG) and DATA/cifar10/ holding CIFAR-10 as "
               "cifar-10-python.tar.gz (the standard python archive), its extracted folder cifar-10-batches-py/, or "
               "cifar10_jpeg.tar.gz (JPEG files cifar10/{train,test}/<class>/*.jpg)")
"""What the data folder holds (the README shows it as a tree). Data is read in place, never copied."""

_data_dir_flag: str | None = None


def use_data_dir(data_dir: str | None) -> None:
    """Makes `data_dir` (a binary's --data_dir; None: none) this process's data folder, ahead of $JAXINV_DATA."""
    global _data_dir_flag
    _data_dir_flag = data_dir or None


def _checkout() -> str | None:
    """The source checkout jaxinv runs from (the folder holding setup.cfg beside jaxinv/), None when installed."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return root if os.path.isfile(os.path.join(root, "setup.cfg")) else None


def _data_root(data_dir: str | None) -> tuple[str | None, str]:
    """(the data folder or None, where the rule found it)."""
    if data_dir:
        return os.path.normpath(data_dir), "--data_dir"
    if _data_dir_flag:
        return os.path.normpath(_data_dir_flag), "--data_dir"
    if os.environ.get(DATA_ENV):
        return os.path.normpath(os.environ[DATA_ENV]), f"${DATA_ENV}"
    checkout = _checkout()
    if checkout is None:
        return None, f"no --data_dir, no ${DATA_ENV}, and no default (jaxinv is installed, not run from a checkout)"
    return os.path.normpath(os.path.join(checkout, "..", "shared", "data")), "the default ../shared/data beside the checkout"


def data_root(data_dir: str | None = None) -> str:
    """The one data folder, by one rule: `data_dir` (a binary's --data_dir) if given, else the --data_dir of this
    process (`use_data_dir`), else $JAXINV_DATA, else ../shared/data beside the source checkout jaxinv runs from.
    An installed jaxinv has no default: then a FileNotFoundError says how to set one. Layout: `DATA_LAYOUT`."""
    root, _ = _data_root(data_dir)
    if root is None:
        raise missing_data("the data folder", None)
    return root


def missing_data(what: str, path: str | None, data_dir: str | None = None) -> FileNotFoundError:
    """The error for data that is not where the rule of `data_root` looked: names `what`, the path tried, where the
    data folder came from, the variable and flag that set it, and the layout expected."""
    root, how = _data_root(data_dir)
    found = f"{what} not found: {path} (data folder {root} from {how})" if root else f"no data folder: {how}"
    return FileNotFoundError(f"{found}; set ${DATA_ENV} or --data_dir to a folder holding {DATA_LAYOUT}")


def imagenet_samples_dir(data_dir: str | None = None) -> str:
    """The ImageNet samples folder of the data folder (`data_root(data_dir)`)."""
    return os.path.join(data_root(data_dir), "imagenet_samples")


def imagenet_sample_paths(images_dir: str | None = None, num_images: int | None = None) -> list[str]:
    """The first `num_images` files (sorted) of `images_dir`, by default the data folder's ImageNet samples."""
    if images_dir is None:
        images_dir = imagenet_samples_dir()
        if not os.path.isdir(images_dir):
            raise missing_data("the ImageNet samples", images_dir)
    elif not os.path.isdir(images_dir):
        raise FileNotFoundError(f"images folder not found: {images_dir} (--images_dir)")
    paths = sorted(os.path.join(images_dir, f) for f in os.listdir(images_dir)
                   if f.lower().endswith((".jpeg", ".jpg", ".png")))
    if not paths:
        raise FileNotFoundError(f"no .jpeg/.jpg/.png images in {images_dir}")
    return paths[:num_images] if num_images else paths


def sample_image_path() -> str:
    """Path of the built-in sample image (public domain, see SAMPLE_IMAGE_PROVENANCE)."""
    return str(resources.files("jaxinv") / "assets" / "astronaut.png")


def load_image(path: str, *, grey: bool = False, size: int | Sequence[int] | None = None) -> np.ndarray:
    """Reads an image file into float32 [0, 255], (H, W, 3) or (H, W) if `grey`.

    `size` resizes (bicubic): an int scales the shorter side to it and centre-crops a square,
    a pair (height, width) resizes exactly.
    """
    paths.input_file(path, "image file")  # missing: FileNotFoundError; a named pipe or a folder: ValueError
    try:
        with Image.open(path) as im:
            im = im.convert("L" if grey else "RGB")
            if size is not None:
                im = _resize(im, size)
            array = np.asarray(im, dtype=np.float32)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image file {path}: {e}") from None
    return array


def load_sample_image(*, grey: bool = False, size=None) -> np.ndarray:
    return load_image(sample_image_path(), grey=grey, size=size)


def _resize(im: Image.Image, size) -> Image.Image:
    if isinstance(size, int):
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return im.crop((left, top, left + size, top + size))
    height, width = size
    return im.resize((int(width), int(height)), Image.BICUBIC)


def resized(image, size: int | Sequence[int]) -> np.ndarray:
    """An array image in [0, 255] resized as `load_image` resizes files (an int: shorter side to it,
    centre square crop; a pair: exactly); returned unchanged (not quantised) when already that size."""
    array = np.asarray(image, np.float32)
    target = (size, size) if isinstance(size, int) else tuple(size)
    if array.shape[:2] == tuple(target):
        return array
    return np.asarray(_resize(Image.fromarray(to_uint8(array)), size), np.float32)


LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601 luma weights of R, G and B: jaxinv's one colour-to-grey rule (what PIL's convert('L')
computes, without rounding). `to_grey` applies it to numpy arrays; traceable (jnp) code multiplies
by `jnp.asarray(LUMA, dtype)` itself."""


def to_grey(image, dtype=np.float32) -> np.ndarray:
    """ITU-R 601 luma (`LUMA`) of an (..., H, W, 3) image or batch, as `dtype`; an (H, W) image is
    returned as it is (cast to `dtype`)."""
    image = np.asarray(image, dtype)
    if image.ndim == 2:
        return image
    return image[..., :3] @ np.asarray(LUMA, dtype)


def validate_image(image, *, min_height: int = 1, min_width: int = 1, channels: Sequence[int] | None = None,
                   what: str = "image") -> None:
    """Raises ValueError naming the problem when `image` is not an (H, W) or (H, W, C) image.

    Checks rank, channel count, minimum size, the dtype (half precision, float16 or bfloat16, is refused: pixel
    values in [0, 255] keep only 3 significant digits there) and (for concrete arrays, not inside jit)
    finiteness. Traced arrays are checked for shape and dtype only.
    """
    shape = getattr(image, "shape", None)
    if shape is None:
        raise TypeError(f"{what} must be an array, got {type(image).__name__}")
    dtype = np.dtype(getattr(image, "dtype", np.float32))
    if dtype.name in ("float16", "bfloat16"):
        raise ValueError(f"{what} is {dtype.name}: half precision is not supported; convert it to float32 "
                         "(image.astype(np.float32))")
    if len(shape) not in (2, 3):
        raise ValueError(f"{what} must have shape (H, W) or (H, W, C); got shape {tuple(shape)}")
    if channels is not None and len(shape) == 3 and shape[2] not in channels:
        raise ValueError(f"{what} must have {' or '.join(map(str, channels))} channels; got shape {tuple(shape)}")
    if shape[0] < min_height or shape[1] < min_width:
        raise ValueError(f"{what} of shape {tuple(shape)} is too small: need at least {min_height}x{min_width} pixels")
    if not isinstance(image, jax.core.Tracer):
        if not np.all(np.isfinite(np.asarray(image))):
            raise ValueError(f"{what} contains non-finite values (NaN or inf)")


def to_uint8(image) -> np.ndarray:
    return np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)


def save_image(path: str, image) -> str:
    """Writes an image in [0, 255] to `path` atomically (temporary file + rename)."""
    array = to_uint8(image)
    outputs.atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"), ".png")
    return path


def fit(image, height: int, width: int) -> np.ndarray:
    """Resizes an image in [0, 255] to exactly (height, width) for display (bilinear)."""
    array = to_uint8(image)
    if array.shape[:2] == (height, width):
        return np.asarray(image, np.float32)
    resized = Image.fromarray(array).resize((width, height), Image.BILINEAR)
    return np.asarray(resized, np.float32)


def image_grid(rows: Sequence[Sequence[np.ndarray]], *, pad: int = 4, background: float = 255.0,
               tile: tuple[int, int] | None = None) -> np.ndarray:
    """Tiles images (grey or RGB, any sizes) into one RGB array, rows top to bottom; with `tile`
    = (height, width) every image is first resized to it (e.g. glyph pictures next to images)."""
    def rgb(a):
        a = np.asarray(a, np.float32)
        if tile is not None:
            a = fit(a, *tile)
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]

    rows = [[rgb(a) for a in row] for row in rows]
    cell_h = max(a.shape[0] for row in rows for a in row)
    cell_w = max(a.shape[1] for row in rows for a in row)
    ncols = max(len(row) for row in rows)
    grid = np.full((len(rows) * (cell_h + pad) + pad, ncols * (cell_w + pad) + pad, 3), background, np.float32)
    for i, row in enumerate(rows):
        for j, a in enumerate(row):
            y, x = pad + i * (cell_h + pad), pad + j * (cell_w + pad)
            grid[y:y + a.shape[0], x:x + a.shape[1]] = a
    return grid


CAPTION_HEIGHT = 12  # pixels of the strip under a tile that holds its caption


def labelled_grid(rows: Sequence[Sequence[np.ndarray]], *, column_labels: Sequence[str] = (),
                  row_labels: Sequence[str] = (), tile_labels: Sequence[Sequence[str]] | None = None,
                  tile: tuple[int, int] | None = None, scale: int = 1, pad: int = 4) -> np.ndarray:
    """`image_grid` with text labels above the columns and left of the rows, as the papers' figures
    (layers across, restarts or images down), and with `tile_labels` (nested like `rows`; "" for
    none) a caption under each tile, e.g. its reconstruction error. `scale` enlarges small tiles
    (nearest neighbour)."""
    from PIL import ImageDraw

    if scale > 1:
        rows = [[np.kron(np.asarray(a, np.float32), np.ones((scale, scale) + (1,) * (np.ndim(a) - 2), np.float32))
                 for a in row] for row in rows]
        tile = None if tile is None else (tile[0] * scale, tile[1] * scale)
    heights = [[(tile or np.shape(a))[0] for a in row] for row in rows]
    if tile_labels is not None:
        if [len(r) for r in tile_labels] != [len(r) for r in rows]:
            raise ValueError("tile_labels must be nested like rows")
        def captioned(a):
            a = np.asarray(fit(a, *tile) if tile is not None else a, np.float32)
            strip = np.full((CAPTION_HEIGHT,) + a.shape[1:], 255.0, np.float32)
            return np.concatenate([a, strip])
        rows = [[captioned(a) for a in row] for row in rows]
        tile = None
    grid = image_grid(rows, pad=pad, tile=tile)
    cell_h = (grid.shape[0] - pad) // max(len(rows), 1) - pad
    cell_w = (grid.shape[1] - pad) // max(max(len(r) for r in rows), 1) - pad
    top = 14 if column_labels else 0
    left = 8 + 6 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    canvas = Image.new("RGB", (grid.shape[1] + left, grid.shape[0] + top), (255, 255, 255))
    canvas.paste(Image.fromarray(to_uint8(grid)), (left, top))
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(column_labels):
        draw.text((left + pad + j * (cell_w + pad), 1), str(label), fill=(0, 0, 0))
    for i, label in enumerate(row_labels):
        draw.text((2, top + pad + i * (cell_h + pad) + cell_h // 2 - 5), str(label), fill=(0, 0, 0))
    for i, row in enumerate(tile_labels or ()):
        for j, label in enumerate(row):
            if label:
                draw.text((left + pad + j * (cell_w + pad) + 1, top + pad + i * (cell_h + pad) + heights[i][j]),
                          str(label), fill=(0, 0, 0))
    return np.asarray(canvas, np.float32)


def draw_box(image, box, colour=(255, 0, 0), width: int = 1) -> np.ndarray:
    """A copy of an image in [0, 255] (grey or RGB) as RGB with the outline of `box` = (top, left,
    bottom, right) (exclusive ends, pixels) drawn `width` pixels thick inside the box."""
    array = np.asarray(image, np.float32)
    rgb = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3].copy()
    top, left, bottom, right = (int(v) for v in box)
    if not (0 <= top < bottom <= rgb.shape[0] and 0 <= left < right <= rgb.shape[1]):
        raise ValueError(f"box {tuple(box)} is not inside the {rgb.shape[0]}x{rgb.shape[1]} image")
    colour = np.asarray(colour, np.float32)
    rgb[top:min(top + width, bottom), left:right] = colour
    rgb[max(bottom - width, top):bottom, left:right] = colour
    rgb[top:bottom, left:min(left + width, right)] = colour
    rgb[top:bottom, max(right - width, left):right] = colour
    return rgb


def stretch_contrast(image) -> np.ndarray:
    """An image linearly rescaled so that its minimum is 0 and its maximum 255 (flat images: 128)."""
    array = np.asarray(image, np.float32)
    low, high = float(array.min()), float(array.max())
    if high - low < 1e-6:
        return np.full_like(array, 128.0)
    return (array - low) * (255.0 / (high - low))
