"""The one registry: every named representation resolves to the one Representation type."""
import jax
import numpy as np
import pytest

from jaxinv import nets, representations
from jaxinv.engine import preimage
from jaxinv.io import images
from jaxinv.methods import texture
from jaxinv.nets import taps


def test_every_name_resolves_with_its_input_convention():
    grey = images.load_sample_image(grey=True, size=64)
    shapes = {"hog": (8, 8, 31), "hogb": (8, 8, 31), "dsift": (5, 5, 128), "lbp": (4, 4, 58), "sift": (16, 16, 133)}
    for name, shape in shapes.items():
        rep = representations.get(name)
        assert (rep.channels, rep.mean) == (1, (128.0,))
        assert rep.traceable == (name in representations.names())
        assert np.shape(rep(rep.to_null_mean(grey))) == shape, name
    assert representations.get("hog", cell_size=4).stride == 4


def test_network_layers_and_multi_layer_taps():
    model = nets.load("cifar-ref")
    rep = representations.get("cifar-ref:pool2")
    assert rep.name == "cifar-ref:pool2" and rep == taps.representation(model, "pool2")
    assert rep.layers == tuple(model.layer_names) and rep.stride == taps.layer_stride(model, "pool2")
    gram = representations.get("cifar-ref:relu1,relu2")
    assert gram == texture.gram_representation(model, ["relu1", "relu2"])
    code = gram(gram.to_null_mean(images.load_sample_image(size=32)))
    assert set(code["features"]) == {"relu1", "relu2"} and "content" not in code
    assert representations.get("cifar-ref:relu2", input_size=48).input_size == (48, 48)


def test_bad_names_are_refused_with_the_valid_choices():
    with pytest.raises(ValueError, match="unknown representation 'hug'; valid representations: hog, hogb, dsift, lbp"):
        representations.get("hug")
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        representations.get("cifar-ref:conv9")
    with pytest.raises(ValueError, match="'NET:LAYER'"):
        representations.get("cifar-ref:")


def test_the_engine_refuses_host_features():
    lbp = representations.get("lbp")
    with pytest.raises(ValueError, match="'lbp' is computed on the host and has no gradient"):
        preimage.solve(lbp, preimage.Problem(), preimage.Target(np.ones(3)), image_shape=(32, 32),
                       key=jax.random.key(0))
