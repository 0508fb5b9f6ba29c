"""What every adapter shares: the input convention, the tapped code, and the wrapped model.

An adapter reduces a model to a *taps function* `taps(params, x) -> {name: array}` on inputs in the
model's own space and layout (a batch of one when the model is batched), hashable and compared by
what it computes (a frozen dataclass holding the module's structure, never its weights). `TapCode`
puts the input convention in front of it and picks one tap; `TappedModel` lists the taps and makes
`Representation`s of them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.nets import convention as conv
from jaxinv.engine.representation import Representation

# torchvision's convention (RGB in [0, 1], ImageNet mean and std): the default for wrapped models.
IMAGENET = dict(channel_order="RGB", pixel_range=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# One-channel default: ImageNet's mean and std averaged over the channels.
IMAGENET_GREY = dict(channel_order="RGB", pixel_range=1.0, mean=(0.449,), std=(0.226,))
LAYOUTS = ("HWC", "CHW")
OUTPUT = "output"  # tap name of the model's own output (linen, NNX, Equinox)


def input_convention(channels: int = 3, *, channel_order: str = "RGB", pixel_range: float = 1.0,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> dict:
    """How an image in [0, 255] enters the model (`jaxinv.nets.convention`):
    x = (reorder(image) * pixel_range / 255 - mean) / std, mean and std per channel in the model's
    channel order and range. Defaults: RGB in [0, 1] with ImageNet's mean and std (`IMAGENET`), or
    for `channels=1` their channel averages (`IMAGENET_GREY`); other channel counts need `mean`
    and `std`. A scalar mean or std applies to every channel."""
    if channels not in (1, 3) and (mean is None or std is None):
        raise ValueError(f"give mean and std for {channels}-channel inputs (defaults exist for 1 and 3 channels)")
    default = IMAGENET if channels == 3 else IMAGENET_GREY
    if pixel_range != 1.0 and (mean is None or std is None):
        raise ValueError("the default mean and std are for pixel_range=1; give mean and std for other ranges")
    mean, std = (default[k] if v is None else v for k, v in (("mean", mean), ("std", std)))
    mean, std = (tuple(float(v) for v in np.broadcast_to(np.asarray(a, np.float64), (channels,)))
                 for a in (mean, std))
    if channel_order not in ("RGB", "BGR"):
        raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    if channel_order == "BGR" and channels != 3:
        raise ValueError("channel_order 'BGR' needs 3 channels")
    if not pixel_range > 0 or not all(s > 0 for s in std):
        raise ValueError(f"pixel_range and std must be positive, got {pixel_range} and {std}")
    if not all(0 <= m <= pixel_range for m in mean):
        raise ValueError(f"the mean {mean} lies outside the pixel range [0, {pixel_range:g}]: give the mean in the "
                         "model's own range (e.g. pixel_range=255 with means near 120)")
    return dict(channel_order=channel_order, pixel_range=float(pixel_range), mean=mean, std=std)


def _checked_convention(convention: Mapping | None) -> dict:
    if convention is None:
        return dict(IMAGENET)
    missing = {"channel_order", "pixel_range", "mean", "std"} - set(convention)
    if missing:
        raise ValueError(f"input convention misses {sorted(missing)}; build one with adapters.input_convention")
    return input_convention(len(convention["mean"]), channel_order=convention["channel_order"],
                            pixel_range=convention["pixel_range"], mean=convention["mean"], std=convention["std"])


def flatten_taps(tree, prefix: tuple = ()) -> dict:
    """Nested intermediates {module: {method: (call_1, call_2, ...)}} -> {"module/sub": array}.
    A `__call__` key names its module itself ("output" at the root); the k-th call (k > 0) of a
    module called several times is "name[k]"; outputs that are not arrays (tuples, dicts) get
    their pytree path appended ("name[0]/1")."""
    out = {}
    for key, value in tree.items():
        path = prefix if key == "__call__" else prefix + (str(key),)
        if isinstance(value, Mapping):
            out.update(flatten_taps(value, path))
            continue
        calls = value if isinstance(value, tuple) else (value,)
        base = "/".join(path) if path else OUTPUT
        for k, call in enumerate(calls):
            name = base if k == 0 else f"{base}[{k}]"
            leaves = jax.tree_util.tree_flatten_with_path(call)[0]
            if len(leaves) == 1 and not leaves[0][0]:
                out[name] = leaves[0][1]
            else:
                for leaf_path, leaf in leaves:
                    out[name + "/" + "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in leaf_path)] = leaf
    return out


@dataclasses.dataclass(frozen=True)
class TapCode:
    """apply(params, image) of a wrapped model: the tap `tap` of one image (H, W, channels) in
    [0, 255], through the input convention. Feature maps of CHW models come back (h, w, c), like
    every feature map in jaxinv. Compared by the taps function (the model's structure), the tap and
    the convention, never by weights."""
    taps: Callable[[Any, jax.Array], Mapping[str, jax.Array]]
    tap: str
    channel_order: str
    pixel_range: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    batched: bool = True
    layout: str = "HWC"

    def _model_input(self, image):
        x = conv.to_network(image, self.channel_order, self.pixel_range, np.asarray(self.mean, np.float32),
                            np.asarray(self.std, np.float32))
        x = jnp.moveaxis(x, -1, 0) if self.layout == "CHW" else x
        return x[None] if self.batched else x

    def _unbatch(self, value):
        value = value[0] if self.batched else value
        return jnp.moveaxis(value, 0, -1) if self.layout == "CHW" and value.ndim == 3 else value

    def all_taps(self, params, image) -> dict:
        """Every tap of one image (H, W, channels) in [0, 255]."""
        return {name: self._unbatch(value) for name, value in self.taps(params, self._model_input(image)).items()}

    def __call__(self, params, image):
        return self._unbatch(self.taps(params, self._model_input(image))[self.tap])


@dataclasses.dataclass(frozen=True)
class GramTapCode:
    """apply(params, image) of the texture and style losses on a wrapped model: {"features": {tap:
    map}} of `gram_layers` (plus "content": the output of tap `layer` when `content` is set), from one
    forward pass. Fields named as `jaxinv.nets.taps.NetworkCode`'s."""
    code: TapCode
    layer: str
    gram_layers: tuple[str, ...]
    content: bool = True

    def __call__(self, params, image):
        out = self.code.all_taps(params, image)
        code = {"features": {tap: out[tap] for tap in self.gram_layers}}
        if self.content:
            code["content"] = out[self.layer]
        return code


def _size(input_size) -> tuple[int, int]:
    size = (input_size, input_size) if np.ndim(input_size) == 0 else tuple(input_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"input_size must be a positive int or (height, width), got {input_size!r}")
    return int(size[0]), int(size[1])


class TappedModel:
    """A model wrapped by an adapter: its taps (`layers`), each a `Representation` (`representation`)
    whose params are the model's weights, so models of one structure share compiled steps.

    `input_size` (int or (H, W)) is the size the taps are listed and measured at and the size of the
    representations (override per call). `convention` is how images in [0, 255] enter the model
    (`input_convention`; default `IMAGENET`). `batched` models take a leading batch axis;
    `layout` is "HWC" or "CHW" (the input, and the feature maps, which come back (h, w, c))."""

    def __init__(self, taps: Callable, params, *, input_size, convention: Mapping | None = None,
                 batched: bool = True, layout: str = "HWC", name: str = "model"):
        try:
            hash(taps)
        except TypeError as e:
            raise ValueError(f"the model's structure must be hashable to share compiled steps ({e}); "
                             "use tuples rather than lists or dicts in module attributes") from None
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.convention = _checked_convention(convention)
        self.params, self.input_size, self.name = params, _size(input_size), name
        # Names of the units of the class-score output, if the model has one (set after wrapping).
        self.class_names: list[str] | None = None
        c = self.convention
        self._code = TapCode(taps, OUTPUT, c["channel_order"], c["pixel_range"], c["mean"], c["std"],
                             bool(batched), layout)
        self._shapes: dict = {}
        try:
            self.layers()
        except Exception as e:  # the framework's own shape errors, whatever their type
            raise ValueError(f"{name} does not run on {self.input_size[0]}x{self.input_size[1]} images with "
                             f"{self.channels} channel(s) (layout {layout}, the input convention's channel count): "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None

    @property
    def channels(self) -> int:
        return len(self.convention["mean"])

    @property
    def mean(self) -> tuple[float, ...]:
        """The input mean as a colour in [0, 255] (RGB or grey): the Representation's `mean`."""
        return conv.rgb_mean(self.convention)

    def layers(self, input_size=None) -> dict[str, tuple[int, ...]]:
        """{tap: output shape} (no batch axis; feature maps (h, w, c)) for images of `input_size`,
        computed with jax.eval_shape (nothing runs). The whole model is traced, so a model with
        dense layers lists (and runs) at its own input size only."""
        size = self.input_size if input_size is None else _size(input_size)
        if size not in self._shapes:
            image = jax.ShapeDtypeStruct(size + (self.channels,), jnp.float32)
            shapes = jax.eval_shape(self._code.all_taps, self.params, image)
            self._shapes[size] = {name: tuple(s.shape) for name, s in shapes.items()}
        return dict(self._shapes[size])

    def check_tap(self, tap: str, input_size=None) -> None:
        names = self.layers(input_size)
        if tap not in names:
            raise ValueError(f"unknown tap {tap!r} of {self.name}; valid taps: {', '.join(names)}")

    def taps(self, image, params=None) -> dict:
        """Every tap of one image (H, W) or (H, W, channels) in [0, 255], as numpy arrays."""
        image = np.asarray(image, np.float32)
        image = image[..., None] if image.ndim == 2 else image
        out = jax.jit(self._code.all_taps)(self.params if params is None else params, image)
        return {name: np.asarray(value) for name, value in out.items()}

    def representation(self, tap: str, *, input_size=None, stride: int | None = None) -> Representation:
        """Tap `tap` as a Representation of one image (H, W, channels) with the model's mean colour
        subtracted. Its stride (the jitter rule) is measured from the gradient support
        (`jaxinv.adapters.geometry`) unless given; taps without a spatial map take the stride of
        the coarsest feature map among the taps, as the layer tables give fully connected layers
        the stride of the map they read."""
        from jaxinv.adapters import geometry
        size = self.input_size if input_size is None else _size(input_size)
        self.check_tap(tap, size)
        rep = Representation(f"{self.name}:{tap}", dataclasses.replace(self._code, tap=tap), self.params,
                             channels=self.channels, mean=self.mean, stride=1, input_size=size, min_size=min(size),
                             layers=tuple(self.layers(size)))
        if stride is None:
            stride = geometry.stride_of(rep, size)
            if stride is None:
                spatial = {name: s for name, s in self.layers(size).items() if len(s) == 3}
                coarsest = min(spatial, key=lambda n: (spatial[n][0] * spatial[n][1], -list(spatial).index(n)),
                               default=None)
                stride = 1 if coarsest is None else self.representation(coarsest, input_size=size).stride
        return dataclasses.replace(rep, stride=int(stride))

    def gram_representation(self, taps: Sequence[str], content: str | None = None, *, input_size=None) -> Representation:
        """The code {"features": {tap: map}} (and "content") of the texture and style losses (IJCV Eq. 8)
        as a Representation; its stride is the measured stride of the last tap listed."""
        taps = tuple(taps)
        if not taps:
            raise ValueError(f"no texture taps given for {self.name}")
        size = self.input_size if input_size is None else _size(input_size)
        shapes = self.layers(size)
        for tap in taps + ((content,) if content else ()):
            self.check_tap(tap, size)
        flat = [tap for tap in taps if len(shapes[tap]) != 3]
        if flat:
            raise ValueError(f"texture tap {flat[0]!r} of {self.name} has no spatial map (shape {shapes[flat[0]]}); "
                             f"taps with maps: {', '.join(t for t, s in shapes.items() if len(s) == 3)}")
        stride = self.representation(taps[-1], input_size=size).stride
        name = f"{self.name}:gram({','.join(taps)})" + (f"+{content}" if content else "")
        return Representation(name, GramTapCode(self._code, content or taps[-1], taps, content is not None), self.params, channels=self.channels,
                              mean=self.mean, stride=stride, input_size=size, min_size=min(size),
                              layers=tuple(shapes))

    def geometry(self, tap: str, input_size=None, **kwargs):
        """The measured receptive field and stride of `tap` (`jaxinv.adapters.geometry.measure`)."""
        from jaxinv.adapters import geometry
        return geometry.measure(self.representation(tap, input_size=input_size, stride=1), input_size, **kwargs)

    def problem(self, tap: str, input_size=None, **kwargs):
        """`jaxinv.adapters.geometry.problem_for` of `tap`: IJCV Eq. 1 with the per-layer C and jitter rules."""
        from jaxinv.adapters import geometry
        return geometry.problem_for(self.representation(tap, input_size=input_size), **kwargs)

    def __repr__(self):
        return f"TappedModel({self.name!r}, input_size={self.input_size}, channels={self.channels})"
