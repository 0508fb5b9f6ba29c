"""One call per method, on any model, with the papers' settings as defaults.

    import jaxinv
    result = jaxinv.invert("hog")                                # HOG of the built-in sample
    result = jaxinv.invert("cifar-ref", image, layer="conv3", restarts=4)
    result = jaxinv.maximise("cifar-ref", unit=3)                # class 3 of the class scores
    result = jaxinv.caricature(my_flax_model, image, layer="Conv_1")
    result.save("outputs/mine")                                  # grid.png + result.json

`model` is a representation name (`jaxinv.representations`: "hog", "hogb", "dsift", "NET:LAYER"),
a shipped network's name, a converted network's folder, a `jaxinv.nets.Model`, a model wrapped by
`jaxinv.adapters` (your own Flax linen / NNX / Equinox model or function), or a
`jaxinv.Representation`. `image` is a file path or an array in [0, 255], (H, W) grey or
(H, W, 3); it is centre-cropped and resized to the model's input size (default: the built-in
sample). Hand-crafted representations have none: they take arrays at their own size and files at
`SHALLOW_SIZE`. Defaults are the papers': IJCV Eq. 1 with Algorithm 1 for 300 + 50 iterations, the
per-layer C and jitter rules for network layers (`jaxinv.models.inversion_problem`), C = 100
without jitter for HOG, HOGb and DSIFT (IJCV Sect. 5.1).

Every call returns a `Result`: images in [0, 255], per-restart numbers, the energy history,
`.save(directory)` and notebook display.
"""
from __future__ import annotations

import dataclasses
import io
import os
from typing import Any

import numpy as np

from jaxinv import models, representations
from jaxinv.engine import preimage
from jaxinv.engine.preimage import Problem
from jaxinv.engine.representation import Representation
from jaxinv.io import images, outputs, paths

SHORT = {"error": "err", "probability": "p", "gain": "gain", "value": "value"}  # tile labels
SHALLOW_SIZE = 256
"""Side of the image a hand-crafted representation inverts by default (the demo's, `experiments.invert`)."""


