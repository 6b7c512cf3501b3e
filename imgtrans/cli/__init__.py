"""The ``imgtrans`` command line: one module per command, each adding its own sub-parser.

Errors a user can fix (bad paths, names, sizes, corrupt files) are printed as one line and
exit with status 2; set ``IMGTRANS_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module
from typing import Sequence

# Modules of imgtrans.cli; each defines add_parser(subparsers) and sets `run` on its parser.
COMMANDS: tuple[str, ...] = ("demo", "train", "translate", "export", "eval", "models", "zoo", "convert")

USER_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError, OSError)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command's sub-parser."""
    parser = argparse.ArgumentParser(
        prog="imgtrans", description="Image-to-image translation with pix2pix (Isola et al., CVPR 2017)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"imgtrans.cli.{name}").add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imgtrans`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print(f"imgtrans {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if os.environ.get("IMGTRANS_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"imgtrans {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
