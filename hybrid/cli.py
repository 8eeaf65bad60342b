"""``neurosim train | tune | eval | compare | track | export``: thin CLI over hybrid's Python API."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from typing import Any

from hybrid.runs import DEFAULT_MODEL, resolve_run
from neurosim.errors import InputError, ParameterError
from neurosim.io import INTNET_OUTPUT, Output

__all__ = ["DEFAULT_MODEL", "register", "resolve_run"]


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    """Add the top-level verb ``name`` (train, tune, eval, compare, track or export)."""
    from neurosim.cli import COMMANDS, add_verb, defaults_of

    help_text = COMMANDS[name][1]
    if name == "train":
        p = add_verb(subparsers, "train", _train, help=help_text,
                     example="neurosim train --dataset synth/ --config tracker.toml -o runs/full",
                     params=defaults_of("hybrid.train:TrainConfig"), needs=["torch"],
                     inputs=("dataset", "init_from"), outputs=[Output(kind="run")],
                     description="Train a DashNet tracker (ANN on frames + SNN on events, TCF, attention). "
                     "Parameters: TrainConfig fields and a [model] table (ModelConfig) in --config / --set, e.g. "
                     "--set model.variant=ann_only. With --variants, one run per variant goes into -o/<variant>/. "
                     "Multi-process: torchrun --nproc_per_node 2 -m neurosim.cli train ...")
        p.add_argument("--dataset", required=True, action="append",
                       help="dataset folder (index.json), e.g. from 'neurosim data synth'; repeat it to train on the "
                       "windows of several datasets together (the --set split of each)")
        p.add_argument("-o", "--out", required=True, help="run folder (checkpoint, config.json, metrics.jsonl): new or "
                       "empty, or an earlier run continued with --resume")
        p.add_argument("--variants", help="comma-separated variants to train side by side (ann_only,snn_only,no_tcf,no_attention,full)")
        p.add_argument("--resume", action="store_true", help="continue the run in -o from its last checkpoint")
        p.add_argument("--init-from", help="start from the weights of another run, or per branch: ann:RUN_A,snn:RUN_B")
        p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    elif name == "tune":
        p = add_verb(subparsers, "tune", _tune, help=help_text, needs=["torch"],
                     inputs=("run", "dataset"), outputs=[Output(kind="folder", inside_inputs=False)],
                     example="neurosim tune runs/full --dataset synth/ --max-sequences 21 -o runs/full_fit",
                     description="Fit the tracking-time parameters of a run by closed-loop tracking: the TCF crossover "
                     "(alpha_frame, alpha_hold) of a full / no_attention run and the ANN centre's soft-argmax temperature "
                     "(full, no_attention, ann_only). Tracks the --split sequences (default train; never the test split) "
                     "with each candidate, scores them with the OTB protocol and copies the run to -o with the candidate "
                     "of the highest AUC (tune.json has every score).")
        p.add_argument("run", help="run folder of a full, no_attention or ann_only tracker")
        p.add_argument("--dataset", required=True, action="append",
                       help="dataset folder (index.json); repeat it to pool the sequences of several datasets")
        p.add_argument("-o", "--out", required=True, help="new run folder: the run with the fitted parameters")
        p.add_argument("--split", default="train", help="split whose sequences are tracked (default train)")
        p.add_argument("--max-sequences", type=int, default=0, help="track the first N sequences of each dataset's split (default 0: all)")
        p.add_argument("--alphas", default=None, help="candidate alpha_frame values, comma-separated (default 0.05,0.1,0.2,0.3,0.5,0.7)")
        p.add_argument("--holds", default="1", help="candidate alpha_hold values in (0, 1], comma-separated (default 1: "
                       "the SNN alone between frames; e.g. 1,0.99,0.98,0.95)")
        p.add_argument("--ann-temperatures", default="1", help="candidate soft-argmax temperatures of the ANN centre in "
                       "(0, 1], comma-separated (default 1: as trained; e.g. 1,0.5,0.25,0.125)")
    elif name == "eval":
        p = add_verb(subparsers, "eval", _eval, settings=True, help=help_text, example="neurosim eval runs/ --dataset synth/",
                     needs=["torch", "matplotlib"], inputs=("runs", "dataset"),
                     outputs=[Output(kind="results", marker=("scores.json",), default=_default_eval_folder)],
                     description="Track every sequence of a dataset split with each run (a run folder, a folder "
                     "of runs, or 'default' for the shipped model) and score it with the OTB protocol at every SNN "
                     "step: success/precision curves, AUC, P@20, speed; result files in the got10k layout and plots.")
        p.add_argument("runs", nargs="+", help="run folder(s), folder(s) of runs, or 'default'")
        p.add_argument("--dataset", required=True, help="dataset folder (index.json)")
        p.add_argument("--split", default="test", help="split to evaluate (default test; 'all' for every sequence)")
        p.add_argument("-o", "--out", help="output folder (default: <first run>/eval)")
        p.add_argument("--max-frames", type=int, help="track only the first N frames of each sequence")
        p.add_argument("--starts", type=int, default=1, help="runs per sequence: 1 (default) from its first frame "
                       "(OPE); N (up to 20) also from N-1 later frames spread over it, each scored as a sequence "
                       "NAME@FRAME (OTB's temporal robustness evaluation, TRE)")
        p.add_argument("--variants", help="also evaluate each run's weights as these variants (comma-separated, "
                       "e.g. ann_only,snn_only,no_tcf,no_attention,full): an ablation without retraining")
        p.add_argument("--baselines", default="static_box,csrt,kcf,mil",
                       help="frame trackers scored beside the runs on the APS frames through the same protocol "
                       "(comma-separated: static_box = a box that never moves, OpenCV csrt, kcf, mil; 'none' for none)")
    elif name == "compare":
        p = add_verb(subparsers, "compare", _compare, help=help_text, inputs=("evals",),
                     outputs=[Output(kind="into", companions=lambda out, args: [out / "compare.json", out / "compare.md"])],
                     example="neurosim compare runs/ablation runs/s1/eval runs/s2/eval --base full_fit",
                     description="Compare trackers over training seeds: each folder is one seed's 'neurosim eval' output "
                     "(same tracker names, same sequences). Prints each tracker's AUC per seed, mean (sd) and P@20, "
                     "and the base minus each tracker per seed, on the mean, and as a paired bootstrap over sequences "
                     "(each sequence's AUC averaged over the seeds). With --pool the folders are evaluations of other "
                     "datasets (or regimes) and their sequences are pooled, one vote each.")
        p.add_argument("evals", nargs="+", help="folders written by 'neurosim eval -o', one per training seed "
                       "(with --pool: one per dataset)")
        p.add_argument("--pool", action="store_true", help="pool the sequences of all folders (evaluations of "
                       "different datasets, splits or regimes) instead of averaging seeds over the same sequences")
        p.add_argument("--base", required=True, help="tracker the others are compared with, e.g. full_fit")
        p.add_argument("-o", "--out", help="also write compare.json and compare.md into this folder")
    elif name == "track":
        p = add_verb(subparsers, "track", _track, settings=True, help=help_text, needs=["torch"], inputs=("run", "sequence"),
                     outputs=[Output(companions=lambda out, args: [out.with_suffix(".txt"), out.with_suffix(".times.txt")])],
                     example="neurosim track default seq.h5 -o out.mp4 --box 40,30,20,24",
                     description="Track a target through a sequence file (frames + events) from a first box "
                     "(default: the file's first ground-truth box). Writes a video with the boxes drawn over "
                     "frames and events, and the boxes as text (<out>.txt: x,y,w,h per SNN step; <out>.times.txt). "
                     "Model settings as in eval: --set model.KEY=VALUE (e.g. model.target_events=0.3).")
        p.add_argument("run", help="run folder or 'default' (the shipped model)")
        p.add_argument("sequence", help="sequence file (.h5) written by neurosim events simulate / data build")
        p.add_argument("-o", "--out", required=True, help="output video (.mp4)")
        p.add_argument("--box", help="first box x,y,w,h in pixels (0-based); default: ground truth")
        p.add_argument("--every", type=int, default=4, help="draw one video frame every N SNN steps (default 4)")
    elif name == "export":
        p = add_verb(subparsers, "export", _export, help=help_text, needs=["torch"], inputs=("run",),
                     outputs=[INTNET_OUTPUT],
                     example="neurosim export default -o tracker_int/",
                     description="Export a trained tracker to the integer network format (neurosim.intnet folder) "
                     "that 'neurosim chip estimate' reads: the ANN branch via neurosim.quant.to_integer, the SNN "
                     "branch as integer LIF layers.")
        p.add_argument("run", help="run folder or 'default'")
        p.add_argument("-o", "--out", required=True, help="output folder (network.json + tensors.safetensors); "
                       "an existing one is replaced only with --overwrite and only if it holds an earlier export")
    else:  # pragma: no cover - neurosim.cli only routes the four verbs here
        raise ParameterError(f"hybrid has no verb {name!r}")


def _default_eval_folder(args: argparse.Namespace) -> str | None:
    """``eval``'s output folder without -o: <first run>/eval (none for the shipped model)."""
    return None if args.runs[0] == "default" else str(pathlib.Path(args.runs[0]) / "eval")


