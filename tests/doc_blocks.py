"""The code blocks of README.md and docs/*.md, for the tests that execute or check them."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_block(heading: str, page: str = "README.md") -> str:
    """The first ```python block after `heading` (e.g. "## In Python") in `page` (relative to the repository)."""
    text = (ROOT / page).read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)
