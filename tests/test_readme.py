"""Every Python snippet of the README and docs/ runs as written; every command the README shows is one the CLI accepts.

README snippets run in this process; those of docs/*.md in a fresh interpreter each, in an empty folder
(a snippet may register models or write files). docs/timm.md's snippets run in tests/test_timm_docs.py.
The command lines themselves run in tests/test_docs_commands.py.
"""

import re
import subprocess
import sys
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


# Pages whose snippets continue one another: their own tests run them in page order, as a reader does.
PAGES_RUN_ELSEWHERE = {
    "timm.md": "tests/test_timm_docs.py",
    "cookbook.md": "tests/test_cookbook.py (blocks and commands in page order, in one folder)",
    "pix2pixhd.md": "tests/test_pix2pixhd.py (the second snippet uses the first's G)",
}
# docs/*.md: every ```python block but those of the pages above and "python no-test" ones.
DOC_SNIPPETS = [
    (page.relative_to(ROOT).as_posix(), i, code)
    for page in sorted((ROOT / "docs").rglob("*.md"))
    if page.name not in PAGES_RUN_ELSEWHERE
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))
]
# Snippets that cannot run here, by (page, index), with the reason and a phrase of the snippet (so a stale
# entry fails instead of skipping another snippet).
DOC_SNIPPETS_NOT_RUN = {
    ("docs/training.md", 0): ("Trainer(config).fit()", "a full 200-epoch training run (hours); the trainer runs "
                              "shortened in tests/test_trainer.py"),
    ("docs/zoo.md", 0): ("pretrained=True", "downloads the published weights: the network"),
    ("docs/zoo.md", 1): ("from_pretrained(\"facades-g\")", "continues the snippet before it (its import) and the "
                         "convert command above it, which needs the reference checkpoint"),
    ("docs/zoo.md", 2): ("push_to_hub", "uploads to the Hugging Face Hub: the network"),
    ("docs/zoo.md", 3): ("pretrained=True", "a placeholder commit and hash, and a download: the network"),
}  # fmt: skip


def test_snippets_not_run_are_still_there():
    found = {(page, i): code for page, i, code in DOC_SNIPPETS}
    for key, (phrase, _) in DOC_SNIPPETS_NOT_RUN.items():
        assert key in found and phrase in found[key], f"{key} changed: update DOC_SNIPPETS_NOT_RUN"


@pytest.mark.parametrize("page, index, code", DOC_SNIPPETS, ids=[f"{p} {i}" for p, i, _ in DOC_SNIPPETS])
def test_docs_snippet_runs(page, index, code, tmp_path):
    if (page, index) in DOC_SNIPPETS_NOT_RUN:
        pytest.skip(DOC_SNIPPETS_NOT_RUN[page, index][1])
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, f"{page} snippet {index}:\n{code}\n{result.stderr[-3000:]}"


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
