"""The validation split of an inverter's training run: its image error for given parameters (the model
selection metric of `jaxinv.inverters.training`), the history written at every validation
(OUTPUT_DIR/validation.json) and its plot against the steps (OUTPUT_DIR/validation.png)."""
from __future__ import annotations

import os

import numpy as np

from jaxinv.io import outputs
from jaxinv.inverters import data, features
from jaxinv.inverters import metrics as inverter_metrics
from jaxinv.inverters.model import Inverter

VALIDATION_FILE = "validation.json"
VALIDATION_PLOT = "validation.png"


class Validation:
    """The validation split of a run and its image error for given parameters: grey for representations of
    the grey image (as the comparisons with grey-only methods report it), colour otherwise."""

    def __init__(self, config, feature, source: data.ImageSource, family: str, feature_shape: tuple,
                 compute: bool = True):
        self.images, self.names = source.validation_images()
        self.grey = feature.channels == 1
        self.metric = "image_error_grey" if self.grey else "image_error"
        self._config, self._family, self._feature_shape = config, family, feature_shape
        # Fixed encoders: the validation features once (host features such as SIFT are slow).
        self._features = None if config.finetune_encoder or not len(self.images) or not compute else np.concatenate(
            [features.compute(feature, self.images[i:i + 64]) for i in range(0, len(self.images), 64)])

    def __len__(self) -> int:
        return len(self.images)

    def errors(self, params, scale) -> dict:
        """{image_error, image_error_grey} of `params` on the validation images."""
        inverter = Inverter(representation=self._config.representation, image_size=self._config.image_size,
                            family=self._family, feature_shape=self._feature_shape, width=self._config.width,
                            params=params, feature_scale=float(scale))
        out = inverter.invert_images(self.images) if self._features is None else inverter(self._features)
        return inverter_metrics.colour_and_grey_errors(out, self.images)


def read_history(output_dir: str) -> list[dict]:
    """The validation history of the run in `output_dir` (OUTPUT_DIR/validation.json), oldest first."""
    path = os.path.join(output_dir, VALIDATION_FILE)
    return outputs.read_json(path)["history"] if os.path.isfile(path) else []


def plot_validation(history: list[dict], path: str, metric: str, title: str = "") -> str:
    """Validation image error (the selection metric, and colour when that is grey) and the mean training
    loss against the steps, the best step marked."""
    plt = outputs.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    steps = [h["step"] for h in history]
    names = [metric] + (["image_error"] if metric != "image_error" else [])
    for name in names:
        ax.plot(steps, [h[name] for h in history], marker=".",
                label=f"validation {'grey' if name.endswith('grey') else 'colour'} image error")
    best = min(history, key=lambda h: h[metric])
    ax.axvline(best["step"], color="grey", ls=":", label=f"best: {best[metric]:.3f} at step {best['step']}")
    ax.set_xlabel("step")
    ax.set_ylabel("normalised image error")
    ax.grid(alpha=0.3)
    loss_axis = ax.twinx()
    loss_axis.plot(steps, [h["train_rms"] for h in history], color="tab:red", alpha=0.5, lw=1,
                   label="training RMS error (grey levels)")
    loss_axis.set_ylabel("training RMS error (grey levels, mean since last point)")
    lines = ax.get_legend_handles_labels()
    more = loss_axis.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)
    ax.set_title(title, fontsize=9)
    return outputs.save_figure(path, fig)
