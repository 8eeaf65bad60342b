"""``neurosim data <verb>``: build, synth, import, info — a thin layer over benchmarks_data."""

from __future__ import annotations

import argparse
import pathlib
import re
from typing import Any

from neurosim.errors import InputError, ParameterError


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` group with its verbs."""
    from neurosim.cli import add_verb, defaults_of
    from neurosim.io import Output

    group = subparsers.add_parser(name, help="event datasets: build, synth, import, info", description=__doc__)
    verbs = group.add_subparsers(dest="verb", metavar="VERB")

    p = add_verb(verbs, "build", _build, help="convert a collection of tracking sequences into an event dataset",
                 example="neurosim data build ../shared/data/tracking -o dataset --aps-rate 30 --workers 2",
                 description="Convert every sequence of SOURCE (NFS, OTB, VOT folders or videos with box files) "
                 "into DAVIS-style frames + events + boxes: one sequence file each in DIR/sequences/ and DIR/index.json. "
                 "Re-running skips completed sequences; failed sequences are reported and the rest go on; "
                 "exit 2 only if nothing could be built. Simulator parameters: --preset, --config, --set.",
                 params=defaults_of("sim_events.params:DvsParams"),
                 inputs=("source", "split_list"), outputs=[Output(kind="dataset")])
    p.add_argument("source", help="a sequence folder, a video, or a folder of them")
    p.add_argument("-o", "--out", required=True, help="dataset folder")
    p.add_argument("--aps-rate", type=float, default=30.0, help="APS frame rate in Hz (default 30)")
    p.add_argument("--fps", type=float, default=None, help="input frame rate (default: NFS 240, OTB/VOT 30, videos their own)")
    p.add_argument("--resize", default=None, metavar="WxH", help="output sensor size, e.g. 240x180 (default: input size)")
    _parallel_options(p)

    p = add_verb(verbs, "synth", _synth, settings=True, help="generate the procedural high-speed tracking benchmark",
                 example="neurosim data synth -o synth --sequences 8 --seed 0",
                 description="Render textured targets among look-alike distractors on textured backgrounds (fast erratic "
                 "motion, scale change, occlusion, lighting change, motion blur) at 240 fps with exact boxes, then convert "
                 "them like real data (events from every frame, APS frames at --aps-rate, one 240 fps frame each by default). "
                 "Scene settings: --set synth.n_distractors=5 (fields of benchmarks_data.synth.SynthConfig) "
                 "or a [synth] table in --config.",
                 inputs=("split_list",), outputs=[Output(kind="dataset")])
    p.add_argument("-o", "--out", required=True, help="dataset folder")
    p.add_argument("--sequences", type=int, default=8, help="number of sequences (default 8)")
    p.add_argument("--frames", type=int, default=240, help="input frames per sequence (default 240 = 1 s at 240 fps)")
    p.add_argument("--size", default="240x180", metavar="WxH", help="sensor size (default 240x180)")
    p.add_argument("--fps", type=float, default=240.0, help="render rate in fps (default 240, at least 240)")
    p.add_argument("--aps-rate", type=float, default=30.0, help="APS frame rate in Hz (default 30)")
    _parallel_options(p)

    p = add_verb(verbs, "import", _import, help="turn a real recording + box file into a sequence file",
                 example="neurosim data import recording.aedat --boxes boxes.txt -o seq.h5\n"
                 "  neurosim data import recording.aedat4 --boxes boxes.txt -o real_dataset/  # add to a dataset\n"
                 "  neurosim data import FE108/test/airplane_mul222 -o real_dataset/  # a benchmark's sequence folder",
                 description="Read a real DAVIS recording (jAER AEDAT 2.0/3.1, AEDAT4, sequence .h5, recording .npz) and "
                 "a box file ('t_us x y w h' per line, 0-based pixels) and write one sequence file. A tracking "
                 "benchmark's sequence folder brings its own frames and boxes: FE240hz / FE108 (img/ with stack240/ "
                 "event frames or the raw events.aedat4), VisEvent (vis_imgs/, event_imgs/) and COESOT (NAME_aps/, "
                 "NAME_dvs/).",
                 inputs=("recording", "boxes"),
                 outputs=[Output(kind="file_or_dataset", companions=_imported_file, companions_replaced=True)])
    p.add_argument("recording", help="the recording file, or a benchmark's sequence folder")
    p.add_argument("--boxes", default=None, help="box file: 't_us x y w h' per line")
    p.add_argument("-o", "--out", required=True,
                   help="output sequence file (.h5), or a dataset folder to add the recording to (index.json updated; "
                   "a sequence of the same name is replaced)")
    p.add_argument("--name", default=None, help="sequence name in a dataset folder (default: the recording's stem)")
    p.add_argument("--split", default="test", help="split of the sequence in a dataset folder (default test)")
    p.add_argument("--width", type=int, default=None, help="sensor width (AEDAT 2/3 of an unknown chip)")
    p.add_argument("--height", type=int, default=None, help="sensor height")

    p = add_verb(verbs, "info", _info, help="summarize a dataset: sequences, durations, event rates, splits",
                 example="neurosim data info dataset --json")
    p.add_argument("dataset", help="dataset folder (with index.json)")


def _imported_file(out: pathlib.Path, args: argparse.Namespace) -> list[pathlib.Path]:
    """The sequence file ``data import`` writes into a dataset folder ``out`` (none for an .h5 ``out``)."""
    from benchmarks_data.recordings import sequence_name

    if out.suffix.lower() in (".h5", ".hdf5"):
        return []
    return [out / "sequences" / f"{sequence_name(args.recording, args.name)}.h5"]


def _parallel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster: a scheduler address (tcp://host:8786) or 'local' for a LocalCluster with --workers")
    p.add_argument("--preset", default=None, help="simulator preset (e.g. davis346, davis240, clean)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split (default 0)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="fraction of sequences in the test split (default 0.2)")
    p.add_argument("--val-fraction", type=float, default=0.0, help="fraction in the val split (default 0)")
    p.add_argument("--split-list", default=None, help="splits from a file (JSON {split: [names]} or 'NAME SPLIT' lines)")


def dvs_params(args: argparse.Namespace, table: str | None = None) -> Any:
    """DvsParams from --preset, then --config, then --set.

    With ``table`` (e.g. ``"synth"``), the TOML table of that name and ``--set table.key=v``
    overrides are split off and returned as a second value (a dict).
    """
    from neurosim.config import apply_overrides, from_dict, load_toml, to_dict
    from sim_events import params as sim_params

    values: dict[str, Any] = {}
    if getattr(args, "preset", None):
        values = to_dict(sim_params.preset(args.preset))
    if getattr(args, "config", None):
        values.update(load_toml(args.config))
    values = apply_overrides(values, getattr(args, "overrides", []) or [])
    extra = values.pop(table, {}) if table else {}
    params = from_dict(sim_params.DvsParams, values)
    return (params, extra) if table else params


def _check_common(args: argparse.Namespace) -> None:
    """Reject impossible numbers before any work or output."""
    from neurosim.extras import ensure_installed

    if args.scheduler:
        if args.scheduler != "local" and not re.fullmatch(r"(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+(:\d+)?/?|[\w.-]+:\d+", args.scheduler):
            raise ParameterError(f"--scheduler {args.scheduler!r} is not a scheduler address: give 'local' or e.g. tcp://host:8786")
        ensure_installed(["distributed"], f"neurosim data {args.verb} --scheduler", prefer="dask")
    if not 0 < args.aps_rate <= 1e6:
        raise ParameterError(f"APS rate {args.aps_rate} Hz is impossible: give --aps-rate in (0, 1000000]")
    if args.workers < 1:
        raise ParameterError(f"--workers {args.workers} is impossible: give 1 or more")
    for name in ("test_fraction", "val_fraction"):
        v = getattr(args, name)
        if not 0 <= v < 1:
            raise ParameterError(f"--{name.replace('_', '-')} {v} must be in [0, 1)")
    if args.test_fraction + args.val_fraction >= 1:
        raise ParameterError(f"--test-fraction {args.test_fraction} + --val-fraction {args.val_fraction} leave no training "
                             "sequences: make their sum less than 1")


def _progress(ctx: Any, total: int, what: str):
    bar = ctx.progress(total=total, desc=what, unit="seq")

    def update(result: dict) -> None:
        bar.update(1)

    return bar, update


def _finish(report: dict, ctx: Any) -> dict:
    for f in report["failed"]:
        ctx.say(f"failed: {f['name']}: {f['reason']}")
    ctx.say(f"{report['sequences']} sequences ({len(report['built'])} built, {len(report['skipped'])} already complete, "
            f"{len(report['failed'])} failed), {report['input_frames']} input frames, {report['events']} events, "
            f"{report['seconds']} s -> {report['index']}")
    if report["sequences"] == 0:
        first = report["failed"][0]["reason"] if report["failed"] else "no sequences"
        raise InputError(f"nothing could be built ({len(report['failed'])} sequences failed; first: {first})")
    return report


def _check_resources(args: argparse.Namespace, width: int, height: int, aps_frames: float) -> None:
    """Refuse a build whose workers' memory or APS frames cannot fit (neurosim.resources)."""
    from neurosim.resources import check_disk, check_memory, simulate_needs

    memory, disk = simulate_needs(width, height, int(aps_frames))
    workers = max(1, int(args.workers or 1))
    check_memory(memory * workers, f"{workers} worker(s) simulating {width}x{height} sensors",
                 "use fewer --workers or a smaller size")
    check_disk(args.out, disk, f"writing {int(aps_frames)} APS frames of {width}x{height}",
               "free space there, write elsewhere with -o, or ask for fewer sequences, frames or a lower --aps-rate")


def _build(args: argparse.Namespace, ctx: Any) -> dict:
    from benchmarks_data.build import build_dataset
    from benchmarks_data.layouts import discover
    from sim_events.sources import parse_resize

    _check_common(args)
    params = dvs_params(args)
    n = len(discover(args.source, args.fps))
    if args.resize:
        _check_resources(args, *parse_resize(args.resize), aps_frames=0)
    bar, update = _progress(ctx, n, "build")
    with bar:
        report = build_dataset(args.source, args.out, params, aps_rate_hz=args.aps_rate, seed=args.seed,
                               workers=args.workers, scheduler=args.scheduler, fps=args.fps,
                               resize=parse_resize(args.resize), split_seed=args.split_seed,
                               test_fraction=args.test_fraction, val_fraction=args.val_fraction,
                               split_list=args.split_list, progress=update)
    return _finish(report, ctx)


def _synth(args: argparse.Namespace, ctx: Any) -> dict:
    from benchmarks_data.synth import SynthConfig, synth_dataset
    from sim_events.sources import parse_resize

    _check_common(args)
    if args.sequences < 1:
        raise ParameterError(f"--sequences {args.sequences} is impossible: give 1 or more")
    w, h = parse_resize(args.size)
    params, extra = dvs_params(args, table="synth")
    from neurosim.config import from_dict

    cfg = from_dict(SynthConfig, {"width": w, "height": h, "n_frames": args.frames, "fps": args.fps, **extra}, where="synth.")
    cfg.check()
    _check_resources(args, w, h, args.sequences * min(cfg.n_frames, -(-cfg.n_frames * args.aps_rate // cfg.fps)))
    bar, update = _progress(ctx, args.sequences, "synth")
    with bar:
        report = synth_dataset(args.out, n_sequences=args.sequences, seed=args.seed, config=cfg, params=params,
                               aps_rate_hz=args.aps_rate, workers=args.workers, scheduler=args.scheduler,
                               split_seed=args.split_seed, test_fraction=args.test_fraction,
                               val_fraction=args.val_fraction, split_list=args.split_list, progress=update)
    return _finish(report, ctx)


def _import(args: argparse.Namespace, ctx: Any) -> dict:
    from benchmarks_data.recordings import import_recording

    if (args.width is None) != (args.height is None):
        raise ParameterError("give both --width and --height, or neither")
    out = pathlib.Path(args.out)
    if out.suffix.lower() in (".h5", ".hdf5"):
        result = import_recording(args.recording, args.boxes, out, args.width, args.height)
    else:
        from benchmarks_data.recordings import import_to_dataset

        result = import_to_dataset(args.recording, args.boxes, out, name=args.name, split=args.split,
                                   width=args.width, height=args.height)
        out = out / "sequences" / f"{result['name']}.h5"
    ctx.say(f"{result['events']} events, {result['frames']} frames, {result['boxes']} boxes "
            f"({result['width']}x{result['height']}) -> {out}")
    return result


def _info(args: argparse.Namespace, ctx: Any) -> dict:
    from benchmarks_data.info import dataset_info

    info = dataset_info(args.dataset)
    ctx.say(f"dataset {info['dataset']}: {info['num_sequences']} sequences, {info['total_duration_s']:.2f} s, "
            f"{info['total_events']} events, sensor {info['sensor']}, APS {info['aps_rate_hz']} Hz")
    ctx.say(f"{'sequence':<24} {'split':<8} {'size':>9} {'frames':>7} {'aps':>5} {'dur s':>7} {'events':>10} {'Mev/s':>7}")
    for s in info["sequences"]:
        ctx.say(f"{s['name']:<24} {s['split']:<8} {s['width']:>4}x{s['height']:<4} {s['input_frames']:>7} {s['aps_frames']:>5} "
                f"{s['duration_s']:>7.2f} {s['events']:>10} {s['event_rate_mev_s']:>7.3f}")
    for k, v in info["splits"].items():
        ctx.say(f"split {k}: {len(v)} sequences")
    for f in info["failed"]:
        ctx.say(f"failed: {f['name']}: {f['reason']}")
    return info
