"""Sphinx configuration of the gmoe documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` after
``pip install ".[docs]"``. The package is documented as installed (no ``sys.path``
games): the built-in simulation configs are package data of the installed package.
"""

from __future__ import annotations

import re
from pathlib import Path

import gmoe

HERE = Path(__file__).resolve().parent

# -- project -----------------------------------------------------------------
project = "gmoe"
author = "gmoe developers"
copyright = "gmoe developers, BSD-3-Clause"  # noqa: A001
release = gmoe.__version__
version = ".".join(release.split(".")[:2])

# -- extensions --------------------------------------------------------------
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# MyST: $...$ / $$...$$ math (rendered by MathJax), ::: fences, heading anchors
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# autodoc / autosummary: one API page, entries written with autodoc directives
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc sections carry the types
# members are listed per class in api.rst (a default "members" would add every
# dataclass field as an empty entry)
autodoc_default_options: dict = {}
autodoc_inherit_docstrings = True

# numpydoc: no member tables (they would need generated stub pages)
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

pygments_style = "friendly"
pygments_dark_style = "monokai"

# -- HTML --------------------------------------------------------------------
html_theme = "furo"
html_title = f"gmoe {release}"
html_static_path = ["_static"]
html_css_files = ["gmoe.css"]
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False

# -- pages that other people write -------------------------------------------
# The table of contents names pages that may not exist yet (docs/performance.md
# and docs/results.md are written separately). A toctree entry without its file is
# a warning, and warnings are errors in CI, so entries whose file is missing are
# dropped from the toctree when the index is read.
OPTIONAL_PAGES = ("performance", "results")


def _page_exists(name: str) -> bool:
    return any((HERE / f"{name}{suffix}").is_file() for suffix in source_suffix)


def _drop_missing_pages(app, docname, source):
    if docname != root_doc:
        return
    text = source[0]
    for name in OPTIONAL_PAGES:
        if not _page_exists(name):
            text = re.sub(rf"(?m)^{name}\s*\n", "", text)
    source[0] = text


# -- the table of built-in configs on the reproducing page --------------------
CONFIG_TABLE_MARKER = "<!-- gmoe: table of built-in configs -->"


def config_table() -> str:
    """Markdown table of the built-in configs: name, what it shows, theory, command."""
    from gmoe.config import load_config

    rows = ["| config | sweep | theoretical slopes | command |",
            "|---|---|---|---|"]
    for name, desc in gmoe.list_configs().items():
        configs = load_config(name)
        cfg = configs[0]
        ns = cfg.n_values
        sweep = (f"k* = {cfg.truth_params.k}, k = {cfg.fit['n_experts']}, "
                 f"n = {ns[0]:,} to {ns[-1]:,} ({len(ns)} sizes) x {cfg.reps} reps")
        if len(configs) > 1:
            sweep += "; grid: " + "; ".join(c.label for c in configs)
        theory = ", ".join(f"`{m}` {v:g}" for m, v in cfg.theory.items()) or "-"
        desc = desc.replace("|", "/")
        rows.append(f"| `{name}` | {desc}. {sweep} | {theory} | `gmoe run {name}` |")
    return "\n".join(rows)


def _fill_config_table(app, docname, source):
    if CONFIG_TABLE_MARKER in source[0]:
        source[0] = source[0].replace(CONFIG_TABLE_MARKER, config_table())


def setup(app):
    app.connect("source-read", _drop_missing_pages)
    app.connect("source-read", _fill_config_table)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
