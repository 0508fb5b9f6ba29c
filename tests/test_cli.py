"""jaxinv.io.cli: the shared flags, declared once, and the flag readers, on a private FlagValues."""
import pytest
from absl import flags

from jaxinv.io import cli


@pytest.fixture
def values():
    return flags.FlagValues()


def test_shared_flags_take_each_binary_default_and_redeclaring_agrees(values):
    cli.define_output_dir("outputs/x", flag_values=values)
    cli.define_iterations(20, 5, flag_values=values)
    cli.define_seed(flag_values=values)
    cli.define_restarts(None, flag_values=values)
    cli.define_net(flag_values=values)
    cli.define_data_dir(flag_values=values)
    cli.define_images_dir(flag_values=values)
    values(["prog", "--refine_iterations=0", "--seed=3"])
    assert values.output_dir == "outputs/x" and values.iterations == 20 and values.refine_iterations == 0
    assert values.seed == 3 and values.restarts is None and values.net == "cifar-ref" and values.data_dir is None
    cli.define_output_dir("outputs/x", flag_values=values)  # the same default again: a no-op
    with pytest.raises(ValueError, match="--output_dir is already declared with default 'outputs/x'"):
        cli.define_output_dir("outputs/y", flag_values=values)


def test_stages_and_int_list(values):
    cli.define_iterations(flag_values=values)
    flags.DEFINE_list("units", None, "", flag_values=values)
    values(["prog", "--iterations=7", "--refine_iterations=2", "--units=3,5"])
    first, second = cli.stages(values)
    assert (first.iterations, second.iterations) == (7, 2) and second.step_scale == pytest.approx(0.1) and not second.jitter
    assert cli.int_list("units", values) == (3, 5)
    values["units"].value = ["3", "x"]
    with pytest.raises(ValueError, match="--units must be a list of integers; got 3,x"):
        cli.int_list("units", values)
    values["iterations"].value = -1
    with pytest.raises(ValueError, match="iterations must be >= 0"):
        cli.stages(values)
