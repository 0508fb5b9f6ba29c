"""Learned inverters (Dosovitskiy & Brox, CVPR 2016): networks f(phi; W) trained to map the features
of an image back to the image, minimising sum_i ||x_i - f(Phi(x_i); W)||^2 over natural images.

    inverter = jaxinv.inverters.load("hog-64")   # shipped (jaxinv/inverters/assets), or a folder you trained
    reconstructions = inverter.invert_images(images)   # (N, 64, 64, 3) in [0, 255]
    reconstructions = inverter(features)               # from features of the representation

Modules: `architectures` (the paper's networks as layer tables, scaled by a rule), `layers`
(up-convolution), `features` (the registry's representations on colour batches), `data` (ImageNet / CIFAR-10 splits and crops),
`run_config` (TrainConfig, default settings), `training` (resumable orbax training loop and model selection),
`validation` (the validation split's error, history and plot), `model` (Inverter, save, load),
`metrics` (image error), `shipped` (the inverters shipped inside the package and their check).
"""
from jaxinv.inverters.architectures import FAMILIES, build, init_params, output_shapes, param_shapes
from jaxinv.inverters.metrics import flat_baseline_errors, image_error, image_errors
from jaxinv.inverters.model import Inverter, builtin_dir, builtin_names, default_dir, load, save, trained_or_shipped_dir
from jaxinv.inverters.run_config import TrainConfig
from jaxinv.inverters.training import evaluate, train

__all__ = ["FAMILIES", "Inverter", "TrainConfig", "build", "builtin_dir", "builtin_names", "default_dir", "evaluate",
           "flat_baseline_errors",
           "image_error", "image_errors", "init_params", "load", "output_shapes", "param_shapes", "save", "train",
           "trained_or_shipped_dir"]
