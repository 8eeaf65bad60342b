"""mkdocs hook: the CLI reference page, generated from the argparse definitions at build time.

``docs/reference/cli.md`` holds the marker ``<!-- cli-reference -->``; this hook replaces it with
every command's and verb's ``--help`` text, built from :func:`neurosim.cli.build_parser`, so the
page cannot drift from the code. Nothing here is hand-maintained.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"
WIDTH = "100"  # argparse wraps at $COLUMNS: fixed, so the page does not depend on the terminal


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs hook signature)
    """Replace the marker of the CLI reference page with the generated help texts."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())


def cli_reference() -> str:
    """Markdown of every ``neurosim`` command and verb: a heading and its ``--help`` text."""
    from neurosim import cli

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parts = ["## neurosim", "", _block(cli.build_parser(None).format_help())]
        for name in cli.COMMANDS:
            sub = _subparsers(cli.build_parser(name))[name]
            parts += _render(f"neurosim {name}", sub, level=2)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(parts)


def _render(title: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    """One parser's section, then its verbs' sections one level deeper."""
    parts = [f"{'#' * level} {title}", "", _block(parser.format_help())]
    for verb, sub in _subparsers(parser).items():
        parts += _render(f"{title} {verb}", sub, level + 1)
    return parts


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-parsers of ``parser`` by name (aliases left out), in definition order."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub not in found.values():
                    found[name] = sub
    return found


def _block(text: str) -> str:
    return f"```text\n{text.rstrip()}\n```\n"
