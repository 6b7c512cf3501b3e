"""Two rules for the API reference, applied by griffe (the docstring loader of mkdocstrings) to the whole package.

Doctest examples become code blocks. Griffe's Google parser reads ``>>>`` lines as code only inside an
``Examples:`` section; anywhere else (a description, an ``Example:`` admonition) Markdown takes
``>>>`` for three nested quotes and runs the lines together. Every run of ``>>>`` lines (up to the next
blank line) outside a fence is fenced as ``pycon``, so no docstring has to know the rule; likewise
reST's ``text::`` before an indented block (already code in Markdown) loses its doubled colon.

The public API is what the package's layers use of each other, and what the documentation shows.
A module that declares ``__all__`` says so itself. In the others, a name defined there is public
when a module of another layer (folder) uses it or its own folder's ``__init__`` exports it (an
import, ``module.name``, or a string in an ``__all__`` or a lazy-import table), when a docstring or
a prose page links to it, or when the prose pages or the README show it in code; an exception class
is public too (callers catch it), and so is what a public function of the module takes or returns
(its annotations name it). A name that only its own layer uses (or only the tests) is that layer's
helper, and the reference leaves it out. The rule follows functions as they move between modules,
where a list of members per page would go stale. ``filters: public`` in mkdocs.yml then shows only
public objects.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import griffe

_FENCE = re.compile(r"^(```+|~~~+)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
_LITERAL = re.compile(r"(\S)::\n\n(?=[ \t]+\S)")  # "text::", a blank line, an indented block
_LINK = re.compile(r"\]\[([\w.]+)\]|\[([\w.]+)\]\[\]")  # [text][imgtrans.x.y] and [imgtrans.x.y][]
ROOT = Path(__file__).resolve().parents[2]


def fence_doctests(text: str) -> str:
    """``text`` with each run of ``>>>`` lines (to the next blank line) outside a fence fenced as ``pycon``."""
    lines = text.split("\n")
    out: list[str] = []
    fence = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        opening = _FENCE.match(stripped)
        if fence is not None:
            fence = None if stripped.startswith(fence) else fence
        elif opening:
            fence = opening.group(1)
        elif stripped.startswith(">>>"):
            start = i
            while i < len(lines) and lines[i].strip():
                i += 1
            out += [f"{indent}```pycon", *lines[start:i], f"{indent}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def literal_markers(text: str) -> str:
    """``text`` with reST's ``::`` before an indented code block written as Markdown reads it, ``:``.

    The indented block is already code in Markdown; only the marker would show, doubled.
    """
    return _LITERAL.sub(r"\1:\n\n", text)


def names_used(source: str) -> set[str]:
    """Every name ``source`` refers to: names, attributes, imported names and identifier-like strings."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.alias):
            used.add(node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            used.add(node.value)
    return used


def names_shown(pages: list[Path]) -> set[str]:
    """Every identifier in the code (fenced blocks and inline code) of these Markdown pages."""
    shown: set[str] = set()
    for page in pages:
        for code in _CODE.findall(page.read_text(encoding="utf-8")):
            shown.update(_IDENTIFIER.findall(code))
    return shown


def _objects(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _modules(module: griffe.Module):
    yield module
    for member in module.members.values():
        if not member.is_alias and member.is_module:
            yield from _modules(member)


def _is_exception(obj: griffe.Object) -> bool:
    if not obj.is_class:
        return False
    return any(name.endswith(("Error", "Exception", "Warning")) for name in [obj.name, *map(str, obj.bases)])


def _names_in_signatures(module: griffe.Module) -> set[str]:
    """The identifiers in the annotations of the public functions and methods of ``module``."""
    functions = []
    for member in module.members.values():
        if member.is_alias or not member.is_public:
            continue
        if member.is_function:
            functions.append(member)
        elif member.is_class:
            functions += [m for n, m in member.members.items() if m.is_function and (n == "__init__" or n[0] != "_")]
    annotations = [str(f.returns) for f in functions] + [str(p.annotation) for f in functions for p in f.parameters]
    return {name for text in annotations for name in _IDENTIFIER.findall(text)}


class ReferenceRules(griffe.Extension):
    """Fences doctests and marks each module-level name public or private, as the module docstring says."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.filepath is None or ROOT not in Path(pkg.filepath).resolve().parents:
            return  # the rules are this project's; another package loaded on the way keeps its own
        linked: set[str] = set()
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = literal_markers(fence_doctests(obj.docstring.value))
                linked.update(a or b for a, b in _LINK.findall(obj.docstring.value))
        modules = [module for module in _modules(pkg) if module.filepath is not None]
        used_by = {module.path: names_used(Path(module.filepath).read_text(encoding="utf-8")) for module in modules}
        pages = [p for p in (ROOT / "docs").glob("*.md")] + [ROOT / "README.md"]
        shown = names_shown([p for p in pages if p.exists()])
        for page in pages:  # a prose page that links to an object makes it public too
            if page.exists():
                linked.update(a or b for a, b in _LINK.findall(page.read_text(encoding="utf-8")))
        for module in modules:
            if module.exports is not None:  # the module's own __all__ decides
                continue
            layer = module.path if module.is_package else module.path.rsplit(".", 1)[0]
            if layer == pkg.path:  # a top-level module is a layer of its own
                layer = module.path
            outside = [used for path, used in used_by.items()
                       if path != module.path and (path == layer or not path.startswith(layer + "."))]  # fmt: skip
            elsewhere = shown.union(*outside)
            for name, member in module.members.items():
                if not member.is_alias and not name.startswith("_"):
                    member.public = name in elsewhere or member.path in linked or _is_exception(member)
            for name in _names_in_signatures(module):  # what a public function takes or returns
                member = module.members.get(name)
                if member is not None and not member.is_alias and not name.startswith("_"):
                    member.public = True
