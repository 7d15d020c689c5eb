"""Sphinx configuration of pyrovae's API reference (``sphinx-build -b html docs/api OUT``).

Offline by design: no intersphinx, MathJax is only referenced, and the theme is the built-in
``alabaster``. ``tests/test_docs.py`` builds it with ``-W`` (warnings are errors) and runs every
``>>>`` example with the doctest builder.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# Examples run on one thread (small tensors; two OpenMP threads spin on a busy 2-core machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyrovae  # noqa: E402

project = "pyrovae"
author = "the pyrovae authors"
copyright = "the pyrovae authors"
release = pyrovae.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "VAEs in Pyro with swappable parts", "fixed_sidebar": True}

# -- autodoc: one section per module, members in source order --------------------------------
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
    # a package's re-exports are documented once, in the module that defines them
    "ignore-module-all": True,
}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_inherit_docstrings = False
autoclass_content = "class"
add_module_names = False
python_use_unqualified_type_names = True

# -- one docstring style: reST field lists (``:param x:``, ``:returns:``), as Pyro's ----------
# Examples are an ``Example:`` paragraph followed by ``>>>`` lines (a reST doctest block).
# Napoleon renders a stray Google-style section (``Args:`` with indented entries) instead of
# garbling it; it is kept off attribute and property docstrings, where it would read our
# prose "what it is: more" as "type: description" (see ``setup`` below).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_param = True
napoleon_use_rtype = True

# -- cross-references: every pyrovae name must resolve; other libraries are not linked ------
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!pyrovae\b).*"),  # torch, pyro, numpy, ... (no intersphinx: offline)
    (r"py:.*", r".*\._\w+"),  # private bases shown by show-inheritance
]

# -- doctest: every ``>>>`` example in a docstring runs; each page is one namespace ---------
doctest_global_setup = """
import torch

torch.set_num_threads(1)
"""
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _canonical(target: str) -> str | None:
    """Where ``target`` (``pyrovae.models.VAE``, a re-export) is defined and so documented:
    ``pyrovae.models.vae.VAE``; None if it does not import."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        name = obj.__name__
        for part in parts[i:]:
            obj = getattr(obj, part, None)
            if obj is None:
                return None
            if inspect.isclass(obj) or inspect.isfunction(obj):
                name = f"{obj.__module__}.{obj.__qualname__}"
            else:
                name = f"{name}.{part}"
        return name
    return None


def _resolve_reexport(app, env, node, contnode):
    """Resolve a reference to a pyrovae object by the name users import it under (a package's
    re-export, or a bare name inside a module that imports it) to where it is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target] if target.startswith("pyrovae.") else []
    if module and module.startswith("pyrovae"):
        if cls:
            candidates.append(f"{module}.{cls}.{target}")
        candidates.append(f"{module}.{target}")
    domain = env.get_domain("py")
    for candidate in candidates:
        canonical = _canonical(candidate)
        if canonical is None or canonical == node["reftarget"]:
            continue
        found = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
        )
        if found is not None:
            return found
    return None


_ATTRIBUTE_KINDS = ("attribute", "data", "property")


def _napoleon_off_for_attributes(app, what, name, obj, options, lines):
    app.config.napoleon_google_docstring = what not in _ATTRIBUTE_KINDS


def _napoleon_on(app, what, name, obj, options, lines):
    app.config.napoleon_google_docstring = True


def setup(app):
    # napoleon's own handler runs at the default priority, 500: switch it off just around it
    app.connect("autodoc-process-docstring", _napoleon_off_for_attributes, priority=499)
    app.connect("autodoc-process-docstring", _napoleon_on, priority=501)
    app.connect("missing-reference", _resolve_reexport)
