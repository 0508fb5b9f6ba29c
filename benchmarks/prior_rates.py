"""Does Algorithm 1's rate rule carry over to other parameterisations? (docs/priors.md)

    python -m benchmarks.prior_rates

Inverts cifar-ref conv3 and fc6 codes of 2 CIFAR-10 test images (2 restarts each, 100 + 50
iterations) with the papers' eta0 = 0.05 B^2/alpha x pixels and the rate times s in both stages,
for pixels (the paper's energy), Fourier + decorrelated colour and the pool3 decoder (both without
R_alpha and R_TV, as in the priors study); prints the mean Eq. 3 error. Needs the trained pool3
inverter (`python -m experiments.train_inverter --representation=cifar-ref:pool3`).
"""
import dataclasses
import time

from jaxinv import inverters, models, nets
from jaxinv.engine import image_prior, preimage
from jaxinv.engine import parameterisation as P
from jaxinv.inverters import model as inverter_model
from jaxinv.io import datasets
from jaxinv.methods import inversion

SCALES = (0.3, 1.0, 3.0)


def main():
    model = nets.load("cifar-ref")
    reference, _ = datasets.reference_images(model, 2)
    decoder = inverter_model.load(inverters.default_dir("cifar-ref:pool3", 32))
    for layer in ("conv3", "fc6"):
        rep = models.representation(model, layer)
        problem = models.inversion_problem(model, layer)
        settings = [("pixels", problem, None),
                    ("fourier+colour", problem, image_prior.Prior(P.chain(P.Fourier(1.0), P.DecorrelatedColour()),
                                                                  regularisers=False)),
                    ("decoder", dataclasses.replace(problem, jitter=1),
                     image_prior.Prior(inverter_model.decoder_parameterisation(decoder, rep.mean), regularisers=False))]
        for name, problem_k, prior in settings:
            for s in SCALES:
                began = time.perf_counter()
                result = inversion.invert_images(rep, list(reference), problem=problem_k, restarts=2, prior=prior,
                                                 stages=(preimage.Stage(100, s, True), preimage.Stage(50, 0.1 * s, False)))
                print(f"{layer} {name:15s} s={s:<4} error {result.errors.mean():.3f}  "
                      f"{time.perf_counter() - began:.1f} s", flush=True)


if __name__ == "__main__":
    main()
