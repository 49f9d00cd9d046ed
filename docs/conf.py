"""Sphinx configuration of the provider's documentation (``./dev docs``; ``./dev lint`` builds it
with warnings as errors)."""

from __future__ import annotations

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
