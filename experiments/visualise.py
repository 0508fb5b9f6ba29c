"""Natural pre-images of a network's layers (IJCV 2016 Sects. 5-8), one figure per mode.

    python -m experiments.visualise --mode=layers          # IJCV Fig. 10: images down, layers across
    python -m experiments.visualise --mode=restarts        # Fig. 12: restarts down, layers across
    python -m experiments.visualise --mode=window          # Fig. 13: central 5x5 window, receptive field box
    python -m experiments.visualise --mode=channels        # Fig. 14: channel groups of each layer
    python -m experiments.visualise --mode=caricature      # Figs. 20-21: caricatures, layers across
    python -m experiments.visualise --mode=texture         # textures from the Gram matrices of layers
    python -m experiments.visualise --mode=style           # content inversion + weighted texture term
    python -m experiments.visualise --mode=hog_template [--template=FILE.mat|.npy]   # Sect. 6.1
    python -m experiments.visualise --mode=restarts --net=DIR --layers=conv1,pool5,fc8

--net is cifar-ref (shipped) by default or any converted network directory. Images default to
CIFAR-10 test images for CIFAR networks, the built-in sample and the ImageNet samples otherwise.
Writes OUTPUT_DIR/<mode>.png (labelled grid), results.json and index.html.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags, logging

from jaxinv import features, nets
from jaxinv.engine import preimage
from jaxinv.io import cli, images, outputs, report
from jaxinv.methods import hog_templates, layer_rules, texture, visualise, windows
from jaxinv.nets import taps
from jaxinv.nets import layers as L

MODES = ["layers", "restarts", "window", "channels", "caricature", "texture", "style", "hog_template"]
DEFAULT_TEXTURE = "n02391049_zebra.JPEG"

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "restarts", MODES, "which visualisation")
flags.DEFINE_string("net", "cifar-ref", "network: a shipped name (cifar-ref) or a converted network directory")
flags.DEFINE_list("layers", None, "layers (default depends on the mode)")
flags.DEFINE_list("images", None, "image files (default: CIFAR-10 test images / the built-in and ImageNet samples)")
flags.DEFINE_integer("num_images", None, "how many default images (default: 4 for layers and caricature, else 1)")
flags.DEFINE_integer("restarts", None, "random restarts per problem (default: 4 for restarts, 1 otherwise)")
flags.DEFINE_integer("iterations", 300, "iterations of the first stage (with jitter)")
flags.DEFINE_integer("refine_iterations", 50, "iterations of the second stage at a tenth of the rate")
flags.DEFINE_float("C", None, "override the mode's loss weight C (default: the per-layer rule / the mode's)")
flags.DEFINE_integer("window", 5, "window side in cells (mode=window)")
flags.DEFINE_integer("channel_parts", 2, "equal channel blocks for layers without grouped convolutions (mode=channels)")
flags.DEFINE_string("texture_image", None, "texture / style image (default: the ImageNet sample " + DEFAULT_TEXTURE + ")")
flags.DEFINE_integer("size", None, "texture/style image side (default: twice the input of a < 64 px network)")
flags.DEFINE_string("content_layer", None, "content layer of mode=style (default: the second ReLU of the trunk)")
flags.DEFINE_list("style_weights", ["1", "3", "10"], "texture-term weights lambda of mode=style, one column each")
flags.DEFINE_enum("style_init", "content", ["content", "noise"], "mode=style starts from the content image or noise")
flags.DEFINE_list("template", None, "HOG template files (.npy (h, w, 31) or DPM v5 .mat); default: a template "
                                    "trained on CIFAR-10 automobiles plus vertical/horizontal edge templates")
flags.DEFINE_integer("seed", 0, "PRNG seed")
flags.DEFINE_integer("scale", 0, "grid enlargement factor (0: tiles of about 128 pixels)")
flags.DEFINE_string("output_dir", None, "where to write (default: outputs/visualise/<mode>)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    out = FLAGS.output_dir or os.path.join("outputs", "visualise", FLAGS.mode)
    os.makedirs(out, exist_ok=True)
    stages = preimage.default_stages(FLAGS.iterations, FLAGS.refine_iterations)
    if FLAGS.mode == "hog_template":
        figure, parameters, results = hog_template_mode(stages)
    else:
        model = nets.load(FLAGS.net)
        for layer in FLAGS.layers or []:
            taps.check_layer(model, layer)
        figure, parameters, results = MODE_FUNCTIONS[FLAGS.mode](model, stages)
        parameters = dict({"net": FLAGS.net, "arch": model.arch}, **parameters)
    parameters.update(mode=FLAGS.mode, iterations=FLAGS.iterations, refine_iterations=FLAGS.refine_iterations,
                      seed=FLAGS.seed)
    grid_path = images.save_image(os.path.join(out, f"{FLAGS.mode}.png"), figure)
    json_path = outputs.write_json(os.path.join(out, "results.json"), dict(parameters=parameters, **results))
    page = report.write_html(os.path.join(out, "index.html"), f"{FLAGS.mode}: {parameters.get('arch', '')}",
                             parameters, [("Figure", [grid_path]), ("Results", [json_path])], notes=NOTES[FLAGS.mode])
    for path in (grid_path, json_path, page):
        print(f"wrote {path}")


def scale_for(size: int) -> int:
    return FLAGS.scale or max(1, 128 // size)


def network_images(model, default_count: int):
    if FLAGS.images:
        return visualise.load_images(model, FLAGS.images), [os.path.basename(p) for p in FLAGS.images]
    return visualise.default_images(model, FLAGS.num_images or default_count)


def restarts(default: int) -> int:
    return FLAGS.restarts or default


def blank(like) -> np.ndarray:
    return np.full(np.shape(like)[:2] + (3,), 255.0, np.float32)


def layers_mode(model, stages):
    """Images down, layers across (restart 0), the original first."""
    layers = FLAGS.layers or visualise.invertible_layers(model)
    rgb, names = network_images(model, 4)
    print(f"inverting {len(layers)} layers of {len(rgb)} images")
    results = visualise.invert_layers(model, rgb, layers, restarts=restarts(1), seed=FLAGS.seed, stages=stages,
                                      C=FLAGS.C)
    rows = [[rgb[i]] + [results[layer].images[i, 0] for layer in layers] for i in range(len(rgb))]
    figure = images.labelled_grid(rows, column_labels=["original"] + layers, row_labels=[f"image {i}" for i in range(len(rgb))],
                                  scale=scale_for(model.input_size))
    return figure, {"layers": layers, "images": names}, {"errors": {l: results[l].errors.tolist() for l in layers},
                                                          "C": {l: layer_rules.layer_C(model, l) if FLAGS.C is None else FLAGS.C for l in layers},
                                                          "jitter": {l: layer_rules.layer_jitter(model, l) for l in layers}}


def restarts_mode(model, stages):
    """Restarts down, layers across, for one image (IJCV Fig. 12)."""
    layers = FLAGS.layers or visualise.invertible_layers(model)
    rgb, names = network_images(model, 1)
    k = restarts(4)
    print(f"inverting {len(layers)} layers of {names[0]} from {k} restarts each")
    results = visualise.invert_layers(model, rgb[:1], layers, restarts=k, seed=FLAGS.seed, stages=stages, C=FLAGS.C)
    rows = [[rgb[0] if r == 0 else blank(rgb[0])] + [results[layer].images[0, r] for layer in layers] for r in range(k)]
    figure = images.labelled_grid(rows, column_labels=["original"] + layers, row_labels=[f"restart {r}" for r in range(k)],
                                  scale=scale_for(model.input_size))
    errors = {l: results[l].errors[0].tolist() for l in layers}
    return figure, {"layers": layers, "image": names[0], "restarts": k}, {
        "errors": errors, "restart_std": {l: float(np.std(e, ddof=1)) if k > 1 else 0.0 for l, e in errors.items()}}


def default_window_layers(model, size):
    trunk = taps.spatial_trunk(model)
    conv_or_pool = [l.name for l in model.table if l.name in trunk and l.op in (L.conv, L.maxpool)]
    return [l for l in conv_or_pool if taps.layer_output_shape(model, l)[0] > size]


def window_mode(model, stages):
    """The central window of each layer's map, its receptive field drawn on the result (IJCV Fig. 13)."""
    size = FLAGS.window
    layers = FLAGS.layers or default_window_layers(model, size)
    rgb, names = network_images(model, 1)
    k = restarts(1)
    columns, boxes, errors = [[] for _ in range(k)], {}, {}
    original_boxes = []
    for layer in layers:
        result, box = visualise.invert_window(model, rgb[0], layer, size=size, restarts=k, seed=FLAGS.seed,
                                              stages=stages, C=FLAGS.C)
        boxes[layer] = box
        errors[layer] = result.errors[0].tolist()
        print(f"  {layer}: window box {box} error {np.mean(result.errors):.3f} ({result.seconds:.1f} s)")
        for r in range(k):
            columns[r].append(images.draw_box(result.images[0, r], box, width=max(1, model.input_size // 100)))
        original_boxes.append(box)
    rows = [[rgb[0]] + columns[r] for r in range(k)]
    figure = images.labelled_grid(rows, column_labels=["original"] + layers, row_labels=[f"restart {r}" for r in range(k)],
                                  scale=scale_for(model.input_size))
    windows = {l: windows.central_window(taps.layer_output_shape(model, l), size) for l in layers}
    return figure, {"layers": layers, "image": names[0], "window": size, "restarts": k}, {
        "windows": windows, "receptive_field_boxes": boxes, "errors": errors}


def default_channel_layers(model):
    names = model.layer_names
    if "norm2" in names:
        return [n for n in names[:names.index("norm2") + 1]]
    return taps.spatial_trunk(model)[:8]


def channels_mode(model, stages):
    """Each channel group of each layer inverted alone (IJCV Fig. 14): groups down, layers across."""
    layers = FLAGS.layers or default_channel_layers(model)
    rgb, names = network_images(model, 1)
    k = restarts(1)
    per_layer, sources, groups_json, errors = {}, {}, {}, {}
    for layer in layers:
        groups = windows.channel_groups(model, layer)
        sources[layer] = "grouped convolution" if len(groups) > 1 else f"{FLAGS.channel_parts} equal blocks (no groups)"
        if len(groups) == 1:
            groups = visualise.equal_channel_split(model, layer, FLAGS.channel_parts)
        result, groups = visualise.invert_channel_groups(model, rgb[0], layer, groups, restarts=k, seed=FLAGS.seed,
                                                         stages=stages, C=FLAGS.C)
        per_layer[layer] = result
        groups_json[layer] = [[int(g[0]), int(g[-1]) + 1] for g in groups]
        errors[layer] = result.errors.tolist()
        print(f"  {layer}: {len(groups)} groups ({sources[layer]}), errors "
              f"{', '.join(f'{e:.3f}' for e in result.errors.mean(1))}")
    num_groups = max(len(r.images) for r in per_layer.values())
    rows, labels = [], []
    for g in range(num_groups):
        for r in range(k):
            rows.append([rgb[0] if g == r == 0 else blank(rgb[0])] +
                        [per_layer[l].images[g, r] if g < len(per_layer[l].images) else blank(rgb[0]) for l in layers])
            labels.append(f"group {g}" + (f" r{r}" if k > 1 else ""))
    figure = images.labelled_grid(rows, column_labels=["original"] + layers, row_labels=labels,
                                  scale=scale_for(model.input_size))
    return figure, {"layers": layers, "image": names[0], "restarts": k}, {
        "groups": groups_json, "group_source": sources, "errors": errors}


def default_caricature_layers(model):
    trunk_and_fc = [l.name for l in model.table if l.op is L.relu]
    return trunk_and_fc + [visualise.class_score_layer(model)]


def caricature_mode(model, stages):
    """Images down, layers across (IJCV Figs. 20-21)."""
    layers = FLAGS.layers or default_caricature_layers(model)
    rgb, names = network_images(model, 4)
    k = restarts(1)
    C = visualise.CARICATURE_C if FLAGS.C is None else FLAGS.C
    rows, gains = [[im] for im in rgb for _ in range(k)], {}
    for layer in layers:
        result = visualise.caricature(model, rgb, layer, restarts=k, seed=FLAGS.seed, stages=stages, C=C)
        gains[layer] = result.gain.tolist()
        for i in range(len(rgb)):
            for r in range(k):
                rows[i * k + r].append(result.images[i, r])
        print(f"  {layer}: <Phi(x*), Phi0>/||Phi0||^2 = {result.gain.mean():.2f} ({result.seconds:.1f} s)")
    figure = images.labelled_grid(rows, column_labels=["original"] + layers,
                                  row_labels=[f"image {i}" + (f" r{r}" if k > 1 else "") for i in range(len(rgb)) for r in range(k)],
                                  scale=scale_for(model.input_size))
    return figure, {"layers": layers, "images": names, "C": C, "restarts": k}, {"gain": gains}


def texture_image(size):
    path = FLAGS.texture_image or os.path.join(images.imagenet_samples_dir(), DEFAULT_TEXTURE)
    return images.load_image(path, size=size), path


def texture_mode(model, stages):
    """The texture image, then syntheses from the Gram matrices of the first 1, 2, ... layers."""
    layers = FLAGS.layers or texture.default_texture_layers(model)
    texture.check_texture_layers(model, layers)
    size = FLAGS.size or texture.texture_size(model)
    image, path = texture_image(size)
    k = restarts(1)
    C = texture.TEXTURE_C if FLAGS.C is None else FLAGS.C
    columns, errors, labels = [], {}, []
    for n in range(1, len(layers) + 1):
        chosen = layers[:n]
        result = texture.synthesise_texture(model, image, chosen, size=size, restarts=k, seed=FLAGS.seed, C=C,
                                            stages=stages)
        label = "+".join(chosen) if n < 3 else f"{chosen[0]}..{chosen[-1]}"
        labels.append(label)
        errors[label] = result.texture_errors.tolist()
        columns.append(result.images)
        print(f"  {label}: texture error {result.texture_errors.mean():.4f} ({result.seconds:.1f} s)")
    rows = [[image if r == 0 else blank(image)] + [c[r] for c in columns] for r in range(k)]
    figure = images.labelled_grid(rows, column_labels=["texture"] + labels, row_labels=[f"restart {r}" for r in range(k)],
                                  scale=scale_for(size))
    return figure, {"layers": layers, "texture_image": path, "size": size, "C": C, "restarts": k}, {
        "texture_errors": errors}


def style_mode(model, stages):
    """Content image, style image, then results for each texture weight lambda."""
    style_layers = FLAGS.layers or texture.default_texture_layers(model)
    content_layer = FLAGS.content_layer or texture.default_texture_layers(model)[1]
    size = FLAGS.size or texture.texture_size(model)
    style, path = texture_image(size)
    rgb, names = network_images(model, 1)
    content = images.fit(rgb[0], size, size)
    k = restarts(1)
    C = texture.TEXTURE_C if FLAGS.C is None else FLAGS.C
    weights = [float(w) for w in FLAGS.style_weights]
    columns, metrics = [], {}
    for w in weights:
        result = texture.transfer_style(model, content, style, content_layer, style_layers, style_weight=w, size=size,
                                        restarts=k, seed=FLAGS.seed, C=C, stages=stages,
                                        from_content=FLAGS.style_init == "content")
        columns.append(result.images)
        metrics[str(w)] = {"content_error": result.content_errors.tolist(), "texture_error": result.texture_errors.tolist()}
        print(f"  lambda {w}: content error {result.content_errors.mean():.3f}, texture error "
              f"{result.texture_errors.mean():.4f} ({result.seconds:.1f} s)")
    rows = [[content, style] if r == 0 else [blank(content), blank(style)] for r in range(k)]
    for r in range(k):
        rows[r] += [c[r] for c in columns]
    figure = images.labelled_grid(rows, column_labels=["content", "style"] + [f"lambda {w:g}" for w in weights],
                                  row_labels=[f"restart {r}" for r in range(k)], scale=scale_for(size))
    return figure, {"content_layer": content_layer, "style_layers": style_layers, "content_image": names[0],
                    "style_image": path, "size": size, "C": C, "restarts": k, "init": FLAGS.style_init}, {
        "style_weights": metrics}


def hog_template_mode(stages):
    """Templates down: the template's positive weights as HOG glyphs, then K visualisations."""
    if FLAGS.template:
        templates = [t for path in FLAGS.template for t in hog_templates.load_templates(path)]
    else:
        templates = [hog_templates.cifar_template("automobile"), hog_templates.edge_template(8, "vertical"),
                     hog_templates.edge_template(8, "horizontal")]
    k = restarts(4)
    rows, results = [], {}
    for template in templates:
        result = hog_templates.visualise_template(template, restarts=k, seed=FLAGS.seed, C=FLAGS.C, stages=stages)
        shape = template.image_shape
        glyphs = images.fit(features.render_hog(np.maximum(template.weights, 0)), *shape)
        rows.append([glyphs] + [images.stretch_contrast(im) for im in result.images])
        results[template.name] = {"responses": result.responses.tolist(), "initial_responses": result.initial_responses.tolist(),
                                  "Z": result.normaliser, "C": result.problem.C, "shape_cells": list(template.weights.shape[:2])}
        print(f"  {template.name}: <w, HOG(x)> {', '.join(f'{v:.2f}' for v in result.initial_responses)} -> "
              f"{', '.join(f'{v:.2f}' for v in result.responses)}")
    size = max(max(t.image_shape) for t in templates)
    figure = images.labelled_grid(rows, column_labels=["w+ (glyphs)"] + [f"restart {r}" for r in range(k)],
                                  row_labels=[t.name[:18] for t in templates], scale=scale_for(size))
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


if __name__ == "__main__":
    cli.run(main)
