"""The library map and the architecture page list what the package holds, each exactly once."""
import pkgutil
import re
from pathlib import Path

import jaxinv

ROOT = Path(__file__).resolve().parents[1]


def public_modules(packages: bool | None = None) -> list[str]:
    """Public modules of jaxinv; only packages (True) or only plain modules (False) if asked."""
    return sorted(m.name for m in pkgutil.walk_packages(jaxinv.__path__, "jaxinv.")
                  if not m.name.rsplit(".", 1)[-1].startswith("_") and (packages is None or m.ispkg == packages))


def table_modules(text: str) -> list[str]:
    return re.findall(r"(?m)^\| `(jaxinv[\w.]*)` \|", text)


def test_architecture_page_lists_every_module_once():
    listed = table_modules((ROOT / "docs" / "architecture.md").read_text())
    modules = public_modules(packages=False)
    assert sorted(listed) == sorted(set(listed)), "listed twice"
    assert sorted(listed) == modules


def test_readme_library_map_lists_every_package_once():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Library map"):]
    section = section[:section.index("\n## ", 1)]
    listed = table_modules(section)
    top_level = sorted(m for m in public_modules() if m.count(".") == 1)
    assert sorted(listed) == top_level
    assert "docs/architecture.md" in section


def test_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Documentation"):]
    for page in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "docs" / "tutorial.ipynb"]:
        assert f"](docs/{page.name})" in section, f"README's Documentation table does not link docs/{page.name}"
