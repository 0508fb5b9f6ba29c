"""The code blocks, commands and links of README.md and docs/*.md, for the tests that execute or check them.

One place reads the documentation: `python_block` (one ```python block by heading), `python_blocks` (a page's
blocks in order), `commands` (every shell command of a page: the lines of ```bash / ```sh / ``` blocks and the
inline `python -m ...`, `jaxinv-...`, `make ...` spans of the prose), `links` (relative `[..](path)` and
`![..](path)` targets). `command_problems` and `link_problems` say what is wrong with a command or a link
without running anything: the module, console script or make target must exist and every `--flag` /
`--noflag` must be one the binary defines (absl flags, read by importing the binaries in one subprocess).
"""
from __future__ import annotations

import ast
import configparser
import dataclasses
import functools
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL = ("", "bash", "sh", "shell", "console")
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)?)`(?!`)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FLAG = re.compile(r"(?<![\w-])--([A-Za-z_]\w*)")
# Inline spans that are commands; anything else in backticks is prose.
COMMAND_START = re.compile(r"^(?:\S*python3?\s+-[mc]\s|\S*jaxinv-[a-z]|make\s+[a-z])")
# Inline spans that name a file of the repository.
REPO_PATH = re.compile(r"^(?:docs|tests|jaxinv|experiments|benchmarks|weights_conversion|\.ci)/[\w./-]+\.\w+$")
# Programs a shell block may run that are not jaxinv's (not checked).
OTHER_PROGRAMS = {"pip", "apt-get", "git", "cd", "export", "ls", "cat", "nice", "source"}


def pages() -> list[str]:
    """The documentation pages, relative to the repository: README.md, then docs/*.md."""
    return ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))


def read(page: str) -> str:
    return (ROOT / page).read_text()


