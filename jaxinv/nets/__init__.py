"""Deep networks as layer tables: AlexNet/CaffeNet, VGG-M, VGG-VD-16, their torchvision layouts
and the small CIFAR-10 reference network that ships trained with jaxinv."""
from jaxinv.nets.tables import (architectures, build, init_params, output_shapes, param_shapes,
                                       receptive_fields)
from jaxinv.nets.model import Model, load, save
from jaxinv.engine import graph


def apply(table, params, x, upto=None) -> dict:
    """{layer: output} of the table on a batch x (N, H, W, C), stopping after `upto`."""
    return graph.run(table, params, x, upto)


__all__ = ["Model", "apply", "architectures", "build", "init_params", "load", "output_shapes",
           "param_shapes", "receptive_fields", "save"]
