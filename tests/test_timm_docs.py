"""Every runnable snippet of docs/timm.md runs as written, offline (``with network`` ones are shown only)."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "timm.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_runnable_and_network_snippets():
    assert len(SNIPPETS) >= 5
    assert PAGE.read_text().count('```python title="with network"') == 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_docs_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that write files write them here
    exec(compile(SNIPPETS[index], f"docs/timm.md snippet {index}", "exec"), {"__name__": f"timm_docs_{index}"})
