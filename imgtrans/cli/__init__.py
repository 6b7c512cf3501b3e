"""The ``imgtrans`` command line: one module per command, each adding its own sub-parser.

Errors a user can fix (bad paths, names, sizes, corrupt files) are printed as one line and
exit with status 2; set ``IMGTRANS_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import import_module
from typing import Sequence

from PIL.Image import DecompressionBombError
from safetensors import SafetensorError

# Modules of imgtrans.cli; each defines add_parser(subparsers) and sets `run` on its parser.
COMMANDS: tuple[str, ...] = ("demo", "train", "translate", "export", "eval", "models", "zoo", "convert", "data", "app")

USER_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError, OSError, SafetensorError, DecompressionBombError)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command's sub-parser."""
    parser = Parser(
        prog="imgtrans", description="Image-to-image translation with pix2pix (Isola et al., CVPR 2017)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"imgtrans.cli.{name}").add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``imgtrans`` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a flag argparse refuses (said in one line)
        return exit_.code if isinstance(exit_.code, int) else 2
    said = logging.StreamHandler(sys.stderr)  # what the library says on the "imgtrans" logger: one line each
    said.setFormatter(logging.Formatter(f"imgtrans {args.command}: %(message)s"))
    logger = logging.getLogger("imgtrans")
    logger.addHandler(said)
    logger.setLevel(logging.INFO)
    try:
        return args.run(args) or 0
    except BrokenPipeError:  # the reader went away (`imgtrans zoo list | head`): stop quietly, as shell tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"imgtrans {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if os.environ.get("IMGTRANS_DEBUG"):
            raise
        message = getattr(error, "cli_message", None)  # the error in the command line's words, when it has them
        if message is None:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        message = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())  # one line
        print(f"imgtrans {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        logger.removeHandler(said)


if __name__ == "__main__":
    sys.exit(main())
