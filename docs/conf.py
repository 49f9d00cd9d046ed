"""Sphinx configuration of the provider's documentation (``./dev docs``; ``./dev lint`` builds it
with warnings as errors)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

project = "airflow-provider-xcompliance"
author = "the airflow-provider-xcompliance authors"
copyright = "2026, " + author
release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
version = release

extensions = [
    "sphinx.ext.autodoc",  # the API reference (api.rst): the stable public modules only
]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

# The API reference documents what a DAG author imports; the signatures carry the defaults.
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"

html_theme = "furo"
html_title = f"X Compliance provider {release}"
html_static_path: list[str] = []
pygments_style = "sphinx"


# --- docstrings as the code writes them -----------------------------------------------------------

_PLURAL_AFTER_LITERAL = re.compile(r"(\w)``(\w)")


def _normalise_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """Two habits of the package's docstrings that docutils reads differently from a person:

    - an inline literal with a plural ``s`` right after its closing backquotes: an end-string
      must be followed by a space or punctuation, so an escaped space is put between them;
    - a paragraph right after a ``:param:`` field list with no blank line between them: the
      blank line is added, so the paragraph ends the list instead of breaking it.
    """
    fixed: list[str] = []
    in_fields = False
    for line in lines:
        line = _PLURAL_AFTER_LITERAL.sub(r"\1``\\ \2", line)
        starts_field = line.startswith(":")
        if in_fields and line and not line[0].isspace() and not starts_field:
            fixed.append("")
        if starts_field:
            in_fields = True
        elif not line or not line[0].isspace():
            in_fields = False
        fixed.append(line)
    lines[:] = fixed


def setup(app):
    app.connect("autodoc-process-docstring", _normalise_docstring)
