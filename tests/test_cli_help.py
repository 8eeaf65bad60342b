"""Every verb's --help shows the real defaults of its options and of its --set parameters."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import pytest

from neurosim.cli import COMMANDS, build_parser


def verb_parsers(command: str) -> list[argparse.ArgumentParser]:
    """The parser of ``command`` and every parser below it, as ``neurosim`` builds them."""
    found, todo = [], [build_parser(command)]
    while todo:
        parser = todo.pop()
        found.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                names = [command] if parser.prog == "neurosim" else list(action.choices)
                todo += [action.choices[name] for name in names]
    return found[1:]


def option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text of one option as --help prints it, on one line."""
    return " ".join(parser._get_formatter()._format_action(action).split())


def shown_default(action: argparse.Action) -> bool:
    """Whether the option has a value the user gets without giving it."""
    default = action.default
    if default is None or default is argparse.SUPPRESS or isinstance(default, bool):
        return False
    if isinstance(default, (list, tuple, dict)) and not default:
        return False
    return bool(action.option_strings) or action.nargs in ("?", "*")


def same(word: str, default: object) -> bool:
    """'30' shows 30.0; 'auto' shows 'auto'."""
    if isinstance(default, (int, float)):
        try:
            return float(word) == default
        except ValueError:
            return False
    return word == str(default)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside a long default


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_default_is_in_the_help(command):
    for parser in verb_parsers(command):
        for action in parser._actions:
            if shown_default(action):
                text = option_help(parser, action)
                stated = [w.rstrip(",") for w in re.findall(r"default:? ([^ ;:()]+)", text)]  # a list default keeps its commas
                stated += re.findall(r"([^ ,;:()]+) \(default\)", text)
                assert any(same(word, action.default) for word in stated), (parser.prog, text)


def test_the_walk_reaches_every_verb():
    progs = {parser.prog for command in COMMANDS for parser in verb_parsers(command)}
    assert {"neurosim events simulate", "neurosim chip estimate", "neurosim train", "neurosim demo"} <= progs
    with_defaults = [a for c in COMMANDS for p in verb_parsers(c) for a in p._actions if shown_default(a)]
    assert len(with_defaults) > 30


def test_set_lists_the_preset_values():
    from sim_events.params import preset

    parser = next(p for p in verb_parsers("events") if p.prog.endswith("simulate"))
    text = option_help(parser, next(a for a in parser._actions if a.dest == "overrides"))
    for field in dataclasses.fields(preset("davis346")):
        value = getattr(preset("davis346"), field.name)
        shown = "[" + ", ".join(json.dumps(v) for v in value) + "]" if isinstance(value, (list, tuple)) else json.dumps(value)
        assert f"{field.name}={shown}" in text


def test_set_lists_nested_train_config_keys():
    from hybrid.train import TrainConfig

    parser = verb_parsers("train")[0]
    text = option_help(parser, next(a for a in parser._actions if a.dest == "overrides"))
    assert f"epochs={TrainConfig().epochs}" in text and f'model.variant="{TrainConfig().model.variant}"' in text
