#!/usr/bin/env python3
"""Draw imgtrans's layers from its imports: rooms (a top-level module or a folder), arrows, floors.

    python tools/layers.py [PACKAGE_DIR]

A room is a top-level module (``imgtrans/io.py``) or a folder (``imgtrans/store/``); an arrow is
"some module of this room imports some module of that one" (module-level, function-level and
``TYPE_CHECKING`` imports alike); a room's floor is one above the highest room it imports (leaves
are floor 0). Prints the rooms floor by floor with what each imports, then the counts.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def room_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def main(package: Path) -> None:
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    rooms = {room_of(m) for m in modules if m != package.name}
    arrows: dict[str, set[str]] = {r: set() for r in rooms}
    for name, path in modules.items():
        if name == package.name:
            continue  # the package root only re-exports (lazily)
        for target in imports(path):
            if target in modules and target != package.name and room_of(target) != room_of(name):
                arrows[room_of(name)].add(room_of(target))
    floor: dict[str, int] = {}

    def level(room: str, seen: tuple = ()) -> int:
        if room not in floor:
            if room in seen:
                raise SystemExit(f"cycle between rooms: {' -> '.join(seen + (room,))}")
            floor[room] = 1 + max((level(r, seen + (room,)) for r in arrows[room]), default=-1)
        return floor[room]

    for room in sorted(rooms):
        level(room)
    for n in range(max(floor.values()) + 1):
        for room in sorted(r for r in rooms if floor[r] == n):
            short = lambda r: r.removeprefix(package.name + ".")  # noqa: E731
            print(f"floor {n:2d}  {short(room):14s} <- {', '.join(sorted(map(short, arrows[room]))) or '-'}")
    print(f"{len(rooms)} rooms on {max(floor.values()) + 1} floors, {sum(map(len, arrows.values()))} arrows")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "imgtrans")
