"""Every option of a command says what it does, and every flag a message suggests exists on the command printing it.

The messages are found in the source: every string (f-strings included) of the modules whose errors
and warnings a command prints. A flag after ``imgtrans OTHER`` in a string is OTHER's (a message may
suggest another command line, as ``imgtrans export MODEL --out FILE --precision int8``).
"""

import argparse
import ast
import re
from pathlib import Path

import pytest

from imgtrans.cli import build_parser

PACKAGE = Path(__file__).resolve().parents[1] / "imgtrans"
# The modules whose messages each command prints (its own, what it shares, and the library parts it runs
# in the command line's words).
SPEAKERS = {
    "translate": ["cli/translate.py", "cli/common.py", "deploy/translators.py", "inference.py", "io.py"],
    "eval": ["cli/eval.py", "cli/common.py", "metrics/scoring.py", "data/paired.py", "io.py"],
    "app": ["cli/app.py"],  # (it takes only MODEL_HELP from cli/common)
}
# Flags of messages a command cannot reach, each with the reason.
UNREACHABLE = {
    ("eval", "--crop-size"): "data/paired's crop message: eval reads whole images (crop_size=None)",
    ("eval", "--load-size"): "the same message",
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?![\w{-])")
COMMAND = re.compile(r"\bimgtrans ([a-z]+)\b")


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def strings(path: Path) -> list[str]:
    """Every string literal of a module but its docstrings, each f-string as one string (its fields as ``{}``)."""
    tree = ast.parse(path.read_text())
    found, inside = [], set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                inside.add(id(first.value))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # attribute docstrings
            inside.add(id(node.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            found.append("".join(map(str, parts)))
            inside.update(id(v) for v in node.values)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside:
            found.append(node.value)
    return found


def suggested_flags(text: str, command: str) -> list[tuple[str, str]]:
    """``(command, flag)`` for every flag in ``text``, each attributed to the last ``imgtrans NAME`` before it."""
    marks = [(m.start(), m.group(1)) for m in COMMAND.finditer(text)]
    result = []
    for m in FLAG.finditer(text):
        owner = next((name for start, name in reversed(marks) if start < m.start()), command)
        result.append((owner, m.group()))
    return result


def test_the_scan_finds_flags_and_whose_they_are():
    assert suggested_flags("give --direction AtoB; or imgtrans export MODEL --out FILE", "eval") == [
        ("eval", "--direction"), ("export", "--out")]  # fmt: skip
    assert suggested_flags("a dash-separated--word, -- alone, and a pattern --no-{}", "eval") == []
    assert "add --overwrite to replace it" in " ".join(strings(PACKAGE / "metrics" / "scoring.py"))


@pytest.mark.parametrize("command", sorted(SPEAKERS))
def test_every_flag_a_message_suggests_exists_on_that_command(command):
    parsers = commands()
    missing = []
    for module in SPEAKERS[command]:
        for text in strings(PACKAGE / module):
            for owner, flag in suggested_flags(text, command):
                known = flag in options(parsers[owner]) if owner in parsers else True
                if not known and (owner, flag) not in UNREACHABLE:
                    missing.append(f"{module}: {flag} ({owner}) in {text[:80]!r}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("command", ["translate", "eval"])
def test_every_option_says_what_it_does(command):
    parser = commands()[command]
    assert "--overwrite" in parser.format_help()  # renders (a stray % in a help text would raise here)
    silent = [a.dest for a in parser._actions if not a.help or a.help == argparse.SUPPRESS]
    assert silent == [], silent
    for action in parser._actions:
        if action.option_strings and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
            assert str(action.default) in action.help or "default" in action.help, (action.dest, action.help)
