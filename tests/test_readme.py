"""Every Python snippet of the README runs as written."""

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
