"""The package's layers: a leaf registry, no import cycle, one module for the network."""

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


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (not under ``TYPE_CHECKING``)."""
    tree, found = ast.parse(path.read_text()), set()
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}  # fmt: skip
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules imported by name
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_importing_the_registry_alone_loads_nothing_else_of_imgtrans_nor_the_network():
    code = "import imgtrans.registry, json, sys; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert [m for m in loaded if m.startswith("imgtrans")] == ["imgtrans", "imgtrans.registry"]
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "huggingface_hub", "requests", "httpx")]
    assert "urllib.request" not in loaded and "http.client" not in loaded
    assert not [m for m in imports(MODULES["imgtrans.registry"]) if m.startswith("imgtrans")]


def test_the_package_has_no_import_cycle():
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for other in sorted(GRAPH[name]):
            assert state.get(other) != "open", f"import cycle: {' -> '.join(path + [name, other])}"
            if other not in state:
                visit(other, path + [name])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])


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
