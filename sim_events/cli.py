"""``neurosim events <verb>``: the simulator verbs and the event-file verbs."""

from __future__ import annotations

import argparse


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    """Add the ``events`` group: simulate, calibrate, compare (cli_sim); info, render (cli_files)."""
    from sim_events import cli_files, cli_sim

    group = subparsers.add_parser(name, help="video -> DVS events", description=__doc__)
    verbs = group.add_subparsers(dest="verb", metavar="VERB")
    cli_sim.add_verbs(verbs)
    cli_files.add_verbs(verbs)
