"""Every Python snippet of the README runs as written, and every command it shows is one the CLI accepts."""

import re
from pathlib import Path

import pytest

from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
# Blocks fenced as "```python no-test" need the network (the zoo's downloads) and are not run here.
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, monkeypatch, capsys):
    code = SNIPPETS[index]
    if "../shared" in code and not SHARED.exists():
        pytest.skip("the snippet reads ../shared, which is absent")
    monkeypatch.chdir(ROOT)
    exec(compile(code, f"README.md snippet {index}", "exec"), {"__name__": f"readme_{index}"})


COMMANDS = [
    line.split("#")[0].strip()
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    for line in block.splitlines()
    if line.strip().startswith(("imgtrans ", "torchrun "))
]


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_is_one_the_command_line_accepts(command):
    import shlex

    from imgtrans.cli import build_parser

    words = shlex.split(command)
    if words[0] == "torchrun":  # torchrun [options] -m imgtrans ARGS
        words = words[words.index("imgtrans") :]
    args = build_parser().parse_args(words[1:])  # exits (and fails the test) on an unknown flag or value
    assert callable(args.run)
