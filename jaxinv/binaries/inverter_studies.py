"""Dosovitskiy & Brox (CVPR 2016) Sects. 5.4-5.5 on the reference network's trained inverters:
robustness of the features (binarisation, dropout), fc8's top-k, interpolation, random feature
vectors, and the autoencoder comparison (decoder trained jointly with a fine-tuned encoder).

    jaxinv-inverter-studies --net=cifar-ref --layers=pool1,pool2,pool3,relu6,relu7,fc8

Inverters come from the default checkpoint locations (see `jaxinv.inverters`) or --inverters_dir;
a missing one stops the run naming the command that trains it. Writes OUTPUT_DIR/results.json
(normalised image errors per study, perturbation and layer), errors.png, autoencoder.png,
labelled grids (perturbations_LAYER.png, fc8_topk.png, interpolation_PAIR.png, random_SAMPLER.png,
autoencoder_grid.png) and index.html. The studies: `jaxinv.studies.deep_networks.inverter_layers`.
"""
from __future__ import annotations

from absl import flags

from jaxinv.io import cli
from jaxinv.studies import inverter_layers

D = inverter_layers.StudyConfig()
FLAGS = flags.FLAGS
cli.define_net(D.net)
flags.DEFINE_list("layers", list(D.layers), "layers, in network order "
                  "(post-ReLU ones: the paper's AlexNet features are taken after its in-place ReLUs)")
flags.DEFINE_string("inverters_dir", None, "folder holding the trained inverters (default: jaxinv.inverters' "
                    "default checkpoint folder)")
flags.DEFINE_bool("autoencoder", D.autoencoder, "also evaluate the autoencoder variants (decoder trained with a "
                  "fine-tuned encoder)")
flags.DEFINE_integer("num_images", D.num_images, "held-out CIFAR-10 test images (evenly spaced over the sorted set)")
flags.DEFINE_integer("grid_images", D.grid_images, "columns of the perturbation grids")
flags.DEFINE_integer("fit_images", D.fit_images, "training images the random-feature distributions are fitted to")
flags.DEFINE_integer("random_samples", D.random_samples, "random feature vectors decoded per layer and sampler "
                     "(the grids show the first --grid_images)")
flags.DEFINE_integer("histogram_bins", D.histogram_bins, "bins of the per-dimension histograms (non-zero values)")
flags.DEFINE_integer("interpolation_pairs", D.interpolation_pairs, "image pairs interpolated")
flags.DEFINE_integer("interpolation_steps", D.interpolation_steps, "values of t, evenly spaced in [0, 1]")
flags.DEFINE_list("top_k", [str(k) for k in D.top_k], "fc8 study: keep only / zero the top-k activations, for each "
                  "k (the paper: 5 of ImageNet's 1000 classes; cifar-ref has 10)")
flags.DEFINE_integer("batch_size", D.batch_size, "images encoded/decoded per call")
cli.define_seed("seed of dropout and of the random feature vectors")
cli.define_data_dir()
cli.define_output_dir("outputs/inverter_studies", "where results, figures and index.html go")
flags.adopt_module_key_flags(cli)  # the shared flags show in --help

def main(argv):
    del argv
    cli.hold_output(FLAGS.output_dir)  # refused if another run writes there; fails now if it cannot be written
    config = inverter_layers.StudyConfig(
        layers=tuple(FLAGS.layers or ()), top_k=cli.int_list("top_k"),
        **{name: FLAGS[name].value for name in ("net", "inverters_dir", "autoencoder", "num_images", "grid_images",
                                                "fit_images", "random_samples", "histogram_bins",
                                                "interpolation_pairs", "interpolation_steps", "batch_size", "seed",
                                                "data_dir")})
    study = inverter_layers.run(config, log=lambda line: print(line, flush=True))
    written = inverter_layers.write_outputs(study, FLAGS.output_dir)
    print(f"wrote {written['results']}\nwrote {written['index']} ({study.results['seconds']:.0f} s)")


def run():
    """The console script jaxinv-inverter-studies."""
    cli.run(main)


if __name__ == "__main__":
    run()
