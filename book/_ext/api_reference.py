"""The book's API reference, generated from the package at build time (a Sphinx extension).

``api.md`` holds the page's text and one placeholder line per subpackage::

    <!-- api: cradlekit.qc -->

When Sphinx reads the page, each placeholder becomes a summary table and the autodoc entries of every
name in that subpackage's ``__all__`` (functions, classes with their public methods, constants), so
the page follows the code: a new public function appears without editing the page, and the text
shown is the docstring itself (numpydoc sections rendered by ``sphinx.ext.napoleon``).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys

__all__ = ["setup", "module_rst"]

PLACEHOLDER = re.compile(r"^<!-- api: ([\w.]+) -->$", re.MULTILINE)
_MISSING = object()


def _attribute_doc(module, name: str) -> list[str]:
    """The ``#:`` comment documenting constant ``name`` where it is defined (a module of the package)."""
    from sphinx.errors import PycodeError
    from sphinx.pycode import ModuleAnalyzer

    value = getattr(module, name)
    prefix = module.__name__ + "."
    for other in [module, *(m for n, m in sorted(sys.modules.items()) if n.startswith(prefix) and m)]:
        if other.__dict__.get(name, _MISSING) is not value:
            continue
        try:
            docs = ModuleAnalyzer.for_module(other.__name__).find_attr_docs()
        except PycodeError:
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return []


def _directive(module, name: str) -> str:
    obj = getattr(module, name)
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return f".. autoexception:: {name}\n"
        return f".. autoclass:: {name}\n   :members:\n"
    if callable(obj):
        return f".. autofunction:: {name}\n"
    # a constant: its own ``#:`` comment, not the docstring of its type (``dict``, ``tuple``)
    body = "".join(f"   {line}\n" if line.strip() else "\n" for line in _attribute_doc(module, name))
    return f".. py:data:: {name}\n\n{body}"


def module_rst(module_name: str) -> str:
    """The reStructuredText documenting every name in ``module_name.__all__`` (summary table first)."""
    module = importlib.import_module(module_name)
    names = [n for n in getattr(module, "__all__", []) if not inspect.ismodule(getattr(module, n, None))]
    summarized = [n for n in names if inspect.isclass(getattr(module, n)) or callable(getattr(module, n))]
    lines = [f".. currentmodule:: {module_name}", "", ".. autosummary::", "   :nosignatures:", ""]
    lines += [f"   {n}" for n in summarized]
    lines.append("")
    lines += [_directive(module, n) for n in names]
    return "\n".join(lines)


def _expand(app, docname: str, source: list[str]) -> None:
    if docname != app.config.api_reference_page:
        return
    source[0] = PLACEHOLDER.sub(lambda m: f"```{{eval-rst}}\n{module_rst(m.group(1))}\n```", source[0])


def setup(app):
    """Sphinx entry point (``sphinx: local_extensions: {api_reference: _ext}`` in ``_config.yml``)."""
    app.add_config_value("api_reference_page", "api", "env")
    app.connect("source-read", _expand)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
