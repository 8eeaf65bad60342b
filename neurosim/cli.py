"""The ``neurosim`` command: a thin shell over the packages' Python APIs.

``neurosim <group> <verb> ...``. Each package keeps its verbs in its own ``cli.py`` with a
``register(name, subparsers)`` function; this shell imports only the module of the command
being run, so ``neurosim --help`` stays fast and a broken optional part does not break the
rest. Every verb gets ``--json``, ``--config FILE.toml``, ``--set key=value`` and ``--quiet``
(see :func:`add_common_options`); a :class:`~neurosim.errors.NeurosimError` becomes one line
on stderr and exit code 2. So does an optional package that is not installed, wherever a verb
imports it (:mod:`neurosim.extras`): the line names the ``pip install "neurosim[EXTRA]"`` to run.
Every ``--help`` shows each option's real default (:class:`HelpFormatter`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import pathlib
import re
import os
import sys
import time
from typing import Any, Callable, Iterable, Sequence, TypeVar

from neurosim.errors import MissingExtraError, NeurosimError, ParameterError
from neurosim.extras import ensure_installed, install_hint, missing_extra, missing_optional, translate_missing
from neurosim.io import Output, check_outputs, json_default

T = TypeVar("T")

# command -> (module with register(name, subparsers), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "events": ("sim_events.cli", "video -> DVS events: simulate, calibrate, compare, info, render"),
    "snn": ("neurosim.snn.cli", "spiking networks: NIR export/import, brian2 cross-check"),
    "quant": ("neurosim.quant.cli", "int8 training: schemes, train on digits, export integer networks"),
    "data": ("benchmarks_data.cli", "event datasets: build, synth, import, info"),
    "train": ("hybrid.cli", "train a hybrid ANN-SNN tracker on a dataset"),
    "tune": ("hybrid.cli", "fit a trained tracker's tracking-time parameters (TCF crossover, ANN centre temperature) on training sequences"),
    "eval": ("hybrid.cli", "evaluate a trained tracker (OTB protocol: success, precision, AUC)"),
    "compare": ("hybrid.cli", "compare tracker evaluations over training seeds: means, differences, bootstrap CIs"),
    "track": ("hybrid.cli", "track a target through a sequence file or recording"),
    "export": ("hybrid.cli", "export a trained tracker to the integer network format"),
    "fewshot": ("hybrid.fewshot_cli", "few-shot detection: RepMet vs NP-RepMet benchmark on real images"),
    "chip": ("chip_models.cli", "neuromorphic chip models: estimate, simulate, map"),
    "scatter": ("neurosim.scattering.cli", "imaging through scattering media: simulate speckle, train, finetune, eval"),
    "demo": ("neurosim.cli", "run the whole pipeline on a built-in generated scene"),
}

# Demo stages in order: module with run(outdir, summary, say) -> dict, and the optional modules it
# needs. A stage whose module or extra is missing is skipped (saying which pip install adds it).
DEMO_STAGES: dict[str, tuple[str, ...]] = {
    "sim_events.demo": (),
    "benchmarks_data.demo": ("torch",),
    "hybrid.demo": ("torch", "matplotlib"),
    "chip_models.demo": ("matplotlib",),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; each option's help ends with its real default.

    An option whose help already states its default (``(default 2)``, ``davis346 (default)``)
    keeps its words; otherwise ``(default: VALUE)`` is appended. Options without a default
    (None, off flags, empty lists) and required positionals are left alone. A ``--set`` made
    with ``params`` lists the parameter keys with their defaults (see :func:`add_common_options`).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        defaults = getattr(action, "defaults_from", None)
        if defaults is not None:
            text = f"{text}; {_defaults_listing(defaults)}"
        if not _has_default(action) or "%(default)" in text or _states_default(text, action.default):
            return text
        return f"{text} (default: %(default)s)"


def _has_default(action: argparse.Action) -> bool:
    default = action.default
    if default is None or default is argparse.SUPPRESS or isinstance(default, bool):
        return False
    if isinstance(default, (list, tuple, dict)) and not default:
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)


def _states_default(text: str, default: Any) -> bool:
    """Whether ``text`` already says ``default``: 'default 2', 'default: x', 'x (default)' (30 for 30.0)."""
    stated = re.findall(r"\bdefault:?\s+([^\s,;:()]+)", text) + re.findall(r"([^\s,;:()]+) \(default\)", text)
    return any(word == str(default) or _same_number(word, default) for word in stated)


def _same_number(word: str, default: Any) -> bool:
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return False
    try:
        return float(word) == default
    except ValueError:
        return False


def _defaults_listing(defaults: Callable[[], Any]) -> str:
    """'keys and defaults: a=1, b.c="x", ...' of ``defaults()`` (a dataclass instance or a dict)."""
    try:
        values = defaults()
    except ImportError as exc:
        module = missing_optional(exc)
        if module is None:
            raise
        return f"keys and defaults: listed here once {module} is installed ({install_hint(module)})"
    if dataclasses.is_dataclass(values):
        values = dataclasses.asdict(values)
    pairs = ", ".join(f"{key}={_toml_value(value)}" for key, value in _flat(values))
    return f"keys and defaults: {pairs}".replace("%", "%%")


def defaults_of(target: str, *args: Any) -> Callable[[], Any]:
    """A ``params`` source for :func:`add_verb`: ``"module:name"`` called with ``args``.

    The module is imported only when ``--help`` is shown, e.g.
    ``defaults_of("sim_events.params:preset", "davis346")``.
    """
    module, _, name = target.partition(":")
    return lambda: getattr(importlib.import_module(module), name)(*args)


def _toml_value(value: Any) -> str:
    """A default as written in TOML or after --set; None (no value: computed) as 'unset'."""
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, default=str)


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        rows += _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(prefix + key, value)]
    return rows


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 2, with :class:`HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        formatter = kwargs.get("formatter_class")
        if formatter in (None, argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter):
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclasses.dataclass
class Context:
    """What a verb handler gets besides its arguments: output and progress helpers."""

    json_mode: bool = False
    quiet: bool = False

    def say(self, *parts: Any) -> None:
        """Print human-readable output (suppressed with --json or --quiet)."""
        if not (self.json_mode or self.quiet):
            print(*parts, flush=True)

    def progress(self, iterable: Iterable[T] | None = None, **kwargs: Any) -> Iterable[T]:
        """A tqdm progress bar on stderr; off with --quiet or --json, or when stderr is not a terminal."""
        from tqdm import tqdm

        off = self.quiet or self.json_mode or not sys.stderr.isatty()
        return tqdm(iterable, disable=off, file=sys.stderr, leave=False, **kwargs)


def add_common_options(parser: argparse.ArgumentParser, params: Callable[[], Any] | None = None) -> None:
    """Add --json, --config, --set and --quiet to a verb's parser.

    ``params``: a function returning the verb's default parameters (a dataclass instance or a
    dict); called only when ``--help`` is shown, whose ``--set`` entry then lists every key
    with its default. Import heavy modules inside it, not at registration.
    """
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument("--config", metavar="FILE.toml", help="read parameters from a TOML file")
    override = parser.add_argument(
        "--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
        help="override one parameter, VALUE as in TOML (repeatable)",
    )
    override.defaults_from = params  # type: ignore[attr-defined]
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or text")


def params_from_args(args: argparse.Namespace, cls: type[T], base: dict[str, Any] | None = None) -> T:
    """Parameters for a verb: ``base`` defaults, then --config TOML, then --set overrides."""
    from neurosim.config import apply_overrides, from_dict, load_toml

    values = dict(base or {})
    if getattr(args, "config", None):
        values.update(load_toml(args.config))
    values = apply_overrides(values, getattr(args, "overrides", []) or [])
    return from_dict(cls, values)


def add_verb(
    subparsers: argparse._SubParsersAction, name: str, handler: Callable[..., dict | None],
    help: str, example: str, description: str | None = None, params: Callable[[], Any] | None = None,
    needs: Sequence[str] = (), inputs: Sequence[str] = (), outputs: Sequence[Output] = (),
    settings: bool | None = None,
) -> argparse.ArgumentParser:
    """Add one verb with the common options and an example in its --help.

    ``params``: see :func:`add_common_options` (``--set`` help lists the keys and defaults).
    ``settings``: whether the verb reads ``--config`` / ``--set`` (default: when it has
    ``params``); :func:`main` refuses them for a verb that does not, so they never go unheeded.
    ``needs``: optional modules the verb always uses (keys of :data:`neurosim.extras.OPTIONAL`);
    :func:`main` checks them before the verb runs, so a missing extra stops it before any
    output, and ``--help`` names the ``pip install`` that provides them.
    ``inputs``: the argument names (dest) holding paths the verb reads (``--config`` is added);
    ``outputs``: what it writes (:class:`neurosim.io.Output`). :func:`main` applies the output
    policy (:func:`neurosim.io.check_outputs`) before the verb runs; ``--overwrite`` is added
    where an output may replace an earlier one.
    """
    parser = subparsers.add_parser(
        name, help=help, description=description or help, epilog=f"example:\n  {example}",
        formatter_class=HelpFormatter,
    )
    if needs:
        parser.epilog += f"\n\nneeds {', '.join(needs)}: {install_hint(needs, _preferred_extra(parser.prog))}"
    add_common_options(parser, params)
    if any(out.offers_overwrite for out in outputs):
        parser.add_argument("--overwrite", action="store_true",
                            help="replace an existing output (only a file or folder this command writes, never an input)")
    parser.set_defaults(handler=handler, needs=tuple(needs), io_inputs=("config", *inputs), io_outputs=tuple(outputs),
                        takes_settings=params is not None if settings is None else settings)
    return parser


def check_settings_used(args: argparse.Namespace) -> None:
    """ParameterError when --config / --set are given to a verb that reads neither."""
    if getattr(args, "takes_settings", True):
        return
    given = "--config" if getattr(args, "config", None) else "--set" if getattr(args, "overrides", None) else None
    if given:
        verb = " ".join(p for p in (getattr(args, "command", None), getattr(args, "verb", None)) if p)
        raise ParameterError(f"neurosim {verb} has no parameters to take from {given}: leave it out "
                             "(see its --help for the options it has)")


def _preferred_extra(command: str | None) -> str:
    """The extra to name where several provide a module (nir): ``chip`` for ``neurosim chip``, else train."""
    return "chip" if "chip" in (command or "").split() else "train"


def build_parser(command: str | None) -> ArgumentParser:
    """The top parser; only ``command``'s module is imported to fill its sub-parser."""
    parser = ArgumentParser(
        prog="neurosim",
        description="Hybrid ANN-SNN neuromorphic simulation toolkit.",
        epilog="example:\n  neurosim demo -o demo_out\n  neurosim events simulate video.mp4 -o seq.h5",
        formatter_class=HelpFormatter,
    )
    from neurosim import __version__

    parser.add_argument("--version", action="version", version=f"neurosim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, (module, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        if name == "demo":
            _register_demo(sub)
            continue
        importlib.import_module(module).register(name, sub)
    return parser


# [low, high] (low excluded where the third item is True) of the numeric options verbs share,
# checked by main() before any work; the upper bounds are far past real use and guard against
# runaway time and memory.
OPTION_RANGES: dict[str, tuple[float, float, bool]] = {
    "seed": (0, 2**32 - 1, False), "split_seed": (0, 2**32 - 1, False),
    "threads": (0, 1024, False),  # 0: the default
    "workers": (1, 1024, False),
    "max_frames": (1, 10**9, False), "frames": (1, 10**7, False), "sequences": (1, 100_000, False),
    "fps": (0.0, 1e6, True), "window_ms": (0.0, 1e7, True), "frame_interval_ms": (0.0, 1e7, True),
    "t0": (-1e7, 1e7, False), "t1": (-1e7, 1e7, False),  # seconds
    "dt": (0.0, 1e3, True), "steps": (1, 100_000, False), "activity": (0.0, 1.0, False),  # chip (NIR dt in s)
    "every": (1, 10_000, False),
    "passes": (1, 100, False), "width": (1, 8192, False), "height": (1, 8192, False),  # px
}


def check_option_ranges(args: argparse.Namespace) -> None:
    """Raise ParameterError naming the first shared numeric option (:data:`OPTION_RANGES`) out of range."""
    from neurosim.config import check_range

    for dest, (low, high, low_open) in OPTION_RANGES.items():
        value = getattr(args, dest, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_range("--" + dest.replace("_", "-"), value, low, high, low_open=low_open,
                        why="to go past the upper bound edit OPTION_RANGES in neurosim/cli.py")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurosim`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = None
    previous_sigterm = _terminate_like_ctrl_c()
    try:
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        handler = getattr(args, "handler", None)
        if handler is None:
            sub = _subparser(parser, args.command)
            (sub or parser).print_help()
            return 0 if args.command is None else 2
        ensure_installed(getattr(args, "needs", ()), _feature(command, args), _preferred_extra(command))
        check_option_ranges(args)
        check_settings_used(args)
        check_outputs(args, getattr(args, "io_inputs", ()), getattr(args, "io_outputs", ()))
        ctx = Context(json_mode=getattr(args, "json", False), quiet=getattr(args, "quiet", False))
        summary = handler(args, ctx)
        if ctx.json_mode and summary is not None:
            print(json.dumps(summary, indent=2, default=json_default))
        return 0
    except NeurosimError as err:
        print(f"neurosim: error: {err}", file=sys.stderr)
        return err.exit_code
    except ImportError as exc:  # an optional package imported anywhere while the verb ran
        module = missing_optional(exc)
        if module is None:
            raise
        err = missing_extra(module, _feature(command, args), _preferred_extra(command))
        print(f"neurosim: error: {err}", file=sys.stderr)
        return err.exit_code
    except MemoryError:  # sizes within their ranges that still do not fit this machine
        print(f"neurosim: error: {_feature(command, args)} ran out of memory: use smaller sizes, rates or counts "
              "(e.g. --resize, noise rates, --set values) or free memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neurosim: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("neurosim: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:  # stdout closed early (e.g. `neurosim ... --json | head`): not an error
        _silence_stdout()
        return 0
    except OSError as exc:  # disk full, read-only, permission, name too long... while the verb ran
        print(f"neurosim: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if previous_sigterm is not None:
            import signal

            signal.signal(signal.SIGTERM, previous_sigterm)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``with`` block unwinds: temporary
    outputs are deleted and worker pools shut down, as for Ctrl-C."""


def _terminate_like_ctrl_c():
    """Turn SIGTERM into :class:`Terminated` (main thread only); returns the previous handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return None


def os_error_line(exc: OSError) -> str:
    """One line for an I/O error: the path, the system's reason, the fix."""
    import errno

    path = str(exc.filename or "a file")
    if len(path) > 120:
        path = path[:60] + "…" + path[-40:]
    reason = exc.strerror or str(exc)
    fix = {errno.ENOSPC: "free disk space or write elsewhere", errno.EDQUOT: "free disk space or write elsewhere",
           errno.EROFS: "choose a writable output path", errno.EACCES: "check its permissions or choose another path",
           errno.EPERM: "check its permissions or choose another path",
           errno.ENAMETOOLONG: "choose a shorter name"}.get(exc.errno, "check the path or choose another one")
    return f"{path}: {reason}: {fix}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _feature(command: str | None, args: argparse.Namespace | None) -> str:
    """'neurosim COMMAND VERB', what a missing extra was needed for."""
    return " ".join(p for p in ("neurosim", command, getattr(args, "verb", None)) if p)


def _subparser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return None


# ---------------------------------------------------------------------------------- demo


def _register_demo(sub: argparse._SubParsersAction) -> None:
    parser = add_verb(
        sub, "demo", _demo, help=COMMANDS["demo"][1], example="neurosim demo -o demo_out",
        description="Run every stage of neurosim on a built-in, deterministic generated scene "
        "(textured objects moving fast, known boxes): events, dataset, tracker, chip estimate. "
        "Writes each stage's files and summary.json into the output folder.",
        outputs=[Output(kind="results", marker=("summary.json",))],
    )
    parser.add_argument("-o", "--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--no-real", action="store_true",
                        help="skip the tracker's real-video tables (run where ../shared/data/tracking is found)")


def _demo(args: argparse.Namespace, ctx: Context) -> dict:
    outdir = pathlib.Path(args.out)
    if outdir.exists() and not outdir.is_dir():
        raise ParameterError(f"demo output {outdir} is a file: choose a folder with -o")
    outdir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(outdir), "seed": args.seed, "stages": {}, "skipped": {},
                               "real_video": not args.no_real}
    start = time.perf_counter()
    for module_name, needs in DEMO_STAGES.items():
        name = module_name.split(".")[0]
        t0 = time.perf_counter()
        try:
            feature, prefer = f"the demo's {name} stage", "chip" if name == "chip_models" else "train"
            ensure_installed(needs, feature, prefer)
            with translate_missing(feature, prefer):
                stage = importlib.import_module(module_name)
                result = stage.run(outdir, summary, ctx.say, seed=args.seed)
        except MissingExtraError as err:  # a stage whose extra is not installed is skipped, saying why
            summary["skipped"][name] = str(err)
            ctx.say(f"skipped: {err}")
            continue
        except ModuleNotFoundError as exc:
            if exc.name == module_name or module_name.startswith(f"{exc.name}."):
                continue
            raise
        result["seconds"] = round(time.perf_counter() - t0, 2)
        summary["stages"][name] = result
    summary["seconds"] = round(time.perf_counter() - start, 2)
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2, default=json_default))
    (outdir / "summary.md").write_text(_demo_report(outdir, summary))
    ctx.say(f"demo finished in {summary['seconds']} s; report: {outdir / 'summary.md'}")
    return summary


def _demo_report(outdir: pathlib.Path, summary: dict[str, Any]) -> str:
    """One Markdown report of the demo: each stage's figures as a table, its plots inline."""
    lines = ["# neurosim demo", "", f"Seed {summary['seed']}; whole run {summary['seconds']} s.", ""]
    for reason in summary.get("skipped", {}).values():
        lines += [f"Skipped: {reason}", ""]
    for stage, result in summary["stages"].items():
        rows, plots = _flatten(result)
        lines += [f"## {stage}", "", "| quantity | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in rows]
        for plot in plots:
            rel = pathlib.Path(plot).resolve().relative_to(outdir.resolve())
            lines += ["", f"![{rel}]({rel})"]
        lines.append("")
    return "\n".join(lines)


def _flatten(result: dict[str, Any], prefix: str = "") -> tuple[list[tuple[str, Any]], list[str]]:
    """Scalar entries of a nested stage result as (dotted key, value), and the PNG paths in it."""
    rows, plots = [], []
    for key, value in result.items():
        values = value if isinstance(value, list) else [value]
        plots += [v for v in values if isinstance(v, str) and v.endswith(".png")]
        if isinstance(value, dict):
            sub_rows, sub_plots = _flatten(value, f"{prefix}{key}.")
            rows, plots = rows + sub_rows, plots + sub_plots
        elif isinstance(value, float):
            rows.append((prefix + key, f"{value:.4g}"))
        elif isinstance(value, (int, str)) and not str(value).endswith(".png"):
            rows.append((prefix + key, value))
    return rows, plots


def exit_rank(code: int) -> None:
    """End a torchrun rank (``WORLD_SIZE`` > 1) with ``code`` without interpreter finalization.

    A rank whose run finished has closed its files and destroyed its process group
    (``hybrid.cli.end_distributed``), yet one CI run in about ten still saw a rank abort at exit
    (SIGABRT, "terminate called without an active exception"): objects that hold gloo work (DDP's
    reducer) are torn down with the interpreter, after the threads they need (pytorch/pytorch#179291,
    #190489). Nothing is left to do in the process, so it leaves at once."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_rank(exit_code)
    sys.exit(exit_code)
