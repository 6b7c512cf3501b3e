"""The package's layers as folders: a leaf registry, imports only downwards, no cycle, one network module."""

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "imgtrans"
NETWORK = ("urllib.request", "urllib.error", "http.client", "socket", "huggingface_hub", "requests", "httpx", "urllib3")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, type_checking: bool = False) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (under ``TYPE_CHECKING`` if asked).

    ``from imgtrans import io`` imports the module ``imgtrans.io``; ``from imgtrans import __version__``
    imports the package root ``imgtrans``.
    """
    tree, found = ast.parse(path.read_text()), set()
    guarded = [node for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
    skipped = set() if type_checking else {id(n) for node in guarded for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named = {f"{node.module}.{alias.name}" for alias in node.names}  # submodules imported by name
            found.update(named)
            if not named <= set(MODULES):
                found.add(node.module)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}
# Every import edge, those under TYPE_CHECKING and inside functions included. An edge into the package root
# is left out: Python runs imgtrans/__init__ before any module of the package, so every module depends on it
# already, and the root's own (lazy, TYPE_CHECKING) imports are what the graph must show.
FULL_GRAPH = {
    name: {m for m in imports(path, type_checking=True) if m in MODULES and m not in (name, "imgtrans")}
    for name, path in MODULES.items()
}


def layer(module: str) -> str:
    """The folder a module lives in (``store``, ``train``...), or ``imgtrans`` for the top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or len(parts) == 2 and MODULES[module].name == "__init__.py" else "imgtrans"


def test_importing_the_registry_alone_loads_nothing_else_of_imgtrans_nor_the_network():
    code = "import imgtrans.registry, json, sys; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert [m for m in loaded if m.startswith("imgtrans")] == ["imgtrans", "imgtrans.registry"]
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "huggingface_hub", "requests", "httpx")]
    assert "urllib.request" not in loaded and "http.client" not in loaded
    assert not [m for m in imports(MODULES["imgtrans.registry"]) if m.startswith("imgtrans")]


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or ``None``."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                return path + [name, other]
            if other not in state and (found := visit(other, path + [name])):
                return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [])):
            return found
    return None


def test_the_package_has_no_import_cycle():
    found = cycle(GRAPH)
    assert found is None, f"import cycle: {' -> '.join(found)}"


def test_no_import_cycle_counting_type_checking_and_function_level_imports():
    found = cycle(FULL_GRAPH)
    assert found is None, f"import cycle: {' -> '.join(found)}"


def test_the_cycle_finder_finds_cycles():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert imports(MODULES["imgtrans.train.validation"], type_checking=True) >= {"imgtrans.train.run"}


FORBIDDEN = {
    "blocks": {"store", "train", "deploy", "cli", "app"},
    "losses": {"store", "train", "deploy", "cli", "app"},
    "store": {"train", "deploy", "cli", "app"},
}
"""Which layers a layer must not import (any import: TYPE_CHECKING and inside functions included)."""


def test_the_layers_import_only_downwards():
    wrong = sorted(
        (name, other) for name, others in FULL_GRAPH.items() for other in others
        if layer(other) in FORBIDDEN.get(layer(name), ())
    )  # fmt: skip
    assert not wrong, wrong
    assert layer("imgtrans.store.config") == "store" and layer("imgtrans.store") == "store"
    assert layer("imgtrans.registry") == "imgtrans"


def test_the_command_line_is_imported_by_nothing_in_the_package():
    # imgtrans/__main__.py (`python -m imgtrans`) is the command line's entry point, not a user of it.
    users = sorted(
        name for name, others in FULL_GRAPH.items() for other in others
        if layer(other) == "cli" and layer(name) != "cli" and name != "imgtrans.__main__"
    )  # fmt: skip
    assert not users, users


def test_at_most_eight_top_level_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def test_only_the_hub_module_reaches_out_to_the_network():  # (the app serves a page: http.server is no client)
    speakers = sorted(
        name for name, path in MODULES.items() if any(m == n or m.startswith(n + ".") for m in imports(path) for n in NETWORK)
    )
    assert speakers == ["imgtrans.hub"]


def test_blocks_depend_on_nothing_but_blocks_the_name_helper_and_the_hub():
    for name, path in MODULES.items():
        if name.startswith("imgtrans.blocks"):
            outside = {m for m in GRAPH[name] if not m.startswith("imgtrans.blocks")}
            assert outside <= {"imgtrans.registry", "imgtrans.hub"}, (name, outside)


def test_commands_do_not_import_each_other():
    commands = {n for n in MODULES if n.startswith("imgtrans.cli.") and n != "imgtrans.cli.common"}
    for name in commands:
        assert not GRAPH[name] & commands, (name, GRAPH[name] & commands)
