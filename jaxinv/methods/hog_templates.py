"""Visualising HOG templates (IJCV Sect. 6.1): pre-images that maximise Phi(x) = <w, HOG(x)>.

A template w is a (h, w, 31) array of UoCTTI HOG weights (VLFeat's layout: 18 directed orientations,
9 undirected, 4 texture components), e.g. a DPM root filter. Its visualisation is activation
maximisation through the HOG representation on an image of h x w cells (8h x 8w pixels at cell
size 8): the inner-product loss (IJCV Eq. 4) with Phi0 = 1 and Z = M rho^2, rho = max(H, W) of the
image in pixels and M = <|w|, HOG(white noise)>. Images are grey, [0, 255]; the engine optimises
null-mean images (minus 128).

Templates are read from .npy (h, w, 31) arrays or DPM v5 model files (.mat, `model.filters(i).w`,
the root filters found through `model.rules{model.start}`); `train_template` learns one from images.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import features, representations
from jaxinv.engine import preimage
from jaxinv.io import images, paths
from jaxinv.io.progress import solver_progress
from jaxinv.engine.preimage import Problem, Stage
from jaxinv.engine.representation import Representation

HOG_DIMS = 31
DPM_DIMS = 32  # DPM v5 appends a truncation feature, unused here
TEMPLATE_C_PER_RHO2 = 1.0
"""C = rho^2 (docs/deep_visualisation.md, "Caricatures, textures, style, HOG templates"): with Z = M rho^2 and the paper's C = 1 the data term is
1/rho^2 of the per-pixel-averaged regularisers and the result stays flat."""


@dataclasses.dataclass(frozen=True, eq=False)
class Template:
    """HOG weights (h, w, 31) with the cell size of the HOG they apply to."""
    name: str
    weights: np.ndarray
    cell_size: int = 8

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) in pixels of an image whose HOG has exactly the template's h x w cells."""
        return self.weights.shape[0] * self.cell_size, self.weights.shape[1] * self.cell_size


def check_weights(weights, what: str) -> np.ndarray:
    """(h, w, 31) float32 from a (h, w, 31) or DPM (h, w, 32) array; ValueError naming `what` otherwise."""
    weights = np.asarray(weights)
    if weights.ndim != 3 or weights.shape[2] not in (HOG_DIMS, DPM_DIMS) or min(weights.shape[:2]) < 2:
        raise ValueError(f"{what}: a HOG template must be an (h, w, 31) array (or DPM's (h, w, 32)) with h, w >= 2; "
                         f"got shape {weights.shape}")
    weights = np.asarray(weights[..., :HOG_DIMS], np.float32)
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{what}: the template contains non-finite values")
    if not np.any(weights):
        raise ValueError(f"{what}: the template is all zeros")
    return weights


def load_templates(path: str, cell_size: int | None = None) -> list[Template]:
    """Templates from a .npy file (one (h, w, 31) array) or a DPM v5 model .mat (its root filters, one per
    component, mirrored copies skipped; cell size from model.sbin)."""
    paths.input_file(path, "template file")  # missing: FileNotFoundError; a pipe or folder: ValueError
    name = os.path.splitext(os.path.basename(path))[0]
    if path.lower().endswith(".npy"):
        return [Template(name, check_weights(np.load(path), path), cell_size or 8)]
    if path.lower().endswith(".mat"):
        return _dpm_root_filters(path, name, cell_size)
    raise ValueError(f"unsupported template file {path}: use .npy (h, w, 31) or a DPM v5 model .mat")


def _field(struct, name: str, path: str):
    if not hasattr(struct, name):
        fields = ", ".join(getattr(struct, "_fieldnames", []) or [])
        raise ValueError(f"{path}: the DPM model has no field {name!r} (fields: {fields})")
    return getattr(struct, name)


def _items(array) -> list:
    """The elements of a MATLAB cell or struct array as loaded by scipy (any shape), in order."""
    return list(np.asarray(array, dtype=object).ravel(order="F"))


def _number(value, what: str, path: str) -> float:
    flat = np.asarray(value).ravel()
    if flat.size != 1:
        raise ValueError(f"{path}: expected one number for {what}, got shape {np.shape(value)}")
    return float(flat[0])


