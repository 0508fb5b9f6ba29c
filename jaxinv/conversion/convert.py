"""Converting a pretrained network into a jaxinv `Model` (`convert`): the architecture's layer table is
authoritative for the geometry; the readers (`torch_reader`, `matconvnet_reader`, `caffe_reader`) take
weights from the file and check them against it. The command line is `jaxinv-convert`
(`jaxinv.binaries.convert`)."""
from __future__ import annotations

from jaxinv import nets
from jaxinv.io import arguments, checkpoints
from jaxinv.nets import tables
from jaxinv.nets import model as model_lib

FORMATS = ("torch", "matconvnet", "caffe")


def default_convention(arch: str, source_format: str) -> dict:
    """Input convention of a source: torchvision normalisation, MatConvNet's RGB [0, 255] minus the
    ILSVRC mean, Caffe's BGR [0, 255] minus the mean (PyTorch ports of Caffe models keep Caffe's)."""
    if arch.startswith("torchvision-"):
        return dict(model_lib.TORCHVISION_CONVENTION)
    if source_format == "matconvnet":
        return dict(model_lib.MATCONVNET_CONVENTION)
    return dict(model_lib.CAFFE_CONVENTION)


def convert(source_format: str, arch: str, path: str, prototxt: str | None = None,
            input_size: int | None = None) -> nets.Model:
    """Reads a pretrained network into a jaxinv Model (not yet saved)."""
    table = tables.build(arch)  # an unknown arch fails here, listing the valid ones
    if source_format not in FORMATS:
        raise ValueError(f"unknown format {source_format!r}; valid: {', '.join(FORMATS)}")
    if input_size is not None:
        arguments.check_count("input_size", input_size)
    input_size = input_size or tables.INPUT_SIZES[arch]
    convention, class_names, mean_image = default_convention(arch, source_format), None, None
    if source_format == "torch":
        from jaxinv.conversion import torch_reader
        params = torch_reader.to_params(table, input_size, torch_reader.read_state_dict(path), path)
    elif source_format == "matconvnet":
        from jaxinv.conversion import matconvnet_reader
        net = matconvnet_reader.read(path)
        params = matconvnet_reader.to_params(table, input_size, net, path)
        mean_image, class_names = net.mean_image, net.class_names
        if net.mean_rgb is not None:
            convention["mean"] = [float(m) for m in net.mean_rgb]
    else:
        from jaxinv.conversion import caffe_reader
        params = caffe_reader.to_params(table, input_size, caffe_reader.read_caffemodel(path),
                                        caffe_reader.read_prototxt(prototxt) if prototxt else None, path)
    bad = checkpoints.non_finite_leaves(params)
    if bad:
        raise ValueError(f"{path}: non-finite weights (NaN or infinity) in {', '.join(bad[:3])}"
                         f"{f' and {len(bad) - 3} more' if len(bad) > 3 else ''}: a corrupt file or a diverged network")
    return nets.Model(arch=arch, table=table, params=params, input_size=input_size, convention=convention,
                      class_names=class_names, mean_image=mean_image,
                      metadata=dict(source=dict(format=source_format, input=path, prototxt=prototxt)))
