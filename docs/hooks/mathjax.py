"""Serve MathJax with the site, from the ``django-static-mathjax`` package (the dev extra), not from a CDN.

The site then renders its formulas with no network. The package ships MathJax 3 as static files
(``mathjax/static/mathjax/es5``); this hook adds the combined TeX component that mkdocs.yml's
``extra_javascript`` names (``assets/mathjax/tex-mml-chtml.js``) and the parts it loads on demand
(fonts, TeX extensions, the menu and its accessibility tools) to the site's files, so that
``mkdocs build`` copies them and ``mkdocs serve`` serves them.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

DEST = "assets/mathjax"
COMPONENT = "tex-mml-chtml.js"
ON_DEMAND = ("input", "output/chtml", "ui", "a11y", "sre", "adaptors")


def mathjax_dir() -> Path:
    """The ``es5`` folder of the installed MathJax, or a PluginError that says how to install it."""
    try:
        import mathjax  # django-static-mathjax
    except ImportError:
        raise PluginError(
            'MathJax for the docs is missing: pip install -e ".[dev]" (it brings django-static-mathjax)'
        ) from None
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / COMPONENT).is_file():
        raise PluginError(f"{es5 / COMPONENT} is missing: reinstall django-static-mathjax")
    return es5


def on_files(files: Files, config) -> Files:
    es5 = mathjax_dir()
    sources = [es5 / COMPONENT] + [p for part in ON_DEMAND for p in sorted((es5 / part).rglob("*")) if p.is_file()]
    for source in sources:
        files.append(File.generated(config, f"{DEST}/{source.relative_to(es5).as_posix()}", abs_src_path=str(source)))
    return files
