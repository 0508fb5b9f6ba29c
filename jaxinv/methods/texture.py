"""Texture synthesis and style transfer through the Gram term (IJCV Eq. 8) on network layers.

texture:  x* = argmin_x R_alpha(x) + R_TV(x) + C sum_l w_l ||G(Phi_l(x)) - G(Phi_l(x_tex))||_F^2
style:    x* = argmin_x R_alpha(x) + R_TV(x) + C (||Phi_c(x) - Phi_c(x0)||^2 / ||Phi_c(x0)||^2
                                                   + sum_l w_l ||G(Phi_l(x)) - G(Phi_l(x_style))||_F^2)

with w_l = lambda_l / ||G(Phi_l(x_tex))||_F^2, so that layer l's term is lambda_l for a featureless
image and the weights do not depend on the layers' scales. These are the engine's 'texture' and
'style' losses: the representation's code is {"features": {layer: map}, "content": code}, one
forward pass for all layers, and the Gram targets and weights travel in the `Target` (compiled
steps are reused across texture images of one size). Gram matrices are sums over positions, so
the texture image is resized to the synthesised size. Images are RGB [0, 255]; the engine works
on null-mean images (minus the network's RGB mean).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.io.progress import solver_progress
from jaxinv import models
from jaxinv.objectives import gram_matrix
from jaxinv.engine.preimage import Problem, Stage, Target
from jaxinv.engine.representation import Representation

TEXTURE_C = 100.0
"""C of the texture and style problems (docs/deep_visualisation.md, "Caricatures, textures, style, HOG templates")."""


# What texture synthesis asks of a model, defined once in `jaxinv.models` (tables and adapted models alike).
default_texture_layers = models.texture_layers  # relu1, relu2, relu3 on cifar-ref
gram_representation = models.gram_representation
check_texture_layers = models.check_texture_layers
deepest_layer = models.deepest_layer


def grams_of(representation: Representation, rgb_image) -> dict:
    """{layer: G(Phi_l(x))} of an RGB [0, 255] image, float32 (c, c)."""
    features = representation(representation.to_null_mean(rgb_image))["features"]
    return {layer: np.asarray(gram_matrix(f)) for layer, f in features.items()}


def layer_weights(grams: dict, lambdas: dict | float = 1.0) -> dict:
    """w_l = lambda_l / ||G_l0||_F^2 (layer l's texture term is lambda_l at zero features)."""
    weights = {}
    for layer, gram in grams.items():
        lam = lambdas[layer] if isinstance(lambdas, dict) else lambdas
        energy = float(np.sum(np.square(np.asarray(gram, np.float64))))
        if not energy > 0:
            raise ValueError(f"the texture image gives layer {layer!r} an all-zero Gram matrix: "
                             "choose another layer or image")
        weights[layer] = float(lam) / energy
    return weights


def texture_size(model) -> int:
    """Default synthesised size: twice a small (< 64 px) network's input size, else its input size
    (an adapted model's own size: its layers may run at that size only)."""
    side = models.input_side(model)
    return 2 * side if side < 64 and models.is_table(model) else side


@dataclasses.dataclass
class Synthesis:
    images: np.ndarray  # (K, S, S, 3) in [0, 255]
    null_mean: np.ndarray
    texture_errors: np.ndarray  # (K,) sum_l w_l ||G_l(x*) - G_l0||^2 / sum_l lambda_l
    content_errors: np.ndarray | None  # (K,) Eq. 2 on the content layer (style transfer)
    problem: Problem
    history: dict
    seconds: float


def _problem(model, layer: str, loss: str, C: float, jitter: bool) -> Problem:
    return Problem(loss=loss, C=float(C), jitter=models.layer_jitter(model, layer) if jitter else 1)


def _finish(representation, problem, target, result, lambdas_total) -> Synthesis:
    seen = preimage.crop_seen(problem, result.images)
    codes = jax.vmap(representation)(jnp.asarray(seen))
    texture, content = [], []
    for k in range(len(seen)):
        feats = {layer: f[k] for layer, f in codes["features"].items()}
        texture.append(sum(float(target.weights[layer]) * float(jnp.sum(jnp.square(gram_matrix(feats[layer])
                                                                                  - target.phi0["grams"][layer])))
                           for layer in feats) / lambdas_total)
        if "content" in codes:
            c, c0 = np.asarray(codes["content"][k]), np.asarray(target.phi0["content"])
            content.append(float(np.sum((c - c0) ** 2) / np.sum(c0 ** 2)))
    return Synthesis(representation.to_display(seen), seen, np.array(texture), np.array(content) if content else None,
                     problem, result.history, result.seconds)


def synthesise_texture(model, texture_image, layers: Sequence[str] | None = None, *, size: int | None = None,
                       lambdas: dict | float = 1.0, restarts: int = 1, seed: int = 0, C: float = TEXTURE_C,
                       jitter: bool = True, stages: Sequence[Stage] = preimage.default_stages(),
                       progress: Callable | None = None) -> Synthesis:
    """A size x size texture matching the Gram matrices of `layers` of `texture_image` (RGB [0, 255],
    resized to size x size) from `restarts` random initialisations (IJCV Eq. 8). `layers` None: the default
    texture layers; an empty list is an error."""
    layers = default_texture_layers(model) if layers is None else list(layers)  # checked by gram_representation
    size = size or texture_size(model)
    representation = gram_representation(model, layers, input_size=size)
    texture_image = images.fit(texture_image, size, size)
    grams = grams_of(representation, texture_image)
    weights = layer_weights(grams, lambdas)
    problem = _problem(model, deepest_layer(model, representation), "texture", C, jitter)
    target = preimage.make_target(representation, problem, phi0={"grams": grams}, weights=weights)
    result = preimage.solve(representation, problem, target, image_shape=(size, size), key=jax.random.key(seed),
                            restarts=restarts, stages=stages, progress=solver_progress(progress, stages))
    total = sum(lambdas[layer] for layer in layers) if isinstance(lambdas, dict) else lambdas * len(layers)
    return _finish(representation, problem, target, result, total)


def transfer_style(model, content_image, style_image, content_layer: str, style_layers: Sequence[str] | None = None,
                   *, style_weight: float = 1.0, size: int | None = None, restarts: int = 1, seed: int = 0,
                   C: float = TEXTURE_C, jitter: bool = True, from_content: bool = False,
                   stages: Sequence[Stage] = preimage.default_stages(), progress: Callable | None = None) -> Synthesis:
    """Content inversion of `content_layer` of `content_image` plus the texture term of `style_layers`
    of `style_image` with lambda_l = style_weight / (number of style layers); both images RGB [0, 255]
    resized to size x size. Starts from noise, or from the content image (`from_content`)."""
    style_layers = default_texture_layers(model) if style_layers is None else list(style_layers)  # checked by gram_representation
    size = size or texture_size(model)
    representation = gram_representation(model, style_layers, content_layer, input_size=size)
    content_image, style_image = images.fit(content_image, size, size), images.fit(style_image, size, size)
    grams = grams_of(representation, style_image)
    weights = layer_weights(grams, style_weight / len(style_layers))
    content = representation(representation.to_null_mean(content_image))["content"]
    problem = _problem(model, deepest_layer(model, representation), "style", C, jitter)
    target = preimage.make_target(representation, problem, phi0={"grams": grams, "content": content}, weights=weights)
    x_init = None
    if from_content:
        x_init = preimage.start_from(representation.to_null_mean(content_image), problem, restarts)
    result = preimage.solve(representation, problem, target, image_shape=(size, size), key=jax.random.key(seed),
                            restarts=restarts, stages=stages, x_init=x_init,
                            progress=solver_progress(progress, stages))
    return _finish(representation, problem, target, result, style_weight)


def texture_target_error(representation, rgb_image, target: Target, lambdas_total: float) -> float:
    """The texture term of an RGB [0, 255] image against `target`, divided by sum_l lambda_l."""
    grams = grams_of(representation, rgb_image)
    return sum(float(target.weights[layer]) * float(np.sum((grams[layer] - np.asarray(target.phi0["grams"][layer])) ** 2))
               for layer in grams) / lambdas_total
