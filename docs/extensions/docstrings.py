"""A griffe extension for the API pages: mkdocstrings renders docstrings as Markdown, so the docstrings'
Sphinx roles (:func:`fit`) become code spans, and their doctest examples outside an ``Examples:`` section
become code blocks (as text, ``vjp(dy)[1][0, 0]`` would read as a Markdown link). A module attribute that
holds a layer (``relu = Layer(...)``) has no docstring in the source: it shows the layer's own doc."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|exc|obj):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    """Each run of lines that starts with ``>>>`` at the margin, up to the next blank line, in a pycon fence."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if not inside and line.startswith(">>>"):
            out.append("```pycon")
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


def layer_doc(attribute: griffe.Object) -> str | None:
    """The doc of the funcnn layer a module attribute holds at run time (``Layer.doc``, else its function's)."""
    if not attribute.path.startswith("funcnn."):
        return None
    value = getattr(importlib.import_module(attribute.module.path), attribute.name, None)
    doc = getattr(value, "doc", None) or getattr(getattr(value, "apply", None), "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) and type(value).__name__ == "Layer" else None


class MarkdownDocstrings(griffe.Extension):
    """Rewrites ``:role:`name``` to ``name`` and fences doctests in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_attribute and obj.parent is not None and obj.parent.is_module:
            doc = layer_doc(obj)
            if doc is not None:
                obj.docstring = griffe.Docstring(doc, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(ROLE.sub(r"`\1`", obj.docstring.value))
