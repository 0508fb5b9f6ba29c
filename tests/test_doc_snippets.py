"""Every snippet of README.md and docs/*.md works: python blocks run, commands name what exists, links resolve.

- Each ```python block is executed, a page's blocks in order in one namespace, from an empty folder
  (pages whose blocks take minutes on a CPU are `slow`). The two README-style examples with their own
  assertions run in their own tests (RUN_ELSEWHERE) and are not run twice.
- Each shell command (```bash / ```sh / ``` lines and inline `python -m ...`, `jaxinv-...`, `make ...`) is
  checked without running it: the module, console script or make target exists and defines every --flag.
- Each relative link or image, and each inline repository path, exists.
The reading and checking is in tests/doc_blocks.py.
"""
import re

import pytest

from tests import doc_blocks

# (page, heading of the block) -> the test that runs it with its own assertions, via doc_blocks.python_block.
RUN_ELSEWHERE = {
    ("README.md", "## In Python"): "tests/test_api.py",
    ("docs/your_own_model.md", "# Your own model"): "tests/test_adapters.py",
}
# Pages whose blocks take minutes on this CPU (many optimisations of 300 + 50 iterations): `make test-slow`.
SLOW_PAGES = {"docs/deep_visualisation.md"}


def blocks_to_run(page: str) -> list:
    return [b for b in doc_blocks.python_blocks(page) if (page, b.heading) not in RUN_ELSEWHERE]


PYTHON_PAGES = [pytest.param(page, marks=[pytest.mark.slow] if page in SLOW_PAGES else [], id=page)
                for page in doc_blocks.pages() if blocks_to_run(page)]
PAGES = [pytest.param(page, id=page) for page in doc_blocks.pages()]


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__doc__"}
    for block in blocks_to_run(page):
        try:
            exec(compile("\n" * (block.line - 1) + block.code, page, "exec"), namespace)
        except FileNotFoundError as e:
            if "data" in str(e).lower():
                pytest.skip(f"{page}:{block.line} needs the data folder: {e}")
            raise


@pytest.mark.parametrize("key", list(RUN_ELSEWHERE), ids=lambda key: f"{key[0]} {key[1]}")
def test_blocks_run_elsewhere_are_the_blocks_those_tests_read(key):
    page, heading = key
    source = (doc_blocks.ROOT / RUN_ELSEWHERE[key]).read_text()
    call = f'python_block("{heading}"' + ("" if page == "README.md" else f', "{page}"')
    assert call in source, f"{RUN_ELSEWHERE[key]} no longer runs the block under {heading!r} of {page}"
    block, = [b for b in doc_blocks.python_blocks(page) if b.heading == heading]
    assert doc_blocks.python_block(heading, page) == block.code


def test_every_page_with_python_has_its_blocks_run():
    for page in doc_blocks.pages():
        for block in doc_blocks.python_blocks(page):
            assert (page, block.heading) in RUN_ELSEWHERE or block in blocks_to_run(page)


@pytest.mark.parametrize("page", PAGES)
def test_commands_name_existing_binaries_and_flags(page):
    assert doc_blocks.page_command_problems(page) == []


@pytest.mark.parametrize("page", PAGES)
def test_links_and_paths_exist(page):
    assert doc_blocks.link_problems(page) == []


def test_the_documentation_has_commands_to_check():
    """The reader finds the commands (a broken parser would check nothing and pass)."""
    readme = [c for c, _ in doc_blocks.commands(doc_blocks.read("README.md"))]
    assert "make demo" in readme and "make test" in readme
    total = sum(len(doc_blocks.commands(doc_blocks.read(p))) for p in doc_blocks.pages())
    assert total >= 80
    flagged = [c for p in doc_blocks.pages() for c, _ in doc_blocks.commands(doc_blocks.read(p)) if "--" in c]
    assert len(flagged) >= 30


BROKEN = """# A page with rot

```bash
jaxinv-invert --representation=hog --restart=4   # renamed flag (it is --restarts)
python -m experiments.shallow_table \\
  --num_images=2 --nosuch_switch
make demo && make nonsense
```

```
python -m benchmarks.features --size=512 --sizes=3
```

Run `python -m experiments.gone --output_dir=DIR`, then `jaxinv-visualise --mode=layers --nett=DIR`,
`jaxinv-nonexistent`, `python -m weights_conversion.convert --format=torch --archh=x` and `jaxinv-invert --noC`
(C is not a boolean), `python -m tests.bad_inputs --onlyy=x`, `--no_such_flag` alone, and
`python -c "from jaxinv.inverters import shipped; shipped.shipp('DIR')"`.
Fine: `jaxinv-invert --nocompilation_cache --restarts=2`, `python -m experiments.NAME`, `jaxinv-NAME`, `--patience`.

![missing](no_such_figure.png) [a page](no_such_page.md) [a heading](architecture.md#no-such-heading)
[fine](architecture.md#packages) ![fine](shallow_table.png) `tests/test_gone.py` `jaxinv/missing/module.py`
"""


def test_the_checks_fail_on_broken_snippets():
    commands = doc_blocks.page_command_problems("docs/broken.md", BROKEN)
    expected = ["--restart is not a flag of jaxinv.binaries.invert",
                "--nosuch_switch is not a flag of experiments.shallow_table",
                "no make target nonsense",
                "--sizes is not a flag of benchmarks.features",
                "no module experiments.gone",
                "--nett is not a flag of jaxinv.binaries.visualise",
                "no console script jaxinv-nonexistent",
                "--archh is not a flag of weights_conversion.convert",
                "--noC is not a flag of jaxinv.binaries.invert",
                "--onlyy is not a flag of tests.bad_inputs",
                "--no_such_flag is not a flag of any binary",
                "shipped.shipp does not exist"]
    for message in expected:
        assert sum(message in p for p in commands) == 1, (message, commands)
    assert len(commands) == len(expected), commands
    assert any(p.startswith("docs/broken.md:4:") and "--restart " in p for p in commands)  # where it is

    links = doc_blocks.link_problems("docs/broken.md", BROKEN)
    for message in ["no_such_figure.png: no such file", "no_such_page.md: no such file",
                    "architecture.md#no-such-heading: no heading", "`tests/test_gone.py`: no such file",
                    "`jaxinv/missing/module.py`: no such file"]:
        assert sum(message in p for p in links) == 1, (message, links)
    assert len(links) == 5, links


def test_code_and_comments_in_blocks_are_not_read_as_prose():
    text = "# T\n\n```python\n# not a heading\nx = '`jaxinv-nope --x`'\n```\n\n## After\n```python\ny = 1\n```\n"
    blocks = doc_blocks.blocks(text)
    assert [b.heading for b in blocks] == ["# T", "## After"] and [b.line for b in blocks] == [4, 10]
    assert doc_blocks.commands(text) == [] and doc_blocks.heading_anchors(text) == {"t", "after"}
    assert re.search("x = ", blocks[0].code)


def test_readme_names_every_console_script():
    installing = doc_blocks.read("README.md").split("## Installing", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(jaxinv-[a-z-]+)`", installing))
    assert named == set(doc_blocks.console_scripts())