@dataclasses.dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # of the block's first code line, 1-based
    heading: str  # the nearest heading above it ("" if none)


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, in order."""
    found = []
    for m in FENCE.finditer(text):
        before = text[:m.start()]
        headings = re.findall(r"(?m)^(#{1,6} .*)$", FENCE.sub("", before))
        found.append(Block(m.group(1), m.group(2), before.count("\n") + 2, headings[-1] if headings else ""))
    return found


def python_blocks(page: str) -> list[Block]:
    return [b for b in blocks(read(page)) if b.lang == "python"]


def python_block(heading: str, page: str = "README.md") -> str:
    """The first ```python block after `heading` (e.g. "## In Python") in `page` (relative to the repository)."""
    text = read(page)
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def prose(text: str) -> str:
    """The text with its fenced blocks blanked (line numbers kept)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def inline_spans(text: str) -> list[tuple[str, int]]:
    """(span, line) of the `inline code` of the prose; a span may wrap onto a second line."""
    body = prose(text)
    return [(" ".join(m.group(1).split()), body[:m.start()].count("\n") + 1) for m in INLINE.finditer(body)]


def _split(line: str) -> list[str]:
    """One shell line's commands (split at &&, ||, ; outside quotes), without its comment."""
    parts, current, quote, i = [], "", None, 0
    while i < len(line):
        ch = line[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (not current or current[-1].isspace()):
            break
        elif line.startswith(("&&", "||"), i) or ch == ";":
            parts.append(current)
            current, i = "", i + (1 if ch == ";" else 2)
            continue
        current += ch
        i += 1
    return [c.strip() for c in parts + [current] if c.strip()]


def commands(text: str) -> list[tuple[str, int]]:
    """(command, line) of every shell command of a page: block lines (continuations joined) and inline spans."""
    found = []
    for block in blocks(text):
        if block.lang not in SHELL:
            continue
        joined = re.sub(r"\\\n", " ", block.code)
        for i, line in enumerate(joined.splitlines()):
            found += [(c, block.line + i) for c in _split(line)]
    for span, line in inline_spans(text):
        if COMMAND_START.match(span):
            found += [(c, line) for c in _split(span)]
    return found


def bare_flags(text: str) -> list[tuple[str, int]]:
    """(flag, line) of inline spans that are a flag alone, e.g. `--nocompilation_cache` or `--crops=thumbnail`."""
    return [(FLAG.match(span).group(1), line) for span, line in inline_spans(text) if re.fullmatch(r"--\w+(=\S*)?", span)]


def repo_paths(text: str) -> list[tuple[str, int]]:
    """(path, line) of inline spans that name a repository file, e.g. `tests/test_deep.py`."""
    return [(span, line) for span, line in inline_spans(text) if REPO_PATH.match(span) and not re.search(r"<|\b[A-Z][A-Z_]+\b", span)]


def links(text: str) -> list[tuple[str, int]]:
    """(target, line) of the relative links and images of the prose."""
    body = prose(text)
    return [(m.group(1), body[:m.start()].count("\n") + 1) for m in LINK.finditer(body)
            if not re.match(r"^[a-z]+:", m.group(1))]


# ---------------------------------------------------------------------------------------------- what exists

@functools.cache
def console_scripts() -> dict[str, str]:
    """setup.cfg's console scripts: name -> module."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((name.strip(), target.split(":")[0].strip()) for name, target in (l.split("=") for l in lines))


@functools.cache
def make_targets() -> set[str]:
    return set(re.findall(r"(?m)^([\w.-]+):", (ROOT / "Makefile").read_text()))


def module_file(module: str) -> Path | None:
    path = ROOT / (module.replace(".", "/") + ".py")
    if path.is_file():
        return path
    spec = importlib.util.find_spec(module.split(".")[0])
    return Path(spec.origin) if spec is not None and "." not in module and spec.origin else None


def binary_of(module: str) -> str:
    """The module that defines a clone forwarder's flags (experiments.X -> jaxinv.binaries.X)."""
    path = module_file(module)
    m = re.search(r"^from (jaxinv\.binaries\.\w+) import run$", path.read_text(), re.M) if path else None
    return m.group(1) if m else module


def uses_absl_flags(module: str) -> bool:
    source = module_file(module).read_text()
    return "flags.DEFINE" in source or "cli.define" in source


_FLAGS_SCRIPT = r"""
import importlib, json, sys
from absl import app, flags, logging
from jaxinv.io import cli
FLAGS = flags.FLAGS
common = {n: isinstance(FLAGS[n], flags.BooleanFlag) for n in FLAGS}
out = {}
for module in sys.argv[1:]:
    if module in sys.modules:
        raise SystemExit(f"{module} was imported before its turn: its flags cannot be told apart")
    before = set(FLAGS)
    importlib.import_module(module)
    new = set(FLAGS) - before
    out[module] = dict(common, **{n: isinstance(FLAGS[n], flags.BooleanFlag) for n in new})
    for n in new:  # the next binary declares its own (binaries declare flags of one name each)
        delattr(FLAGS, n)
print(json.dumps(out))
"""


@functools.cache
def _absl_flags(modules: tuple[str, ...]) -> dict[str, dict[str, bool]]:
    done = subprocess.run([sys.executable, "-c", _FLAGS_SCRIPT, *modules], cwd=ROOT, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"})
    if done.returncode:
        raise RuntimeError(f"reading the binaries' flags failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def all_binaries() -> tuple[str, ...]:
    """Every module with absl flags a doc may name: jaxinv.binaries.* and the benchmarks."""
    mods = sorted(set(console_scripts().values()))
    mods += sorted(f"benchmarks.{p.stem}" for p in (ROOT / "benchmarks").glob("*.py")
                   if p.stem != "__init__" and uses_absl_flags(f"benchmarks.{p.stem}"))
    return tuple(mods)


def flags_of(module: str) -> dict[str, bool] | None:
    """name -> is boolean, for a module with absl flags; None for a module without (checked as text)."""
    module = binary_of(module)
    if not uses_absl_flags(module):
        return None
    table = _absl_flags(all_binaries())
    return table[module] if module in table else _absl_flags((module,))[module]


def flag_problems(where: str, names: list[str], module: str) -> list[str]:
    defined = flags_of(module)
    problems = []
    for name in names:
        if defined is None:  # argparse or sys.argv: the flag must at least be spelled in the source
            if f"--{name}" not in module_file(module).read_text():
                problems.append(f"{where}: --{name} is not a flag of {module}")
        elif not (name in defined or (name.startswith("no") and defined.get(name[2:]))):
            problems.append(f"{where}: --{name} is not a flag of {module}")
    return problems


def _python_c_problems(where: str, code: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [f"{where}: python -c code does not parse: {e}"]
    problems, names = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                try:
                    parent = importlib.import_module(node.module)
                    names[alias.asname or alias.name] = (getattr(parent, alias.name) if hasattr(parent, alias.name)
                                                         else importlib.import_module(f"{node.module}.{alias.name}"))
                except ImportError as e:
                    problems.append(f"{where}: from {node.module} import {alias.name}: {e}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
            if not hasattr(names[node.value.id], node.attr):
                problems.append(f"{where}: {node.value.id}.{node.attr} does not exist")
    return problems


def command_problems(command: str, where: str = "") -> list[str]:
    """What is wrong with one documented command, without running it ([] if nothing)."""
    where = where or command
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):  # VAR=value before the program
        tokens.pop(0)
    if tokens[:1] == ["nice"]:
        tokens = tokens[3:] if tokens[1:2] == ["-n"] else tokens[1:]
    if not tokens:
        return []
    program = tokens[0].rsplit("/", 1)[-1]
    if re.fullmatch(r"python3?|\$\(PY\)", program):
        if tokens[1:2] == ["-c"]:
            return _python_c_problems(where, tokens[2] if len(tokens) > 2 else "")
        if tokens[1:2] != ["-m"] or len(tokens) < 3:
            return [f"{where}: not a `python -m MODULE` or `python -c CODE` command"]
        module, rest = tokens[2], tokens[3:]
        if not re.fullmatch(r"[\w.]+", module) or re.search(r"\.(NAME|X)$|[A-Z]{2,}", module):
            return []  # a placeholder such as experiments.NAME
        if module == "pytest":
            return [f"{where}: {p} does not exist" for p in rest
                    if re.match(r"^tests/", p) and not (ROOT / p.split("::")[0]).exists()]
        if module_file(module) is None:
            return [f"{where}: no module {module}"]
        return flag_problems(where, FLAG.findall(" ".join(rest)), module)
    if program.startswith("jaxinv-"):
        if program == "jaxinv-NAME" or re.search(r"[A-Z]", program):
            return []  # the placeholder of the naming rule
        scripts = console_scripts()
        if program not in scripts:
            return [f"{where}: no console script {program} in setup.cfg"]
        return flag_problems(where, FLAG.findall(" ".join(tokens[1:])), scripts[program])
    if program == "make":
        targets = [t for t in tokens[1:] if not t.startswith("-") and "=" not in t]
        return [f"{where}: no make target {t}" for t in targets if t not in make_targets()]
    if program in OTHER_PROGRAMS:
        return []
    return [f"{where}: unknown program {program!r} (not a jaxinv command; add it to OTHER_PROGRAMS if it is fine)"]


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings."""
    anchors = set()
    for heading in re.findall(r"(?m)^#{1,6} (.*)$", prose(text)):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def link_problems(page: str, text: str | None = None) -> list[str]:
    """Relative links and images of `page` whose file (or heading anchor) does not exist."""
    text = read(page) if text is None else text
    base = (ROOT / page).parent
    problems = []
    for target, line in links(text):
        path, _, anchor = target.partition("#")
        file = (base / path) if path else ROOT / page
        if not file.exists():
            problems.append(f"{page}:{line}: {target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file.read_text()):
            problems.append(f"{page}:{line}: {target}: no heading with anchor #{anchor}")
    for path, line in repo_paths(text):
        if not (ROOT / path).exists():
            problems.append(f"{page}:{line}: `{path}`: no such file")
    return problems


def page_command_problems(page: str, text: str | None = None) -> list[str]:
    """Every command of a page checked (`command_problems`), and every bare `--flag` span against all binaries."""
    text = read(page) if text is None else text
    problems = []
    for command, line in commands(text):
        problems += command_problems(command, f"{page}:{line}: `{command}`")
    known = {}
    for module in all_binaries():
        known.update(flags_of(module) or {})
    for name, line in bare_flags(text):
        if name.startswith("xla_"):  # XLA's own flags (XLA_FLAGS), not a binary's
            continue
        if name not in known and not (name.startswith("no") and known.get(name[2:])):
            problems.append(f"{page}:{line}: --{name} is not a flag of any binary")
    return problems
