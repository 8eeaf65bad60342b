"""mkdocs hook: the public-API section of each API page, generated from the package's ``_LAZY`` table.

A page holds the marker ``<!-- public-api: PACKAGE -->``; this hook replaces it with one
mkdocstrings directive (``::: module.name``) per name of ``PACKAGE.__all__``, in that order,
using the package's ``_LAZY`` table (name → defining module, see ``neurosim._lazy``) to find
where each name is defined. So the page lists exactly what ``import PACKAGE`` exports, and a
name added to or removed from the API changes the page without editing it. Importing the
package is cheap: its names load on first use.
"""

from __future__ import annotations

import importlib
import re

MARKER = re.compile(r"<!-- public-api: ([\w.]+) -->")


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs hook signature)
    """Replace each public-API marker with the directives of that package's public names."""
    return MARKER.sub(lambda m: public_api(m.group(1)), markdown)


def public_api(package: str) -> str:
    """mkdocstrings directives for every public name of ``package``, defining module first."""
    pkg = importlib.import_module(package)
    table: dict[str, str] = getattr(pkg, "_LAZY", {})
    blocks = []
    for name in pkg.__all__:
        module = table.get(name, package)
        blocks.append(f"::: {module}.{name}\n    options:\n      heading_level: 3\n      show_root_full_path: false\n")
    return "\n".join(blocks)
