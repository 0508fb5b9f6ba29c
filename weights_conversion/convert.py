"""Converts a pretrained network into a jaxinv network directory (orbax params + metadata.json).

    python -m weights_conversion.convert --format=torch --arch=torchvision-alexnet \
        --input=alexnet-owt-7be5be79.pth --output=nets/torchvision-alexnet
    python -m weights_conversion.convert --format=matconvnet --arch=caffe-ref \
        --input=imagenet-caffe-ref.mat --output=nets/caffe-ref
    python -m weights_conversion.convert --format=caffe --arch=caffe-ref \
        --input=bvlc_reference_caffenet.caffemodel --prototxt=deploy.prototxt --output=nets/caffe-ref

The architecture's layer table is authoritative for the geometry; the readers take weights from
the file and check them against it. --input_size changes the input the fc6 weights are shaped
for (the architecture's standard size by default).
"""
from __future__ import annotations

from absl import flags

from jaxinv import nets
from jaxinv.io import cli
from jaxinv.nets import tables, torchvision_tables
from jaxinv.nets import model as model_lib

FORMATS = ("torch", "matconvnet", "caffe")


def default_convention(arch: str, source_format: str) -> dict:
    """Input convention of a source: torchvision normalisation, MatConvNet's RGB [0, 255] minus the
    ILSVRC mean, Caffe's BGR [0, 255] minus the mean (PyTorch ports of Caffe models keep Caffe's)."""
    if arch.startswith("torchvision-"):  # GoogLeNet's pretrained weights: transform_input (torchvision_tables)
        return dict(model_lib.TORCHVISION_CONVENTION, **torchvision_tables.layout(arch).convention)
    if source_format == "matconvnet":
        return dict(model_lib.MATCONVNET_CONVENTION)
    return dict(model_lib.CAFFE_CONVENTION)


def convert(source_format: str, arch: str, path: str, prototxt: str | None = None,
            input_size: int | None = None) -> nets.Model:
    """Reads a pretrained network into a jaxinv Model (not yet saved)."""
    table = tables.build(arch)  # an unknown arch fails here, listing the valid ones
    if source_format not in FORMATS:
        raise ValueError(f"unknown format {source_format!r}; valid: {', '.join(FORMATS)}")
    input_size = input_size or tables.INPUT_SIZES[arch]
    convention, class_names, mean_image = default_convention(arch, source_format), None, None
    if source_format == "torch":
        from weights_conversion import torch_reader
        params = torch_reader.to_params(table, input_size, torch_reader.read_state_dict(path), path, arch)
    elif source_format == "matconvnet":
        from weights_conversion import matconvnet_reader
        net = matconvnet_reader.read(path)
        params = matconvnet_reader.to_params(table, input_size, net, path)
        mean_image, class_names = net.mean_image, net.class_names
        if net.mean_rgb is not None:
            convention["mean"] = [float(m) for m in net.mean_rgb]
    else:
        from weights_conversion import caffe_reader
        params = caffe_reader.to_params(table, input_size, caffe_reader.read_caffemodel(path),
                                        caffe_reader.read_prototxt(prototxt) if prototxt else None, path)
    return nets.Model(arch=arch, table=table, params=params, input_size=input_size, convention=convention,
                      class_names=class_names, mean_image=mean_image,
                      metadata=dict(source=dict(format=source_format, input=path, prototxt=prototxt)))


def main(argv):
    del argv
    model = convert(FLAGS.format, FLAGS.arch, FLAGS.input, FLAGS.prototxt, FLAGS.input_size)
    nets.save(FLAGS.output, model)
    print(f"wrote {FLAGS.arch} ({len(model.params)} parametric layers) to {FLAGS.output}")


if __name__ == "__main__":
    flags.DEFINE_enum("format", None, FORMATS, "format of --input")
    flags.DEFINE_string("arch", None, f"architecture: {', '.join(tables.architectures())}")
    flags.DEFINE_string("input", None, "weights file (.pth, .mat or .caffemodel)")
    flags.DEFINE_string("prototxt", None, "Caffe deploy.prototxt, checked against --arch (optional)")
    flags.DEFINE_string("output", None, "network directory to write")
    flags.DEFINE_integer("input_size", None, "input size the fc6 weights are shaped for (default: the arch's)")
    flags.mark_flags_as_required(["format", "arch", "input", "output"])
    FLAGS = flags.FLAGS
    cli.run(main)
