"""The documentation site as a reader gets it: doctests as code, maths without a network, the public API only.

The rules live in docs/hooks/ (a griffe extension and a mkdocs hook); these tests check the rules
themselves on several docstrings and modules, and the built site (``mkdocs build --strict``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "hooks"


def load_hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rules():
    pytest.importorskip("griffe")
    return load_hook("griffe_docs")


def test_doctests_in_a_description_become_a_pycon_fence(rules):
    text = "Parse it.\n\n>>> parse('C64')\n[64]\n>>> parse('')\n[]\n\nMore text."
    assert rules.fence_doctests(text) == (
        "Parse it.\n\n```pycon\n>>> parse('C64')\n[64]\n>>> parse('')\n[]\n```\n\nMore text."
    )


def test_doctests_in_a_section_keep_their_indentation_and_each_run_is_fenced(rules):
    text = "Example:\n    >>> a = 1\n    >>> a + 1\n    2\n\n    Then:\n\n    >>> b = 2"
    assert rules.fence_doctests(text) == (
        "Example:\n    ```pycon\n    >>> a = 1\n    >>> a + 1\n    2\n    ```\n\n    Then:\n\n"
        "    ```pycon\n    >>> b = 2\n    ```"
    )


def test_fenced_code_and_text_without_prompts_are_left_alone(rules):
    for text in ("```python\n>>> already = 'fenced'\n```", "~~~\n>>> x\n~~~", "a >>> b in prose", "no code at all"):
        assert rules.fence_doctests(text) == text


def test_rest_literal_markers_lose_their_doubled_colon_before_indented_code(rules):
    code = "\n\n    stack('C64-C128')\n\nA ratio 2::1 stays."
    assert rules.literal_markers(f"As the paper writes it::{code}") == f"As the paper writes it:{code}"
    unindented = "Ends with a marker::\n\nno indented block."
    assert rules.literal_markers(unindented) == unindented


@pytest.fixture(scope="module")
def package(rules):
    import griffe

    return griffe.load("imgtrans", search_paths=[str(ROOT)], extensions=griffe.load_extensions(rules.ReferenceRules))


@pytest.mark.parametrize(
    "path",
    ["imgtrans.train.run.trim_log", "imgtrans.train.loading.one_line_errors", "imgtrans.train.trainer.lr_factor"],
)
def test_helpers_that_only_their_module_uses_are_private(package, path):
    assert not package[path.removeprefix("imgtrans.")].is_public


@pytest.mark.parametrize(
    "path",
    [
        "imgtrans.train.trainer.Trainer",  # exported by imgtrans.train
        "imgtrans.store.factory.build",  # in the lazy-import table of imgtrans
        "imgtrans.deploy.onnx.export_onnx",  # used as onnx.export_onnx by the command line
        "imgtrans.store.checkpoint.optimizer_to_tensors",  # a docstring links to it
        "imgtrans.deploy.translators.load_translator",  # the cookbook shows it
        "imgtrans.train.run.RunInUseError",  # an exception a caller may catch
        "imgtrans.store.checkpoint.Checkpoint",  # what load_checkpoint returns
    ],
)
def test_what_other_modules_docstrings_and_pages_use_is_public(package, path):
    assert package[path.removeprefix("imgtrans.")].is_public


def test_a_module_with_its_own_all_decides_itself(package):
    zoo = package["store.zoo"]
    assert zoo.exports, "imgtrans.store.zoo declares __all__"
    for name, member in zoo.members.items():
        if not member.is_alias:
            assert member.is_public == (name in zoo.exports), name


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mathjax", reason='MathJax for the docs comes with pip install -e ".[dev]"')
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_site_loads_no_script_style_or_font_from_the_network(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) > 20
    external = re.compile(r"<script\b[^>]*\bsrc=\"(?:https?:)?//|<link\b[^>]*\bhref=\"(?:https?:)?//", re.IGNORECASE)
    for page in pages:
        assert not external.findall(page.read_text(encoding="utf-8")), page
    assert 'src="../assets/mathjax/tex-mml-chtml.js"' in (site / "paper" / "index.html").read_text(encoding="utf-8")
    assert (site / "assets" / "mathjax" / "tex-mml-chtml.js").stat().st_size > 500_000
    assert list((site / "assets" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))


def test_the_reference_renders_doctests_as_code_and_hides_helpers(site):
    blocks = (site / "api" / "blocks" / "index.html").read_text(encoding="utf-8")
    losses = (site / "api" / "losses" / "index.html").read_text(encoding="utf-8")
    train = (site / "api" / "train" / "index.html").read_text(encoding="utf-8")
    prompt = '<span class="gp">&gt;&gt;&gt; </span>'
    assert f'{prompt}<span class="n">parse_notation</span>' in blocks
    assert f'{prompt}<span class="n">loss</span>' in losses
    for page in site.joinpath("api").rglob("*.html"):
        assert "<blockquote>" not in page.read_text(encoding="utf-8"), page
    assert 'id="imgtrans.train.trainer.Trainer"' in train
    for helper in ("run.trim_log", "loading.one_line_errors", "trainer.lr_factor", "signals.stop_requests"):
        assert f'id="imgtrans.train.{helper}"' not in train
    assert "cookbook/" in train  # the nav links the cookbook
