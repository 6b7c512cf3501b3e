"""``imgtrans models``: the registry, one line per entry."""

from __future__ import annotations

import argparse

from imgtrans.registry import entry, list_models


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("models", help="list the registered parts and pix2pix configurations")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'pix2pix-*'")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; run `imgtrans models` to see them all")
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {entry(name).description}")
    return 0
