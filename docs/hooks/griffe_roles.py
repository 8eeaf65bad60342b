"""Griffe extension for the API pages: Sphinx-style cross-reference roles as Markdown code.

The docstrings are plain text with reStructuredText habits (``:func:`name```, ``:class:`~a.B```,
``::`` before an indented block). mkdocstrings renders them as Markdown (``docstring_style:
null``), where a role would show as literal ``:func:``. This turns ``:role:`~a.b.name``` into
``name`` and ``:role:`a.b``` into ``a.b`` as inline code, and a paragraph's trailing ``::`` into
``:``; nothing else changes.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _plain(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def markdown_docstring(text: str) -> str:
    """``text`` with roles turned into inline code and literal-block ``::`` into ``:``."""
    text = ROLE.sub(_plain, text)
    return re.sub(r"(\S)::\n", r"\1:\n", text)


class SphinxRoles(griffe.Extension):
    """Rewrite every object's docstring once it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: ARG002 (griffe hook signature)
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)

    on_object = on_instance  # griffe calls one or the other depending on how an object was loaded; idempotent