def _train(args: argparse.Namespace, ctx: Any) -> dict:
    from hybrid.train import TrainConfig, train, train_variants
    from benchmarks_data.index import load_index
    from neurosim.cli import params_from_args
    from neurosim.io import existing_dir

    cfg = params_from_args(args, TrainConfig)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    cfg.check()
    for folder in args.dataset:
        existing_dir(folder, "dataset folder")
        load_index(folder)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"-o {out} is a file: give a run folder")
    if args.resume and not (out / "checkpoint.safetensors").exists() and not args.variants:
        raise InputError(f"{out} has no checkpoint to resume: drop --resume or pass the run folder")
    if not args.variants:
        result = train(args.dataset, out, cfg, resume=args.resume, progress=ctx.progress, say=ctx.say,
                       init_from=args.init_from)
    else:
        result = train_variants(args.dataset, out, cfg, args.variants, resume=args.resume, progress=ctx.progress,
                                say=ctx.say, init_from=args.init_from)
    end_distributed()
    return result


def end_distributed() -> None:
    """Destroy the torchrun process group after a run that finished: left to interpreter exit,
    gloo's threads can abort the process (SIGABRT, "terminate called without an active exception";
    pytorch/pytorch#190489). Not after a failure, where another rank may still be in a collective."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _eval(args: argparse.Namespace, ctx: Any) -> dict:
    from hybrid.baselines import parse_baselines
    from hybrid.evaluate import check_starts, evaluate, find_runs, split_sequences

    baselines = parse_baselines(args.baselines)
    check_starts(args.starts)
    split_sequences(args.dataset, args.split)  # dataset checks before anything is written
    runs = find_runs([resolve_run(r) for r in args.runs])
    if args.variants:
        from hybrid.model import check_variants

        variants = check_variants(args.variants, "--variants")
        runs = {f"{name}:{v}": (run, v) for name, run in runs.items() for v in variants}
    out = pathlib.Path(args.out) if args.out else pathlib.Path(resolve_run(args.runs[0])) / "eval"
    if args.runs[0] == "default" and not args.out:
        raise ParameterError("evaluating the shipped model needs an output folder: add -o FOLDER")
    model = model_overrides(args, "eval")
    for name, run in runs.items():  # a bad override is refused before anything is tracked
        from hybrid.checkpoint import load_model

        load_model(*(run if isinstance(run, tuple) else (run,)), model=model)
    return evaluate(runs, args.dataset, out, args.split, progress=ctx.progress, say=ctx.say, max_frames=args.max_frames,
                    baselines=baselines, model=model, starts=args.starts)


def model_overrides(args: argparse.Namespace, verb: str) -> dict[str, Any]:
    """``[model]`` settings from --config / --set for a verb that loads trained runs; anything
    else is refused (those verbs have no other parameters)."""
    from neurosim.config import apply_overrides, load_toml

    values: dict[str, Any] = load_toml(args.config) if getattr(args, "config", None) else {}
    values = apply_overrides(values, getattr(args, "overrides", []) or [])
    other = sorted(k for k in values if k != "model")
    if other or not isinstance(values.get("model", {}), dict):
        raise ParameterError(f"{verb} takes only model settings from --set/--config (e.g. --set model.target_model=template), "
                             f"not {other[0] if other else 'model'!r}")
    return dict(values.get("model", {}))


def _tune(args: argparse.Namespace, ctx: Any) -> dict:
    from hybrid.evaluate import split_sequences
    from hybrid.tune import DEFAULT_ALPHAS, fit_tracking

    alphas = _numbers(args.alphas, "--alphas", "0.1,0.2,0.5") if args.alphas else DEFAULT_ALPHAS
    holds = _numbers(args.holds, "--holds", "1,0.98,0.95", one_allowed=True)
    from hybrid.model import MODEL_RANGES

    taus = _numbers(args.ann_temperatures, "--ann-temperatures", "1,0.5,0.25", one_allowed=True,
                    least=MODEL_RANGES["ann_temperature"][0])
    if args.max_sequences < 0:
        raise ParameterError(f"--max-sequences {args.max_sequences} must be ≥ 0 (0: all)")
    for folder in args.dataset:  # dataset checks before anything is tracked
        _refuse_test_split(folder, args.split)
        split_sequences(folder, args.split)
    res = fit_tracking(resolve_run(args.run), args.dataset, args.out, alphas, holds, taus, args.split, args.max_sequences,
                       say=ctx.say)
    tcf = "" if res["variant"] == "ann_only" else (f", alpha_frame {res['alpha_frame']:g}, alpha_hold {res['alpha_hold']:g} "
                                                  f"(learned alpha_frame {res['learned_alpha_frame']:.3f})")
    ctx.say(f"ann_temperature {res['ann_temperature']:g}{tcf} -> {res['run']}")
    return res


def _refuse_test_split(dataset: str, split: str) -> None:
    """ParameterError when tuning would look at test sequences (``test``, or ``all`` with a test split)."""
    from benchmarks_data.index import load_index

    has_test = bool(load_index(pathlib.Path(dataset)).get("splits", {}).get("test"))
    if split == "test" or (split == "all" and has_test):
        raise ParameterError(f"tune --split {split} would fit parameters on the test sequences of {dataset}, which "
                             "evaluation must not have seen: tune on train (the default) or a validation split")


def _numbers(text: str, option: str, example: str, one_allowed: bool = False, least: float = 0.0) -> tuple[float, ...]:
    """Comma-separated numbers in (0, 1), or (0, 1] with ``one_allowed`` (``[least, ...`` when
    ``least`` > 0); ParameterError naming ``option`` otherwise."""
    try:
        values = tuple(float(a) for a in text.split(",") if a.strip())
    except ValueError:
        values = ()
    if not values or not all((least <= v if least else 0 < v) and (v < 1 or (one_allowed and v == 1)) for v in values):
        bound = ("(0" if not least else f"[{least:g}") + (", 1]" if one_allowed else ", 1)")
        raise ParameterError(f"{option} {text!r} must be numbers in {bound}, comma-separated (e.g. {example})")
    return values


def _parse_box(text: str | None):
    if text is None:
        return None
    try:
        box = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise ParameterError(f"--box {text!r} must be four numbers x,y,w,h (pixels)")
    return box


def _track(args: argparse.Namespace, ctx: Any) -> dict:
    from hybrid.results import track_file

    box = _parse_box(args.box)
    summary = track_file(args.run, args.sequence, args.out, box, args.every, model=model_overrides(args, "track"))
    ctx.say(f"tracked {summary['steps']} SNN steps ({summary['frames']} frames) at {summary['steps_per_second']:,.0f} "
            f"steps/s -> {summary['video']}, {summary['boxes']}")
    return summary


def _compare(args: argparse.Namespace, ctx: Any) -> dict:
    from hybrid.compare import compare, table, write_compare
    from neurosim.io import existing_dir

    for folder in args.evals:
        existing_dir(folder, "evaluation folder")
    result = compare(args.evals, args.base, pool=args.pool)
    if args.out:
        write_compare(result, args.out)
    ctx.say(table(result).rstrip())
    return result


def _export(args: argparse.Namespace, ctx: Any) -> dict:
    from hybrid.export import export_run

    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"-o {out} is a file: give a folder for the integer network")
    summary = export_run(resolve_run(args.run), out, overwrite=args.overwrite)
    ctx.say(f"exported {summary['layers']} integer layers ({summary['inputs']}) -> {out}")
    return summary
