"""Converts a pretrained network into a jaxinv network directory (orbax params + metadata.json).

    jaxinv-convert --format=torch --arch=torchvision-alexnet \
        --input=alexnet-owt-7be5be79.pth --output=nets/torchvision-alexnet
    jaxinv-convert --format=matconvnet --arch=caffe-ref \
        --input=imagenet-caffe-ref.mat --output=nets/caffe-ref
    jaxinv-convert --format=caffe --arch=caffe-ref \
        --input=bvlc_reference_caffenet.caffemodel --prototxt=deploy.prototxt --output=nets/caffe-ref

The architecture's layer table is authoritative for the geometry; the readers take weights from
the file and check them against it. --input_size changes the input the fc6 weights are shaped
for (the architecture's standard size by default).
"""
from __future__ import annotations

from absl import flags

from jaxinv import nets
from jaxinv.conversion import convert as conversion
from jaxinv.io import cli
from jaxinv.nets import tables

flags.DEFINE_enum("format", None, conversion.FORMATS, "format of --input")
flags.DEFINE_string("arch", None, f"architecture: {', '.join(tables.architectures())}")
flags.DEFINE_string("input", None, "weights file (.pth, .mat or .caffemodel)")
flags.DEFINE_string("prototxt", None, "Caffe deploy.prototxt, checked against --arch (optional)")
flags.DEFINE_string("output", None, "network directory to write")
flags.DEFINE_integer("input_size", None, "input size the fc6 weights are shaped for (default: the arch's)")
flags.mark_flags_as_required(["format", "arch", "input", "output"])
FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cli)  # the shared flags show in --help


def main(argv):
    del argv
    cli.hold_output(FLAGS.output, replaced=True)  # refused if another run writes there; fails now if unwritable
    model = conversion.convert(FLAGS.format, FLAGS.arch, FLAGS.input, FLAGS.prototxt, FLAGS.input_size)
    nets.save(FLAGS.output, model)
    print(f"wrote {FLAGS.arch} ({len(model.params)} parametric layers) to {FLAGS.output}")


def run():
    """The console script jaxinv-convert."""
    cli.run(main)


if __name__ == "__main__":
    run()