def _dpm_root_filters(path: str, name: str, cell_size: int | None) -> list[Template]:
    from scipy import io

    try:  # not squeezed: a one-element cell stays a cell
        data = io.loadmat(path, squeeze_me=False, struct_as_record=False)
    except Exception as e:  # scipy raises several types for unreadable files
        raise ValueError(f"cannot read {path} as a MATLAB file: {e}") from None
    if "model" not in data:
        keys = ", ".join(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path}: no variable 'model' (a DPM v5 model); variables: {keys}")
    model = _items(data["model"])[0]
    filters = _items(_field(model, "filters", path))
    if cell_size is None and hasattr(model, "sbin"):
        cell_size = int(_number(model.sbin, "model.sbin", path))
    elif cell_size is None and hasattr(model, "features") and hasattr(_items(model.features)[0], "sbin"):
        cell_size = int(_number(_items(model.features)[0].sbin, "model.features.sbin", path))
    cell_size = cell_size or 8
    if all(hasattr(model, f) for f in ("rules", "start", "symbols")):
        symbols = _items(model.symbols)
        rules = _items(_items(model.rules)[int(_number(model.start, "model.start", path)) - 1])
        indices = []
        for rule in rules:
            root = int(np.asarray(_field(rule, "rhs", path)).ravel()[0])
            indices.append(int(_number(_field(symbols[root - 1], "filter", path), f"symbols({root}).filter", path)) - 1)
    else:
        indices = list(range(len(filters)))
    templates = []
    for i in indices:
        if not 0 <= i < len(filters):
            raise ValueError(f"{path}: a root symbol points to filter {i + 1}, but the model has {len(filters)}")
        flip = getattr(filters[i], "flip", 0)
        if np.size(flip) and bool(np.asarray(flip).ravel()[0]):
            continue  # the mirrored twin of another component
        weights = check_weights(_field(filters[i], "w", path), f"{path} filter {i + 1}")
        templates.append(Template(f"{name} root {i + 1}", weights, cell_size))
    if not templates:
        raise ValueError(f"{path}: no root filters found")
    return templates


@dataclasses.dataclass(frozen=True)
class TemplateResponse:
    """apply(w, x) = <w, HOG(x)> of a grey image (H, W, 1), code shape (1,); w = the template's weights."""
    cell_size: int

    def __call__(self, weights, x):
        return jnp.sum(weights * features.hog(x[..., 0], self.cell_size))[None]


def template_representation(template: Template) -> Representation:
    """Phi(x) = <w, HOG(x)> as a Representation whose params are the template's weights: every
    template of one size shares the compiled steps."""
    hog = representations.get("hog", cell_size=template.cell_size)
    return Representation(f"template:{template.name}", TemplateResponse(template.cell_size),
                          jnp.asarray(template.weights), channels=1, mean=hog.mean, stride=template.cell_size,
                          input_size=template.image_shape, min_size=2 * template.cell_size)


def template_response(template: Template, grey_image) -> float:
    """<w, HOG(x)> of a grey image in [0, 255] of the template's image shape."""
    return float(np.sum(template.weights * np.asarray(features.hog(np.asarray(grey_image, np.float32),
                                                                    template.cell_size))))


def white_noise_maximum(template: Template, seed: int = 0) -> float:
    """M = <|w|, HOG(white noise)>: uniform noise in [0, 255] of the template's image shape."""
    noise = np.random.default_rng(seed).uniform(0, 255, template.image_shape).astype(np.float32)
    return float(np.sum(np.abs(template.weights) * np.asarray(features.hog(noise, template.cell_size))))


def template_normaliser(template: Template, seed: int = 0) -> float:
    """Z = M rho^2 with rho = max(H, W) in pixels and M = `white_noise_maximum`."""
    return white_noise_maximum(template, seed) * max(template.image_shape) ** 2


def template_problem(template: Template, *, C: float | None = None, bound: float = 80.0) -> Problem:
    """The inner-product problem for a template: no jitter (as for HOG inversion), C = rho^2 by default."""
    rho = max(template.image_shape)
    return Problem(loss="inner_product", C=TEMPLATE_C_PER_RHO2 * rho ** 2 if C is None else float(C),
                   bound=float(bound), jitter=1)


@dataclasses.dataclass
class TemplateVisualisation:
    template: Template
    images: np.ndarray  # (K, H, W) grey [0, 255]
    responses: np.ndarray  # (K,) <w, HOG(x*)> of the displayed images
    initial_responses: np.ndarray  # (K,) <w, HOG(x)> of the random initialisations
    normaliser: float
    problem: Problem
    history: dict
    seconds: float


