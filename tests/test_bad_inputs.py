"""docs/bad_inputs.md is current (it lists every case of tests.bad_inputs, each a clear error) and a reduced run of
the generator (every library call, a few binaries) still gets a clear error for each."""
import pytest

from tests import bad_inputs

# Binary cases rerun here: a hang (named pipe), the output checks, a late check, a conversion.
RERUN = ("invert --image=<named pipe>", "invert --output_dir=<a file>", "invert into a folder another run writes",
         "deep_studies --figure_images=0", "convert a .pth with NaN weights")


def committed() -> str:
    with open(bad_inputs.TABLE) as f:
        return f.read()


def test_the_committed_table_lists_every_case_in_order():
    assert bad_inputs.listed_cases(committed()) == [case.name for case in bad_inputs.CASES], \
        "docs/bad_inputs.md is out of date: run python -m tests.bad_inputs"


def test_every_committed_row_is_a_clear_error():
    text = committed()
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows and all(" | clear error | " in row for row in rows), [r for r in rows if "clear error" not in r]
    assert f"**{len(rows)} tried: {len(rows)} clear errors, 0 other**" in text


def test_a_reduced_run_gets_clear_errors():
    assert set(RERUN) <= {case.name for case in bad_inputs.BINARY_CASES}
    cases = bad_inputs.API_CASES + [case for case in bad_inputs.BINARY_CASES if case.name in RERUN]
    if "convert a .pth with NaN weights" in RERUN:
        pytest.importorskip("torch")
    results = bad_inputs.run_cases(cases, log=lambda line: None)
    assert [(case.name, outcome.kind) for case, outcome in results if outcome.kind != "clear error"] == []
    table = bad_inputs.table(results)
    assert bad_inputs.listed_cases(table) == [case.name for case in cases]
