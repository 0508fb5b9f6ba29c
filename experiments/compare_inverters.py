"""Learned HOG inverter against optimisation-based inversion and HOGgle (Dosovitskiy & Brox, CVPR 2016,
Table 2) on held-out images.

    python -m experiments.compare_inverters --representation=hog --num_images=50 --output_dir=DIR

Images: the test split of the ImageNet samples (the last 50 sorted files, never trained on; the
first --num_images of them) at the inverter's size (shorter side resized, centre crop), or with
--split=all the first --num_images files of --images_dir. Methods, all from HOG (cell 8) of the grey
(luma) image:

- learned: the trained inverter (--inverter_dir, default `jaxinv.inverters.default_dir`);
- optimisation: `jaxinv.methods.inversion.invert_images(representations.get('hog'), grey,
  problem=shallow_problem(--C), stages=default_stages(--iterations, --refine_iterations))`,
  batches cached in DIR/cache (a rerun resumes);
- hoggle: `jaxinv.inverters.hoggle.invert_hogs` with the paired dictionary --hoggle_dictionary
  (--skip_hoggle leaves it out);
- baselines that use no feature (`jaxinv.inverters.flat_baseline_errors`): the mean test image, and
  each image's own mean grey level (an oracle: LBP and SIFT do not encode brightness).

For --representation=lbp or sift only the learned inverter and the baselines are evaluated.

Seconds per image are wall-clock times including compilation (see benchmarks/inverters.py for
warm timings). Errors (`jaxinv.inverters.image_error`): mean ||x_i - x*_i|| / N, N the mean distance between the
test images, on grey versions (HOG methods cannot recover colour); the learned inverter's colour
error is reported beside it. Writes DIR/results.json ({"learned": {"image_error", ...},
"optimisation": {...}, "hoggle": {...}, "baselines": {...}}), DIR/per_image.json and DIR/figure.png (rows = images;
columns original | learned | optimisation | HOGgle).
"""
from __future__ import annotations

import os
import time

import numpy as np
from absl import flags, logging

from jaxinv.engine import preimage
from jaxinv.inverters import hoggle
from jaxinv.io import cli, images, outputs
from jaxinv.methods import metrics
from jaxinv.studies import shallow
from jaxinv import inverters
from jaxinv.inverters import data, features as inverter_features

FLAGS = flags.FLAGS
flags.DEFINE_string("representation", "hog", "the representation (optimisation and HOGgle exist for hog only)")
flags.DEFINE_string("inverter_dir", None, "trained inverter (default: jaxinv.inverters.default_dir(representation, size))")
flags.DEFINE_integer("size", None, "image size (default: 64, or the inverter's when --inverter_dir is given)")
flags.DEFINE_string("images_dir", None, "folder of images (default: ../shared/data/imagenet_samples)")
flags.DEFINE_enum("split", "test", ["test", "all"], "test: the last 50 sorted files (held out); all: every file")
flags.DEFINE_integer("num_images", 50, "the first N images of the split")
flags.DEFINE_float("C", 100.0, "optimisation: weight of the representation loss (IJCV Sect. 5.1)")
flags.DEFINE_integer("iterations", 300, "optimisation: iterations of the first stage")
flags.DEFINE_integer("refine_iterations", 50, "optimisation: iterations at a tenth of the rate")
flags.DEFINE_integer("batch_size", 10, "optimisation: images inverted together (vmapped)")
flags.DEFINE_bool("skip_optimisation", False, "leave out optimisation-based inversion")
flags.DEFINE_bool("skip_hoggle", False, "leave out HOGgle")
flags.DEFINE_string("hoggle_dictionary", None, "HOGgle paired dictionary (default: ~/.cache/jaxinv/hoggle/dictionary.npz)")
flags.DEFINE_integer("figure_images", 8, "rows of the figure")
flags.DEFINE_string("output_dir", "outputs/compare_inverters", "where results.json, per_image.json, figure.png go")

# Dosovitskiy & Brox (CVPR 2016) Table 2, 256x256: HOG inverted by HOGgle and by optimisation; learned inverters.
PAPER_TABLE2 = {"hoggle": 0.61, "optimisation": 0.63, "learned": {"hog": 0.24, "sift": 0.28, "lbp": 0.38}}


def paper_value(method: str) -> float | None:
    value = PAPER_TABLE2[method]
    return value.get(FLAGS.representation) if isinstance(value, dict) else value
HOG_ONLY = ("optimisation", "hoggle")
DEFAULT_SIZE = 64


def load_test_images(size: int) -> tuple[np.ndarray, list[str]]:
    if FLAGS.split == "test":
        _, paths = data.imagenet_split(FLAGS.images_dir)
    else:
        paths = images.imagenet_sample_paths(FLAGS.images_dir)
    paths = paths[:FLAGS.num_images]
    if len(paths) < 2:
        raise ValueError(f"the image error needs at least 2 images; {len(paths)} selected")
    return np.stack([images.load_image(p, size=size) for p in paths]), [os.path.basename(p) for p in paths]


def load_hoggle_dictionary() -> hoggle.PairedDictionary:
    """The HOGgle paired dictionary, checked before any inversion runs."""
    path = FLAGS.hoggle_dictionary or hoggle.default_dictionary_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"HOGgle dictionary not found: {path} (train one, pass --hoggle_dictionary, "
                                f"or rerun with --skip_hoggle)")
    return hoggle.PairedDictionary.load(path)


