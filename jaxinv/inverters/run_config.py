"""What determines an inverter's training run: `TrainConfig` (saved as OUTPUT_DIR/config.json, checked on
resume) and the default sizes and lengths per representation and backend (`default_settings`), which
`experiments.train_inverter` and the benchmarks start from. The training itself is `jaxinv.inverters.training`."""
from __future__ import annotations

import dataclasses

import jax

from jaxinv.io import arguments
from jaxinv.inverters import data

# Defaults of experiments/train_inverter.py: sizes and lengths that train on the project's shared 2-core
# CPU in bounded time (the HOG inverter in ~30 min), and larger ones for an accelerator (not run here).
# Host features (LBP, SIFT) come from fresh crops every step (pool_size 0) where the prefetch thread computes
# them faster than the step runs (LBP on CPU), else from a fixed pool computed once (SIFT on CPU: 0.67 s for
# 64 crops of 128 px against a 0.49 s step; an accelerator's step is far faster than the host).
CPU_DEFAULTS = {"hog": dict(image_size=64, width=0.5, steps=2000),
                "lbp": dict(image_size=64, width=0.5, steps=2000, pool_size=0),
                "sift": dict(image_size=64, width=0.25, steps=2000, pool_size=6400),
                "cifar-ref": dict(image_size=32, width=0.5, steps=600)}
ACCELERATOR_DEFAULTS = {"hog": dict(image_size=256, width=1.0, steps=20000),
                        "lbp": dict(image_size=256, width=1.0, steps=20000, pool_size=64000),
                        # SIFT at 256 px fills ~5% of its 64x64x133 grid: 6400 crops take ~1.8 GiB (feature_pool)
                        "sift": dict(image_size=256, width=1.0, steps=20000, pool_size=6400),
                        "cifar-ref": dict(image_size=32, width=1.0, steps=5000)}


def default_settings(representation: str, backend: str | None = None) -> dict:
    """{image_size, width, steps[, pool_size]} for `representation` on `backend` (default: JAX's).
    Networks other than cifar-ref use their input size, width 0.5 and 2000 steps."""
    backend = backend or jax.default_backend()
    table = CPU_DEFAULTS if backend == "cpu" else ACCELERATOR_DEFAULTS
    key = representation if representation in table else representation.split(":", 1)[0]
    if key in table:
        return dict(table[key])
    if ":" not in representation:
        raise ValueError(f"unknown representation {representation!r}; valid: hog, lbp, sift or NET:LAYER")
    from jaxinv import nets
    return dict(image_size=nets.load(key).input_size, width=0.5, steps=2000)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (saved as OUTPUT_DIR/config.json)."""
    representation: str
    image_size: int
    width: float = 1.0
    steps: int = 2000
    batch_size: int = 64
    learning_rate: float = 1e-3
    decay_from: float = 0.0
    seed: int = 0
    finetune_encoder: bool = False
    pool_size: int = 0
    dataset: str | None = None
    max_train_images: int | None = None
    crops: str = "multiscale"  # ImageNet training crops: data.CROPS
    min_crop_scale: float = data.DEFAULT_MIN_CROP_SCALE
    validation_images: int | None = None  # None: data.DEFAULT_VALIDATION_IMAGES; 0: no validation
    cifar10_fraction: float = 0.0  # share of each ImageNet training batch drawn from CIFAR-10 (data module)
    validate_every: int = 100
    patience: int = 0  # validations without improvement before stopping early (0: never)

    def __post_init__(self):
        for name in ("image_size", "steps", "batch_size", "validate_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
        if not 0 <= self.decay_from <= 1:
            raise ValueError(f"decay_from must be a fraction of the steps in [0, 1]; got {self.decay_from}")
        if self.pool_size < 0:
            raise ValueError(f"pool_size must be >= 0; got {self.pool_size}")
        for name in ("learning_rate", "width"):
            arguments.check_positive(name, getattr(self, name))
        if self.max_train_images is not None and self.max_train_images < 1:
            raise ValueError(f"max_train_images must be >= 1 (or unset: every training image); "
                             f"got {self.max_train_images}")
        arguments.check_seed(self.seed)
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 validations; got {self.patience}")
        if self.crops not in data.CROPS:
            raise ValueError(f"unknown crops {self.crops!r}; valid: {', '.join(data.CROPS)}")
        if not 0 < self.min_crop_scale <= 1:
            raise ValueError(f"min_crop_scale must be in (0, 1]; got {self.min_crop_scale}")
        if self.validation_images is not None and self.validation_images < 0:
            raise ValueError(f"validation_images must be >= 0 (0: none); got {self.validation_images}")
        data.check_cifar10_fraction(self.cifar10_fraction, self.dataset_name)

    @property
    def dataset_name(self) -> str:
        return self.dataset or data.default_dataset(self.representation)
