"""A trained inverter: architecture + parameters + the representation it inverts, saved as an orbax
checkpoint (DIR/params) beside DIR/metadata.json.

Output parametrisation: the network predicts (x - 128) / 128 for an RGB image x in [0, 255] (zero
mean, unit range for natural images); `Inverter` returns 128 + 128 * prediction clipped to
[0, 255]. Features enter the network multiplied by `feature_scale`, 1 / RMS of the features of
training images (fixed at the start of training), so that every representation reaches the first
layer at unit scale.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.io import cache, checkpoints, outputs
from jaxinv.inverters import architectures
from jaxinv.inverters import features as inverter_features
from jaxinv.engine.representation import Representation

METADATA_FILE = "metadata.json"
PARAMS_DIR = "params"
PIXEL_MEAN = PIXEL_SCALE = 128.0
BATCH = 64


def inverter_name(representation: str, image_size: int) -> str:
    """The name of an inverter, as a folder of the cache and of the shipped assets: <representation, ':' and
    '/' as '_'>-<size>, e.g. "hog-64", "cifar-ref_pool2-32"."""
    return f"{representation.replace(':', '_').replace('/', '_')}-{int(image_size)}"


def default_dir(representation: str, image_size: int, finetuned: bool = False) -> str:
    """Where train_inverter writes (and compare_inverters looks for) an inverter by default:
    <cache root>/inverters/<inverter_name>[-finetuned] (`jaxinv.io.cache.cache_root`)."""
    name = inverter_name(representation, image_size)
    return os.path.join(cache.cache_root(), "inverters", name + ("-finetuned" if finetuned else ""))


def builtin_dir(name: str) -> str:
    """The folder of an inverter shipped inside the package (jaxinv/inverters/assets/NAME, e.g. "hog-64")."""
    return str(resources.files("jaxinv.inverters") / "assets" / name)


def builtin_names() -> list[str]:
    """The inverters shipped inside the package, e.g. ["hog-256", "hog-64"]."""
    assets = resources.files("jaxinv.inverters") / "assets"
    return sorted(entry.name for entry in assets.iterdir() if (entry / METADATA_FILE).is_file()) \
        if assets.is_dir() else []


def trained_or_shipped_dir(representation: str, image_size: int) -> str:
    """The inverter to use by default: the cache's (`default_dir`, what train_inverter writes) if trained,
    else the one shipped with jaxinv under the same name (e.g. "hog-64") if any, else the cache's folder
    (whose absence `load` then names)."""
    directory, shipped = default_dir(representation, image_size), inverter_name(representation, image_size)
    if not os.path.isdir(directory) and shipped in builtin_names():
        return builtin_dir(shipped)
    return directory


def to_pixels(prediction):
    """Network output (x - 128) / 128 -> image in [0, 255] (not clipped)."""
    return PIXEL_MEAN + PIXEL_SCALE * prediction


def to_target(images):
    """Images in [0, 255] -> the network's target (x - 128) / 128."""
    return (images - PIXEL_MEAN) / PIXEL_SCALE


@dataclasses.dataclass
class Inverter:
    """f(phi; W): features of `representation` -> image_size x image_size RGB images in [0, 255].

    params = {"decoder": ...} plus {"encoder": ...} when the encoder (a CNN) was fine-tuned jointly
    (an autoencoder); `invert_images` then encodes with the fine-tuned weights.
    """
    representation: str
    image_size: int
    family: str
    feature_shape: tuple[int, ...]
    width: float
    params: Any
    feature_scale: float
    metadata: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def table(self) -> list:
        return architectures.build(self.family, self.feature_shape, self.image_size, self.width)

    @functools.cached_property
    def feature(self) -> Representation:
        return inverter_features.representation(self.representation, self.image_size)

    @property
    def _decode(self):
        return _decoder(self.family, tuple(self.feature_shape), self.image_size, self.width)

    def __call__(self, features) -> np.ndarray:
        """(N, *feature_shape) features (or one, without the batch axis) -> (N, S, S, 3) images in [0, 255]."""
        phi = np.asarray(features, np.float32)
        single = phi.shape == tuple(self.feature_shape)
        if single:
            phi = phi[None]
        if phi.shape[1:] != tuple(self.feature_shape):
            raise ValueError(f"the {self.representation!r} inverter takes features of shape {tuple(self.feature_shape)} "
                             f"(or a batch of them); got shape {phi.shape}")
        out = np.concatenate([np.asarray(self._decode(self.params["decoder"], jnp.asarray(phi[i:i + BATCH]),
                                                         np.float32(self.feature_scale)))
                              for i in range(0, len(phi), BATCH)])
        out = np.clip(out, 0.0, 255.0)
        return out[0] if single else out

    def features(self, images) -> np.ndarray:
        """Phi of a batch (N, S, S, 3) (or grey (N, S, S)) in [0, 255], with the fine-tuned encoder if any."""
        x = inverter_features.as_colour_batch(images, what=f"images for the {self.representation!r} inverter")
        if x.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"the {self.representation!r} inverter takes {self.image_size}x{self.image_size} images; "
                             f"got shape {x.shape}")
        encoder = self.params.get("encoder")
        return np.concatenate([inverter_features.compute(self.feature, x[i:i + BATCH], encoder)
                               for i in range(0, len(x), BATCH)])

    def invert_images(self, images) -> np.ndarray:
        """f(Phi(x)) for a batch of images in [0, 255]: (N, S, S, 3) reconstructions in [0, 255]."""
        return self(self.features(images))


