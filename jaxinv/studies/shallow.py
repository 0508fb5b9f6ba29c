"""The shallow-representation inversion study (IJCV Table 2, CVPR 2015 Table 1)."""
from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import numpy as np

from jaxinv import representations
from jaxinv.io import images, outputs
from jaxinv.methods import inversion, metrics

PAPER_IJCV_TABLE2 = {"hog": 0.366, "hogb": 0.116, "dsift": 0.094}
PAPER_CVPR_TABLE1 = {"hog": 0.281, "hogb": 0.107, "dsift": 0.109}


def load_grey_images(paths: Sequence[str], size: int) -> list[np.ndarray]:
    """Grey size x size centre crops in [0, 255], as the papers invert grey images."""
    return [images.load_image(p, grey=True, size=size) for p in paths]


def invert_in_batches(name: str, grey_images: Sequence[np.ndarray], *, batch_size: int, restarts: int,
                      stages, C: float, cache_dir: str | None = None,
                      log: Callable[[str], None] = print) -> dict:
    """Inverts `name` of every image, `batch_size` images per vmapped run; a finished batch is
    cached in `cache_dir` (atomically) so an interrupted study resumes where it stopped.

    Returns arrays over images: errors (N, K), codes (N, K, ...), targets (N, ...), reconstructions
    (N, K, H, W) and the solver's seconds.
    """
    representation = representations.get(name)
    problem = inversion.shallow_problem(C)
    parts = []
    for start in range(0, len(grey_images), batch_size):
        batch = grey_images[start:start + batch_size]
        path = cache_dir and os.path.join(cache_dir, f"{name}_{start:05d}_{len(batch)}.npz")
        if path and os.path.exists(path):
            with np.load(path) as cached:
                parts.append(dict(cached))
            log(f"  {name}: images {start}-{start + len(batch) - 1} loaded from {path}")
            continue
        began = time.perf_counter()
        result = inversion.invert_images(representation, batch, problem=problem, restarts=restarts, stages=stages)
        part = {"errors": result.errors, "codes": result.codes, "targets": result.target_codes,
                "reconstructions": result.images, "seconds": np.float64(time.perf_counter() - began)}
        if path:
            outputs.atomic_write(path, lambda tmp: np.savez(tmp, **part), ".npz")
        parts.append(part)
        log(f"  {name}: images {start}-{start + len(batch) - 1}: mean error {result.errors.mean():.3f} "
            f"({part['seconds']:.1f} s)")
    joined = {key: np.concatenate([p[key] for p in parts]) for key in ("errors", "codes", "targets", "reconstructions")}
    joined["seconds"] = float(sum(p["seconds"] for p in parts))
    return joined


def summarise(study: dict) -> dict:
    """Table entries: mean IJCV error over images with its 95% CI, CVPR error, seconds per image."""
    per_image = study["errors"].mean(axis=1)
    mean, ci = metrics.mean_with_ci95(per_image)
    num = len(per_image)
    cvpr = np.mean([metrics.cvpr_errors(study["codes"][:, k], study["targets"]).mean()
                    for k in range(study["codes"].shape[1])]) if num > 1 else float("nan")
    return {"mean_error": mean, "ci95": ci, "cvpr_error": float(cvpr),
            "seconds_per_image": study["seconds"] / num, "num_images": num}