def hoggle_inversions(dictionary, grey: np.ndarray) -> np.ndarray:
    codes = inverter_features.compute(inverter_features.representation("hog"), grey)
    return hoggle.invert_hogs(dictionary, codes, grey.shape[1:])  # one lasso solve for all images


def summary(per_image: np.ndarray, **extra) -> dict:
    mean, ci = metrics.mean_with_ci95(per_image)
    return dict(image_error=mean, ci95=ci, **extra)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    dictionary = None
    if FLAGS.representation == "hog" and not FLAGS.skip_hoggle:
        dictionary = load_hoggle_dictionary()
    size = FLAGS.size or DEFAULT_SIZE
    inverter_dir = FLAGS.inverter_dir or inverters.default_dir(FLAGS.representation, size)
    inverter = inverters.load(inverter_dir)
    if inverter.representation != FLAGS.representation:
        raise ValueError(f"{inverter_dir} inverts {inverter.representation!r}, not {FLAGS.representation!r}")
    if FLAGS.size and FLAGS.size != inverter.image_size:
        raise ValueError(f"{inverter_dir} makes {inverter.image_size}x{inverter.image_size} images, not --size={FLAGS.size}")
    size = inverter.image_size
    colour, names = load_test_images(size)
    grey = images.to_grey(colour)
    print(f"{len(names)} images of {size}x{size} ({FLAGS.split} split); inverter {inverter_dir} "
          f"({inverter.metadata.get('steps')} steps)", flush=True)

    start = time.perf_counter()
    learned = inverter.invert_images(colour)
    learned_seconds = time.perf_counter() - start
    reconstructions = {"learned": learned}
    errors = {"learned": inverters.image_errors(learned, colour, grey=True),
              "learned_colour": inverters.image_errors(learned, colour)}
    results = {"learned": summary(errors["learned"], image_error_colour=float(errors["learned_colour"].mean()),
                                  seconds_per_image=learned_seconds / len(names))}
    baselines = inverters.flat_baseline_errors(colour, grey=True)
    results["baselines"] = {name: summary(values) for name, values in baselines.items()}
    skipped = {"optimisation": FLAGS.skip_optimisation, "hoggle": FLAGS.skip_hoggle}
    for method in HOG_ONLY:
        if FLAGS.representation != "hog" or skipped[method]:
            reason = "skipped by flag" if skipped[method] else f"exists for hog only, not {FLAGS.representation!r}"
            results[method] = {"image_error": None, "skipped": reason}
            continue
        start = time.perf_counter()
        if method == "optimisation":
            study = shallow.invert_in_batches(
                "hog", list(grey), batch_size=FLAGS.batch_size, restarts=1, C=FLAGS.C,
                stages=preimage.default_stages(FLAGS.iterations, FLAGS.refine_iterations),
                cache_dir=os.path.join(FLAGS.output_dir, "cache"))
            reconstructions[method] = study["reconstructions"][:, 0]
        else:
            reconstructions[method] = hoggle_inversions(dictionary, grey)
        errors[method] = inverters.image_errors(reconstructions[method], grey, grey=True)
        results[method] = summary(errors[method], seconds_per_image=(time.perf_counter() - start) / len(names))

    for method in ("learned", *HOG_ONLY):
        line = f"{method:13s} "
        line += ("skipped (" + results[method]["skipped"] + ")" if results[method]["image_error"] is None else
                 f"image error {results[method]['image_error']:.3f} +- {results[method]['ci95']:.3f} (grey)")
        if method == "learned":
            line += f", {results[method]['image_error_colour']:.3f} (colour)"
        paper = paper_value(method)
        print(line + (f"   paper (256x256): {paper:.2f}" if paper is not None and results[method]["image_error"] is not None else ""))

    for name, entry in results["baselines"].items():
        print(f"baseline: {name:15s} image error {entry['image_error']:.3f} +- {entry['ci95']:.3f} (grey, no feature used)")

    results.update(representation=FLAGS.representation, num_images=len(names), size=size, split=FLAGS.split,
                   inverter_dir=os.path.abspath(inverter_dir), inverter_metadata=inverter.metadata,
                   optimisation_settings=dict(C=FLAGS.C, iterations=FLAGS.iterations,
                                              refine_iterations=FLAGS.refine_iterations),
                   error="mean ||x - x*|| / mean pairwise distance of the test images, grey (luma) versions",
                   paper_table2={m: paper_value(m) for m in PAPER_TABLE2})
    per_image = {"images": names, **{k: v.tolist() for k, v in errors.items()}}
    results_path = outputs.write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
    outputs.write_json(os.path.join(FLAGS.output_dir, "per_image.json"), per_image)
    columns = ["original", *reconstructions]
    rows = [[colour[i]] + [reconstructions[m][i] for m in reconstructions] for i in range(min(FLAGS.figure_images, len(names)))]
    figure = images.save_image(os.path.join(FLAGS.output_dir, "figure.png"),
                               images.image_grid(rows, tile=(max(size, 128), max(size, 128))))
    print(f"wrote {results_path}, per_image.json and {figure} (columns: {' | '.join(columns)})")


if __name__ == "__main__":
    cli.run(main)
