"""The figures of `experiments.visualise`, one per mode (IJCV 2016 Sects. 5-8): what is inverted,
visualised or synthesised with which defaults, laid out as a labelled grid with its numbers.

    figure = run(VisualiseConfig(mode="window", layers=("conv1",), iterations=20))
    write_outputs(figure, "outputs/visualise/window")

Each mode function takes (config, model, stages, log) and returns a `Figure`: the grid image, the
parameters it was made with and the results (numbers) for results.json. The primitives are in
`jaxinv.methods.visualise`, `jaxinv.methods.texture` and `jaxinv.methods.hog_templates`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, NamedTuple, Sequence

import numpy as np

from jaxinv import features, nets
from jaxinv.engine import preimage
from jaxinv.io import arguments, images, outputs, report
from jaxinv.io.progress import each
from jaxinv.methods import activation_max, hog_templates, layer_rules, texture, visualise, windows
from jaxinv.nets import taps
from jaxinv.nets import layers as L

MODES = ("layers", "restarts", "window", "channels", "caricature", "texture", "style", "hog_template")
DEFAULT_TEXTURE = "n02391049_zebra.JPEG"


@dataclasses.dataclass(frozen=True)
class VisualiseConfig:
    mode: str = "restarts"
    net: str = "cifar-ref"
    layers: Sequence[str] | None = None  # default: by mode
    images: Sequence[str] | None = None  # image files; default: `visualise.default_images`
    num_images: int | None = None  # default: 4 for layers and caricature, else 1
    restarts: int | None = None  # default: 4 for restarts and hog_template, else 1
    iterations: int = 300
    refine_iterations: int = 50
    C: float | None = None  # default: the per-layer rule / the mode's
    window: int = 5  # window side in cells (window)
    channel_parts: int = 2  # equal channel blocks of layers without grouped convolutions (channels)
    texture_image: str | None = None  # texture / style image (default: the ImageNet sample DEFAULT_TEXTURE)
    size: int | None = None  # texture/style image side (default: `texture.texture_size`)
    content_layer: str | None = None  # style: default the second ReLU of the trunk
    style_weights: Sequence[float] = (1.0, 3.0, 10.0)  # style: one column per texture weight lambda
    style_init: str = "content"  # style: start from the content image or "noise"
    template: Sequence[str] | None = None  # hog_template: template files (default: trained and edge templates)
    seed: int = 0
    scale: int = 0  # grid enlargement factor (0: tiles of about 128 pixels)

    def __post_init__(self):
        for name in ("num_images", "restarts", "size"):
            arguments.check_count(name, getattr(self, name), optional=True)
        for name in ("window", "channel_parts"):
            arguments.check_count(name, getattr(self, name))
        for name in ("iterations", "refine_iterations", "scale"):
            arguments.check_count(name, getattr(self, name), 0)
        arguments.check_seed(self.seed)


class Figure(NamedTuple):
    mode: str
    image: np.ndarray  # the labelled grid
    parameters: dict
    results: dict


def scale_for(config, size: int) -> int:
    return config.scale or max(1, 128 // size)


def network_images(config, model, default_count: int):
    if config.images:
        return visualise.load_images(model, config.images), [os.path.basename(p) for p in config.images]
    return visualise.default_images(model, config.num_images or default_count)


def restarts_for(config, default: int) -> int:
    return config.restarts or default


def blank(like) -> np.ndarray:
    return np.full(np.shape(like)[:2] + (3,), 255.0, np.float32)


def layers_mode(config, model, stages, log):
    """Images down, layers across (restart 0), the original first."""
    layers = list(config.layers or visualise.invertible_layers(model))
    rgb, names = network_images(config, model, 4)
    log(f"inverting {len(layers)} layers of {len(rgb)} images")
    results = visualise.invert_layers(model, rgb, layers, restarts=restarts_for(config, 1), seed=config.seed, stages=stages,
                                      C=config.C)
    rows = [[rgb[i]] + [results[layer].images[i, 0] for layer in layers] for i in range(len(rgb))]
    captions = [[""] + [f"{results[layer].errors[i, 0]:.3f}" for layer in layers] for i in range(len(rgb))]
    figure = images.labelled_grid(rows, column_labels=["original"] + layers, row_labels=[f"image {i}" for i in range(len(rgb))],
                                  tile_labels=captions, scale=scale_for(config, model.input_size))
    return figure, {"layers": layers, "images": names}, {"errors": {l: results[l].errors.tolist() for l in layers},
                                                          "C": {l: layer_rules.layer_C(model, l) if config.C is None else config.C for l in layers},
                                                          "jitter": {l: layer_rules.layer_jitter(model, l) for l in layers}}


def restarts_mode(config, model, stages, log):
    """Restarts down, layers across, for one image (IJCV Fig. 12)."""
    layers = list(config.layers or visualise.invertible_layers(model))
    rgb, names = network_images(config, model, 1)
    k = restarts_for(config, 4)
    log(f"inverting {len(layers)} layers of {names[0]} from {k} restarts each")
    results = visualise.invert_layers(model, rgb[:1], layers, restarts=k, seed=config.seed, stages=stages, C=config.C)
    rows = [[rgb[0] if r == 0 else blank(rgb[0])] + [results[layer].images[0, r] for layer in layers] for r in range(k)]
    captions = [[""] + [f"{results[layer].errors[0, r]:.3f}" for layer in layers] for r in range(k)]
    figure = images.labelled_grid(rows, column_labels=["original"] + layers, row_labels=[f"restart {r}" for r in range(k)],
                                  tile_labels=captions, scale=scale_for(config, model.input_size))
    errors = {l: results[l].errors[0].tolist() for l in layers}
    return figure, {"layers": layers, "image": names[0], "restarts": k}, {
        "errors": errors, "restart_std": {l: float(np.std(e, ddof=1)) if k > 1 else 0.0 for l, e in errors.items()}}


def default_window_layers(model, size):
    trunk = taps.spatial_trunk(model)
    conv_or_pool = [l.name for l in model.table if l.name in trunk and l.op in (L.conv, L.maxpool)]
    return [l for l in conv_or_pool if taps.layer_output_shape(model, l)[0] > size]


def window_mode(config, model, stages, log):
    """The central window of each layer's map, its receptive field drawn on the result (IJCV Fig. 13)."""
    size = config.window
    layers = list(config.layers or default_window_layers(model, size))
    rgb, names = network_images(config, model, 1)
    k = restarts_for(config, 1)
    columns, boxes, errors = [[] for _ in range(k)], {}, {}
    original_boxes = []
    for layer in each(layers, "layers"):
        result, box = visualise.invert_window(model, rgb[0], layer, size=size, restarts=k, seed=config.seed,
                                              stages=stages, C=config.C)
        boxes[layer] = box
        errors[layer] = result.errors[0].tolist()
        log(f"  {layer}: window box {box} error {np.mean(result.errors):.3f} ({result.seconds:.1f} s)")
        for r in range(k):
            columns[r].append(images.draw_box(result.images[0, r], box, width=max(1, model.input_size // 100)))
        original_boxes.append(box)
    rows = [[rgb[0]] + columns[r] for r in range(k)]
    figure = images.labelled_grid(rows, column_labels=["original"] + layers, row_labels=[f"restart {r}" for r in range(k)],
                                  scale=scale_for(config, model.input_size))
    cells = {l: windows.central_window(taps.layer_output_shape(model, l), size) for l in layers}
    return figure, {"layers": layers, "image": names[0], "window": size, "restarts": k}, {
        "windows": cells, "receptive_field_boxes": boxes, "errors": errors}


def default_channel_layers(model):
    names = model.layer_names
    if "norm2" in names:
        return [n for n in names[:names.index("norm2") + 1]]
    return taps.spatial_trunk(model)[:8]


def channels_mode(config, model, stages, log):
    """Each channel group of each layer inverted alone (IJCV Fig. 14): groups down, layers across."""
    layers = list(config.layers or default_channel_layers(model))
    rgb, names = network_images(config, model, 1)
    k = restarts_for(config, 1)
    per_layer, sources, groups_json, errors = {}, {}, {}, {}
    for layer in each(layers, "layers"):
        groups = windows.channel_groups(model, layer)
        sources[layer] = "grouped convolution" if len(groups) > 1 else f"{config.channel_parts} equal blocks (no groups)"
        if len(groups) == 1:
            groups = visualise.equal_channel_split(model, layer, config.channel_parts)
        result, groups = visualise.invert_channel_groups(model, rgb[0], layer, groups, restarts=k, seed=config.seed,
                                                         stages=stages, C=config.C)
        per_layer[layer] = result
        groups_json[layer] = [[int(g[0]), int(g[-1]) + 1] for g in groups]
        errors[layer] = result.errors.tolist()
        log(f"  {layer}: {len(groups)} groups ({sources[layer]}), errors "
              f"{', '.join(f'{e:.3f}' for e in result.errors.mean(1))}")
    num_groups = max(len(r.images) for r in per_layer.values())
    rows, labels = [], []
    for g in range(num_groups):
        for r in range(k):
            rows.append([rgb[0] if g == r == 0 else blank(rgb[0])] +
                        [per_layer[l].images[g, r] if g < len(per_layer[l].images) else blank(rgb[0]) for l in layers])
            labels.append(f"group {g}" + (f" r{r}" if k > 1 else ""))
    figure = images.labelled_grid(rows, column_labels=["original"] + layers, row_labels=labels,
                                  scale=scale_for(config, model.input_size))
    return figure, {"layers": layers, "image": names[0], "restarts": k}, {
        "groups": groups_json, "group_source": sources, "errors": errors}


def default_caricature_layers(model):
    trunk_and_fc = [l.name for l in model.table if l.op is L.relu]
    return trunk_and_fc + [activation_max.class_score_layer(model)]


def caricature_mode(config, model, stages, log):
    """Images down, layers across (IJCV Figs. 20-21)."""
    layers = list(config.layers or default_caricature_layers(model))
    rgb, names = network_images(config, model, 4)
    k = restarts_for(config, 1)
    C = visualise.CARICATURE_C if config.C is None else config.C
    rows, gains = [[im] for im in rgb for _ in range(k)], {}
    for layer in each(layers, "layers"):
        result = visualise.caricature(model, rgb, layer, restarts=k, seed=config.seed, stages=stages, C=C)
        gains[layer] = result.gain.tolist()
        for i in range(len(rgb)):
            for r in range(k):
                rows[i * k + r].append(result.images[i, r])
        log(f"  {layer}: <Phi(x*), Phi0>/||Phi0||^2 = {result.gain.mean():.2f} ({result.seconds:.1f} s)")
    figure = images.labelled_grid(rows, column_labels=["original"] + layers,
                                  row_labels=[f"image {i}" + (f" r{r}" if k > 1 else "") for i in range(len(rgb)) for r in range(k)],
                                  scale=scale_for(config, model.input_size))
    return figure, {"layers": layers, "images": names, "C": C, "restarts": k}, {"gain": gains}


def texture_image(config, size):
    path = config.texture_image or os.path.join(images.imagenet_samples_dir(), DEFAULT_TEXTURE)
    return images.load_image(path, size=size), path


def texture_mode(config, model, stages, log):
    """The texture image, then syntheses from the Gram matrices of the first 1, 2, ... layers."""
    layers = list(config.layers or texture.default_texture_layers(model))
    texture.check_texture_layers(model, layers)
    size = config.size or texture.texture_size(model)
    image, path = texture_image(config, size)
    k = restarts_for(config, 1)
    C = texture.TEXTURE_C if config.C is None else config.C
    columns, errors, labels = [], {}, []
    for n in each(range(1, len(layers) + 1), "textures"):
        chosen = layers[:n]
        result = texture.synthesise_texture(model, image, chosen, size=size, restarts=k, seed=config.seed, C=C,
                                            stages=stages)
        label = "+".join(chosen) if n < 3 else f"{chosen[0]}..{chosen[-1]}"
        labels.append(label)
        errors[label] = result.texture_errors.tolist()
        columns.append(result.images)
        log(f"  {label}: texture error {result.texture_errors.mean():.4f} ({result.seconds:.1f} s)")
    rows = [[image if r == 0 else blank(image)] + [c[r] for c in columns] for r in range(k)]
    figure = images.labelled_grid(rows, column_labels=["texture"] + labels, row_labels=[f"restart {r}" for r in range(k)],
                                  scale=scale_for(config, size))
    return figure, {"layers": layers, "texture_image": path, "size": size, "C": C, "restarts": k}, {
        "texture_errors": errors}


def style_mode(config, model, stages, log):
    """Content image, style image, then results for each texture weight lambda."""
    style_layers = list(config.layers or texture.default_texture_layers(model))
    content_layer = config.content_layer or texture.default_texture_layers(model)[1]
    size = config.size or texture.texture_size(model)
    style, path = texture_image(config, size)
    rgb, names = network_images(config, model, 1)
    content = images.fit(rgb[0], size, size)
    k = restarts_for(config, 1)
    C = texture.TEXTURE_C if config.C is None else config.C
    weights = [float(w) for w in config.style_weights]
    columns, metrics = [], {}
    for w in each(weights, "weights"):
        result = texture.transfer_style(model, content, style, content_layer, style_layers, style_weight=w, size=size,
                                        restarts=k, seed=config.seed, C=C, stages=stages,
                                        from_content=config.style_init == "content")
        columns.append(result.images)
        metrics[str(w)] = {"content_error": result.content_errors.tolist(), "texture_error": result.texture_errors.tolist()}
        log(f"  lambda {w}: content error {result.content_errors.mean():.3f}, texture error "
              f"{result.texture_errors.mean():.4f} ({result.seconds:.1f} s)")
    rows = [[content, style] if r == 0 else [blank(content), blank(style)] for r in range(k)]
    for r in range(k):
        rows[r] += [c[r] for c in columns]
    figure = images.labelled_grid(rows, column_labels=["content", "style"] + [f"lambda {w:g}" for w in weights],
                                  row_labels=[f"restart {r}" for r in range(k)], scale=scale_for(config, size))
    return figure, {"content_layer": content_layer, "style_layers": style_layers, "content_image": names[0],
                    "style_image": path, "size": size, "C": C, "restarts": k, "init": config.style_init}, {
        "style_weights": metrics}


def hog_template_mode(config, stages, log):
    """Templates down: the template's positive weights as HOG glyphs, then K visualisations."""
    if config.template:
        templates = [t for path in config.template for t in hog_templates.load_templates(path)]
    else:
        templates = [hog_templates.cifar_template("automobile"), hog_templates.edge_template(8, "vertical"),
                     hog_templates.edge_template(8, "horizontal")]
    k = restarts_for(config, 4)
    rows, results = [], {}
    for template in each(templates, "templates"):
        result = hog_templates.visualise_template(template, restarts=k, seed=config.seed, C=config.C, stages=stages)
        shape = template.image_shape
        glyphs = images.fit(features.render_hog(np.maximum(template.weights, 0)), *shape)
        rows.append([glyphs] + [images.stretch_contrast(im) for im in result.images])
        results[template.name] = {"responses": result.responses.tolist(), "initial_responses": result.initial_responses.tolist(),
                                  "Z": result.normaliser, "C": result.problem.C, "shape_cells": list(template.weights.shape[:2])}
        log(f"  {template.name}: <w, HOG(x)> {', '.join(f'{v:.2f}' for v in result.initial_responses)} -> "
              f"{', '.join(f'{v:.2f}' for v in result.responses)}")
    size = max(max(t.image_shape) for t in templates)
    figure = images.labelled_grid(rows, column_labels=["w+ (glyphs)"] + [f"restart {r}" for r in range(k)],
                                  row_labels=[t.name[:18] for t in templates], scale=scale_for(config, size))
    return figure, {"templates": [t.name for t in templates], "restarts": k}, {"templates": results}


MODE_FUNCTIONS = {"layers": layers_mode, "restarts": restarts_mode, "window": window_mode, "channels": channels_mode,
                  "caricature": caricature_mode, "texture": texture_mode, "style": style_mode}

NOTES = {
    "layers": "Inversion from each layer (IJCV Eq. 2) with the per-layer C and jitter rules of jaxinv.nets.taps.",
    "restarts": "Reconstructions from K random restarts of the same code: what varies is what the layer discards.",
    "window": "Inversion of the central window's cells only (IJCV Eq. 3); the box is the pixels that can influence them.",
    "channels": "Inversion of one group of channels at a time (IJCV Eq. 3 with a channel mask).",
    "caricature": "Caricatures: maximise <Phi(x), max(0, Phi(x0))> / ||max(0, Phi(x0))||^2 starting from x0.",
    "texture": "Texture synthesis from the Gram matrices of the first 1, 2, ... layers (IJCV Eq. 8).",
    "style": "Content inversion of one layer plus lambda times the texture term of the style layers.",
    "hog_template": "Pre-images maximising <w, HOG(x)> (IJCV Sect. 6.1), shown contrast-stretched (HOG is "
                    "contrast invariant, so the optimum has low contrast).",
}


def run(config: VisualiseConfig, log: Callable[[str], None] = print) -> Figure:
    """The figure of config.mode; layers are checked against the network before any work."""
    if config.mode not in MODES:
        raise ValueError(f"unknown mode {config.mode!r}; one of {', '.join(MODES)}")
    stages = preimage.default_stages(config.iterations, config.refine_iterations)
    if config.mode == "hog_template":
        figure, parameters, results = hog_template_mode(config, stages, log)
    else:
        model = nets.load(config.net)
        for layer in config.layers or []:
            taps.check_layer(model, layer)
        figure, parameters, results = MODE_FUNCTIONS[config.mode](config, model, stages, log)
        parameters = dict({"net": config.net, "arch": model.arch}, **parameters)
    parameters.update(mode=config.mode, iterations=config.iterations, refine_iterations=config.refine_iterations,
                      seed=config.seed)
    return Figure(config.mode, figure, parameters, results)


def write_outputs(figure: Figure, out: str) -> list[str]:
    """OUT/<mode>.png, results.json ({"parameters", ...results}) and index.html."""
    os.makedirs(out, exist_ok=True)
    grid_path = images.save_image(os.path.join(out, f"{figure.mode}.png"), figure.image)
    json_path = outputs.write_json(os.path.join(out, "results.json"),
                                   dict(parameters=figure.parameters, **figure.results))
    page = report.write_html(os.path.join(out, "index.html"), f"{figure.mode}: {figure.parameters.get('arch', '')}",
                             figure.parameters, [("Figure", [grid_path]), ("Results", [json_path])],
                             notes=NOTES[figure.mode])
    return [grid_path, json_path, page]
