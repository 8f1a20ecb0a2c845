"""A griffe extension for the API pages: mkdocstrings renders docstrings as Markdown, so the docstrings'
Sphinx roles (:func:`fit`) become code spans, and their doctest examples outside an ``Examples:`` section
become code blocks (as text, ``vjp(dy)[1][0, 0]`` would read as a Markdown link)."""

from __future__ import annotations

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


class MarkdownDocstrings(griffe.Extension):
    """Rewrites ``:role:`name``` to ``name`` and fences doctests in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(ROLE.sub(r"`\1`", obj.docstring.value))
