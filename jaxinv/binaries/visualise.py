"""Natural pre-images of a network's layers (IJCV 2016 Sects. 5-8), one figure per mode.

    jaxinv-visualise --mode=layers          # IJCV Fig. 10: images down, layers across
    jaxinv-visualise --mode=restarts        # Fig. 12: restarts down, layers across
    jaxinv-visualise --mode=window          # Fig. 13: central 5x5 window, receptive field box
    jaxinv-visualise --mode=channels        # Fig. 14: channel groups of each layer
    jaxinv-visualise --mode=caricature      # Figs. 20-21: caricatures, layers across
    jaxinv-visualise --mode=texture         # textures from the Gram matrices of layers
    jaxinv-visualise --mode=style           # content inversion + weighted texture term
    jaxinv-visualise --mode=hog_template [--template=FILE.mat|.npy]   # Sect. 6.1
    jaxinv-visualise --mode=restarts --net=DIR --layers=conv1,pool5,fc8

--net is cifar-ref (shipped) by default or any converted network directory. Images default to
CIFAR-10 test images for CIFAR networks, the built-in sample and the ImageNet samples otherwise.
Writes OUTPUT_DIR/<mode>.png (labelled grid), results.json and index.html.
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

from jaxinv.io import cli
from jaxinv.methods import visualise_modes as V

D = V.VisualiseConfig()
FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", D.mode, list(V.MODES), "which visualisation")
cli.define_net(D.net)
flags.DEFINE_list("layers", None, "layers (default depends on the mode)")
flags.DEFINE_list("images", None, "image files (default: CIFAR-10 test images / the built-in and ImageNet samples)")
flags.DEFINE_integer("num_images", None, "how many default images (default: 4 for layers and caricature, else 1)")
cli.define_restarts(None, "random restarts per problem (default: 4 for restarts, 1 otherwise)")
cli.define_iterations(D.iterations, D.refine_iterations)
flags.DEFINE_float("C", None, "override the mode's loss weight C (default: the per-layer rule / the mode's)")
flags.DEFINE_integer("window", D.window, "window side in cells (mode=window)")
flags.DEFINE_integer("channel_parts", D.channel_parts, "equal channel blocks for layers without grouped "
                     "convolutions (mode=channels)")
flags.DEFINE_string("texture_image", None, "texture / style image (default: the ImageNet sample "
                    + V.DEFAULT_TEXTURE + ")")
flags.DEFINE_integer("size", None, "texture/style image side (default: twice the input of a < 64 px network)")
flags.DEFINE_string("content_layer", None, "content layer of mode=style (default: the second ReLU of the trunk)")
flags.DEFINE_list("style_weights", [f"{w:g}" for w in D.style_weights], "texture-term weights lambda of mode=style, "
                  "one column each")
flags.DEFINE_enum("style_init", D.style_init, ["content", "noise"], "mode=style starts from the content image or noise")
flags.DEFINE_list("template", None, "HOG template files (.npy (h, w, 31) or DPM v5 .mat); default: a template "
                                    "trained on CIFAR-10 automobiles plus vertical/horizontal edge templates")
cli.define_seed()
flags.DEFINE_integer("scale", D.scale, "grid enlargement factor (0: tiles of about 128 pixels)")
cli.define_data_dir()
cli.define_output_dir(None, "where to write (default: outputs/visualise/<mode>)")
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    output_dir = cli.hold_output(FLAGS.output_dir or os.path.join("outputs", "visualise", FLAGS.mode))
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(V.VisualiseConfig)}
    try:
        values["style_weights"] = tuple(float(w) for w in values["style_weights"])
    except ValueError:
        raise ValueError(f"--style_weights must be numbers; got {','.join(FLAGS.style_weights)}") from None
    figure = V.run(V.VisualiseConfig(**values))
    for path in V.write_outputs(figure, output_dir):
        print(f"wrote {path}")


def run():
    """The console script jaxinv-visualise."""
    cli.run(main)


if __name__ == "__main__":
    run()