@dataclasses.dataclass
class Result:
    """What one call found: K restarts (random starts, or jitter draws for caricatures)."""
    method: str  # "inversion", "activation maximisation" or "caricature"
    model: str
    layer: str | None
    images: np.ndarray  # (K, H, W) grey or (K, H, W, 3) RGB, in [0, 255]
    original: np.ndarray | None  # the image inverted or caricatured, in [0, 255]; None for maximisation
    scores: dict[str, np.ndarray]  # per restart (K,): "error" (IJCV Eq. 3), "value", "probability", "gain"
    history: dict[str, np.ndarray]  # energy term -> (iterations, K)
    problem: Problem
    seconds: float

    @property
    def errors(self) -> np.ndarray | None:
        """Normalised reconstruction error per restart (IJCV Eq. 3); None unless an inversion."""
        return self.scores.get("error")

    def summary(self) -> dict:
        """JSON-able description: method, model, layer, per-restart scores, problem and time."""
        return {"method": self.method, "model": self.model, "layer": self.layer,
                "scores": {k: np.asarray(v).tolist() for k, v in self.scores.items()},
                "problem": dataclasses.asdict(self.problem), "iterations": int(len(next(iter(self.history.values())))),
                "seconds": self.seconds}

    def grid(self) -> np.ndarray:
        """The original (if any) then every restart in one labelled row, each tile with its score."""
        tiles, labels = [], []
        if self.original is not None:
            tiles.append(self.original)
            labels.append("original")
        key = next((k for k in ("error", "probability", "gain", "value") if k in self.scores), None)
        for k, image in enumerate(self.images):
            tiles.append(image)
            labels.append(f"{k}: {SHORT[key]} {self.scores[key][k]:.2f}" if key else f"restart {k}")
        side = max(t.shape[0] for t in tiles)
        scale = max(1, -(-96 // side))  # small images (CIFAR) are enlarged to be seen
        return images.labelled_grid([tiles], column_labels=labels, scale=scale)

    def save(self, directory: str) -> list[str]:
        """Writes `directory`/grid.png, one PNG per restart and result.json; returns the paths. The folder's lock
        is held meanwhile (`jaxinv.io.paths`: another process writing there is refused)."""
        with paths.lock_folder(directory):
            written = [images.save_image(os.path.join(directory, "grid.png"), self.grid())]
            for k, image in enumerate(self.images):
                written.append(images.save_image(os.path.join(directory, f"restart{k}.png"), image))
            written.append(outputs.write_json(os.path.join(directory, "result.json"), self.summary()))
        return written

    def _repr_png_(self) -> bytes:
        from PIL import Image
        buffer = io.BytesIO()
        Image.fromarray(images.to_uint8(self.grid())).save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self):
        scores = ", ".join(f"{k} {np.mean(v):.3f}" for k, v in self.scores.items())
        return (f"Result({self.method} of {self.model}" + (f":{self.layer}" if self.layer else "")
                + f", {len(self.images)} restarts, {scores}, {self.seconds:.1f} s)")


def _stages(iterations: int, refine_iterations: int):
    for name, value in (("iterations", iterations), ("refine_iterations", refine_iterations)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if iterations + refine_iterations < 1:
        raise ValueError("iterations + refine_iterations must be at least 1")
    return preimage.default_stages(int(iterations), int(refine_iterations))


def _progress(progress: bool) -> bool:
    """True: progress bars (`jaxinv.io.progress`); False: none, whatever the process's default."""
    return bool(progress)


def _resolve(model, layer: str | None) -> tuple[Any, str | None]:
    """(a model of `jaxinv.models` or a Representation, layer) from what the caller gave."""
    if isinstance(model, Representation):
        return model, None
    if isinstance(model, str) and (model in representations.DEFAULT_CELL or ":" in model):
        if ":" not in model:
            return representations.get(model), None
        net, _, named_layer = model.rpartition(":")
        if layer is not None and layer != named_layer:
            raise ValueError(f"layer given twice: {model!r} and layer={layer!r}")
        return models.load(net), named_layer
    return models.load(model), layer


def _model_name(model) -> str:
    return model.name if isinstance(model, Representation) else models.name(model)


def _image(image, side: int | None, channels: int) -> np.ndarray:
    """`image` (path, array or None: the built-in sample) in [0, 255], centre-cropped to side x side
    (None: kept), grey (H, W) for one channel, else (H, W, 3)."""
    grey = channels == 1
    if image is None or isinstance(image, (str, os.PathLike)):
        path = images.sample_image_path() if image is None else os.fspath(image)
        return images.load_image(path, grey=grey, size=side)
    array = np.asarray(image, np.float32)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"an image is (H, W) grey or (H, W, 3) RGB in [0, 255]; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("the image has non-finite pixels")
    if grey and array.ndim == 3:
        array = images.to_grey(array[..., :3])
    elif not grey and array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    array = array[..., :3] if array.ndim == 3 else array
    return array if side is None else images.resized(array, int(side))


def _per_restart(history: dict) -> dict:
    return {term: np.asarray(values) for term, values in history.items()}


def _display(images_out: np.ndarray) -> np.ndarray:
    """(K, H, W, 1) grey results as (K, H, W)."""
    return images_out[..., 0] if images_out.shape[-1] == 1 else images_out


def _require_layer(model, layer: str | None, what: str) -> str:
    if layer is None:
        raise ValueError(f"{what} of {models.name(model)} needs layer=...; layers: {', '.join(models.layer_names(model))}")
    models.check_layer(model, layer)
    return layer


def invert(model, image=None, *, layer: str | None = None, restarts: int = 1, iterations: int = 300,
           refine_iterations: int = 50, seed: int = 0, C: float | None = None, jitter: bool = True,
           progress: bool = False) -> Result:
    """Inverts `model`'s code of `image` (IJCV Eqs. 1-3) from `restarts` random starts, vmapped.

    For networks `layer` is required; C and jitter follow the per-layer rules unless given.
    `result.errors` are the normalised errors ||Phi(x*) - Phi(x0)|| / ||Phi(x0)|| per restart."""
    from jaxinv.methods import inversion, visualise
    stages = _stages(iterations, refine_iterations)
    model, layer = _resolve(model, layer)
    if isinstance(model, Representation):
        if not model.traceable:
            raise ValueError(f"{model.name} is not differentiable: the engine cannot invert it "
                             "(the learned inverters can: jaxinv.inverters)")
        side = model.input_size[0] if model.input_size else (
            SHALLOW_SIZE if image is None or isinstance(image, (str, os.PathLike)) else None)
        original = _image(image, side, model.channels)
        problem = inversion.shallow_problem(100.0 if C is None else C)
        found = inversion.invert_images(model, [original], problem=problem, restarts=restarts, seed=seed,
                                        stages=stages, progress=_progress(progress))
        name = model.name
    else:
        layer = _require_layer(model, layer, "inverting a network")
        original = _image(image, models.input_side(model), models.channels(model))
        found = visualise.invert_layers(model, original[None] if original.ndim == 3 else original[None, ..., None],
                                        [layer], restarts=restarts, seed=seed, stages=stages, C=C, jitter=jitter,
                                        progress=_progress(progress), log=lambda line: None)[layer]
        problem = models.inversion_problem(model, layer, C=C, jitter=jitter)
        name = models.name(model)
    return Result("inversion", name, layer, _display(found.images[0]), original, {"error": found.errors[0]},
                  _per_restart(found.history), problem, found.seconds)


def maximise(model, *, layer: str | None = None, unit: int = 0, restarts: int = 1, iterations: int = 300,
             refine_iterations: int = 50, seed: int = 0, C: float | None = None, bound: float | None = None,
             maxima=None, progress: bool = False) -> Result:
    """Activation maximisation (IJCV Sect. 6, Eq. 4) of `unit` of `layer` (default: the class scores,
    so `unit` is a class): the centre cell of a channel's map, or a vector unit, from `restarts`
    random starts. Z = M rho^2 with M the unit's maximum over reference images (CIFAR-10 test
    images for CIFAR networks, the ImageNet samples otherwise; or `maxima`, one per unit of the layer).
    Scores: "value" of the unit and, for class layers, the class "probability"."""
    from jaxinv.methods import activation_max
    stages = _stages(iterations, refine_iterations)
    model, layer = _resolve(model, layer)
    if isinstance(model, Representation):
        raise ValueError(f"activation maximisation needs a network, not the representation {model.name}")
    layer = models.class_layer(model) if layer is None else layer
    models.check_layer(model, layer)
    found = activation_max.maximise_activation(
        model, layer, [unit], restarts=restarts, seed=seed, stages=stages, C=C,
        bound=activation_max.AM_BOUND if bound is None else bound, maxima=maxima, progress=_progress(progress),
        log=lambda line: None)
    scores = {"value": found.values[0]}
    if found.probabilities is not None:
        scores["probability"] = found.probabilities[0]
    return Result("activation maximisation", models.name(model), f"{layer}[{unit}]", _display(found.images[0]), None,
                  scores,
                  _per_restart(found.history), found.problem, found.seconds)


def caricature(model, image=None, *, layer: str | None = None, restarts: int = 1, iterations: int = 300,
               refine_iterations: int = 50, seed: int = 0, C: float | None = None, progress: bool = False) -> Result:
    """A caricature of `image` at `layer` (IJCV Sect. 7): starting from the image, maximise
    <Phi(x), max(0, Phi(x0))> / ||max(0, Phi(x0))||^2. Restarts differ by their jitter draws.
    Score "gain": how much the image's own pattern grew (1 at the image itself)."""
    from jaxinv.methods import visualise
    stages = _stages(iterations, refine_iterations)
    model, layer = _resolve(model, layer)
    if isinstance(model, Representation):
        raise ValueError(f"caricatures need a network, not the representation {model.name}")
    layer = _require_layer(model, layer, "a caricature")
    original = _image(image, models.input_side(model), models.channels(model))
    found = visualise.caricature(model, original if original.ndim == 3 else original[..., None], layer,
                                 restarts=restarts, seed=seed, stages=stages,
                                 C=visualise.CARICATURE_C if C is None else C, progress=_progress(progress))
    return Result("caricature", models.name(model), layer, _display(found.images[0]), original,
                  {"gain": found.gain[0]}, _per_restart(found.history), found.problem, found.seconds)
