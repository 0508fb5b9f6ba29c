"""The README's code blocks, for the tests that execute them."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    """The first ```python block after `heading` (e.g. "## In Python") in the README."""
    readme = README.read_text()
    section = readme[readme.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)