def visualise_template(template: Template, *, restarts: int = 4, seed: int = 0, C: float | None = None,
                       bound: float = 80.0, stages: Sequence[Stage] = preimage.default_stages(),
                       progress: Callable | None = None) -> TemplateVisualisation:
    """Pre-images maximising <w, HOG(x)> / Z from `restarts` random initialisations (IJCV Sect. 6.1)."""
    representation = template_representation(template)
    problem = template_problem(template, C=C, bound=bound)
    z = template_normaliser(template, seed)
    target = preimage.make_target(representation, problem, phi0=jnp.ones((1,), jnp.float32), z=z)
    key = jax.random.key(seed)
    shape = (restarts,) + template.image_shape + (1,)
    x_init = preimage.random_init(jax.random.fold_in(key, 1), shape, problem.bound)
    result = preimage.solve(representation, problem, target, image_shape=template.image_shape, key=key,
                            restarts=restarts, stages=stages, x_init=x_init,
                            progress=solver_progress(progress, stages))
    shown = representation.to_display(result.images)
    initial = representation.to_display(x_init)
    return TemplateVisualisation(template, shown, np.array([template_response(template, im) for im in shown]),
                                 np.array([template_response(template, im) for im in initial]), z, problem,
                                 result.history, result.seconds)


# ---------------------------------------------------------------------------------------------
# Learning a template from images


def train_template(positives, negatives, *, cell_size: int = 8, ridge: float = 1.0, name: str = "trained") -> Template:
    """A linear HOG template by ridge regression of +1 (positives) / -1 (negatives) on HOG features
    (grey images of one size, [0, 255]); the weights are centred so that <w, HOG> ranks images."""
    pos, neg = features.batched_hog(positives, cell_size), features.batched_hog(negatives, cell_size)
    if not len(pos) or not len(neg):
        raise ValueError("training a template needs positive and negative images")
    x = np.concatenate([pos, neg]).reshape(len(pos) + len(neg), -1).astype(np.float64)
    y = np.concatenate([np.ones(len(pos)), -np.ones(len(neg))])
    mean = x.mean(axis=0)
    xc = x - mean
    w = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(x.shape[1]), xc.T @ (y - y.mean()))
    return Template(name, w.reshape(pos.shape[1:]).astype(np.float32), cell_size)


def cifar_template(class_name: str, *, num_per_class: int = 500, size: int = 64, cell_size: int = 8,
                   data_dir: str | None = None) -> Template:
    """A template for a CIFAR-10 class against the nine others, trained on grey training images
    upsampled to size x size (8 x 8 cells of 8 pixels by default)."""
    from jaxinv.nets import cifar10

    if class_name not in cifar10.CLASS_NAMES:
        raise ValueError(f"unknown CIFAR-10 class {class_name!r}; valid: {', '.join(cifar10.CLASS_NAMES)}")
    data = cifar10.load(data_dir)
    label = cifar10.CLASS_NAMES.index(class_name)
    labels = data["train_labels"]
    pos = np.flatnonzero(labels == label)[:num_per_class]
    neg = np.flatnonzero(labels != label)[:num_per_class]

    def grey(indices):
        return np.stack([images.fit(images.to_grey(data["train_images"][i]), size, size) for i in indices])

    return train_template(grey(pos), grey(neg), cell_size=cell_size, name=f"cifar10 {class_name}")


def edge_template(cells: int = 6, orientation: str = "vertical", cell_size: int = 8) -> Template:
    """A hand-built template: +1 on the HOG bins of vertical (or horizontal) edges in every cell."""
    n = 9
    angles = np.arange(2 * n) * 180.0 / n  # directed bins, degrees, gradient directions (y down)
    target = 0.0 if orientation == "vertical" else 90.0 if orientation == "horizontal" else None
    if target is None:
        raise ValueError(f"orientation must be 'vertical' or 'horizontal', got {orientation!r}")
    weights = np.zeros((cells, cells, HOG_DIMS), np.float32)
    for k, angle in enumerate(angles):
        distance = abs((angle - target + 90) % 180 - 90)  # to the edge's gradient axis, either sign
        if distance < 180.0 / n:
            weights[..., k] = weights[..., 2 * n + k % n] = 1.0 - distance / (180.0 / n)
    return Template(f"{orientation} edges", weights, cell_size)