@functools.lru_cache(maxsize=16)
def _decoder(family: str, feature_shape: tuple, image_size: int, width: float):
    """Jitted (params, features, scale) -> images in [0, 255], one per architecture in a process."""
    table = architectures.build(family, feature_shape, image_size, width)
    return jax.jit(lambda params, phi, scale: to_pixels(architectures.apply(table, params, phi * scale)))


# What a saved inverter consists of; the rest of its folder (training checkpoints, lock, pool...) is left alone.
SAVED_ENTRIES = (PARAMS_DIR, METADATA_FILE)


def save(directory: str, inverter: Inverter) -> str:
    """Writes DIR/params (orbax) and DIR/metadata.json, replacing an existing inverter there atomically
    (outputs.replace_directory: a process killed at any moment leaves the old or the new inverter loadable).
    The metadata records the parameters' fingerprint (checkpoints.weights_fingerprint), which `load` verifies."""
    metadata = dict(inverter.metadata, representation=inverter.representation, image_size=inverter.image_size,
                    family=inverter.family, feature_shape=list(inverter.feature_shape), width=inverter.width,
                    feature_scale=inverter.feature_scale,
                    encoder_finetuned="encoder" in inverter.params)
    metadata["fingerprints"] = checkpoints.fingerprints(params=inverter.params)

    def write(folder):
        checkpoints.write_tree(os.path.join(folder, PARAMS_DIR), inverter.params)
        outputs.write_json(os.path.join(folder, METADATA_FILE), metadata)

    return outputs.replace_directory(directory, write, SAVED_ENTRIES)


def _positive_number(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value) or value <= 0:
        return f"should be a positive finite number, got {value!r}"
    return None


def _shape(value):
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return f"should be a list of positive ints, got {value!r}"
    return None


METADATA_FIELDS = dict(representation=str, image_size=int, family=str, feature_shape=_shape, width=_positive_number,
                       feature_scale=_positive_number, encoder_finetuned=checkpoints.optional(bool),
                       fingerprints=checkpoints.optional(dict))


def load(directory: str) -> Inverter:
    """The inverter saved in `directory` (e.g. `default_dir("hog", 64)`), or one shipped with jaxinv by
    name ("hog-64", `builtin_names()`) when no such directory exists.

    Verifies the metadata's keys and types, that every parameter is finite and, for inverters saved with one,
    the parameters' fingerprint; a problem raises ValueError naming the file. A replacement of the folder that a
    killed process left unfinished is completed first (outputs.recover_directory)."""
    outputs.recover_directory(directory, SAVED_ENTRIES)
    if not os.path.isdir(directory) and os.sep not in directory and os.path.isdir(builtin_dir(directory)):
        directory = builtin_dir(directory)
    metadata_path = os.path.join(directory, METADATA_FILE)
    if not os.path.isdir(directory):
        shipped = builtin_names()
        raise FileNotFoundError(f"inverter directory not found: {directory} (train one with "
                                f"`jaxinv-train-inverter --output_dir={directory}`"
                                f"{'; shipped with jaxinv: ' + ', '.join(shipped) if shipped else ''})")
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(f"{metadata_path} not found: not a trained inverter directory "
                                f"(an interrupted training run? rerun train_inverter to finish it)")
    metadata = outputs.read_json(metadata_path)
    checkpoints.check_fields(metadata, metadata_path, METADATA_FIELDS)
    params_dir = os.path.join(os.path.abspath(directory), PARAMS_DIR)
    params = checkpoints.read_tree(params_dir)
    if not isinstance(params, dict) or "decoder" not in params:
        raise ValueError(f"{params_dir}: expected the parameters {{'decoder': ...}} of an inverter, got "
                         f"{sorted(params) if isinstance(params, dict) else type(params).__name__}")
    checkpoints.check_weights(params, params_dir, metadata, "params", metadata_path)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)), params)  # uncommitted, as trained ones
    return Inverter(representation=metadata["representation"], image_size=int(metadata["image_size"]),
                    family=metadata["family"], feature_shape=tuple(metadata["feature_shape"]),
                    width=float(metadata["width"]), params=params, feature_scale=float(metadata["feature_scale"]),
                    metadata=metadata)


@dataclasses.dataclass(frozen=True)
class DecoderNetwork:
    """An inverter architecture's decoder as a hashable pure function: (weights, codes) -> images.
    Codes (N, *feature_shape) are in the decoder's input units (features times the feature scale);
    images (N, S, S, 3) in [0, 255], not clipped."""
    family: str
    feature_shape: tuple
    image_size: int
    width: float

    def __call__(self, weights, codes):
        table = _decoder_table(self.family, tuple(self.feature_shape), self.image_size, self.width)
        return to_pixels(architectures.apply(table, weights, codes))


@functools.lru_cache(maxsize=16)
def _decoder_table(family: str, feature_shape: tuple, image_size: int, width: float):
    return architectures.build(family, feature_shape, image_size, width)


def decoder_parameterisation(inverter: Inverter, mean, code_rms: float | None = None):
    """The inverter's decoder as an image parameterisation (`jaxinv.engine.parameterisation.Decoder`):
    a code whose natural values have RMS `code_rms` (default: the RMS of the pixels' start at B = 80,
    `parameterisation.start_rms`) -> the decoder's image minus `mean` (the inverted representation's).
    Its weights are the decoder's."""
    from jaxinv.engine import parameterisation
    network = DecoderNetwork(inverter.family, tuple(inverter.feature_shape), inverter.image_size, float(inverter.width))
    return parameterisation.Decoder(
        network=network, feature_shape=tuple(inverter.feature_shape), image_size=inverter.image_size,
        mean=tuple(float(m) for m in np.broadcast_to(mean, (3,))),
        code_rms=float(parameterisation.start_rms(80.0) if code_rms is None else code_rms),
        weights=inverter.params["decoder"])
