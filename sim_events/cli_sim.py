"""``neurosim events simulate | calibrate | compare``: thin shells over the simulator API.

Imports stay lazy (no torch on this path): the heavy modules load inside the handlers.
"""

from __future__ import annotations

import argparse

EXAMPLE_SIMULATE = "neurosim events simulate video.mp4 -o seq.h5 --preset davis346 --resize 346x260"
EXAMPLE_CALIBRATE = "neurosim events calibrate davis346_recording.npz -o cal.toml"
EXAMPLE_COMPARE = "neurosim events compare sim.h5 real.aedat4 --t0 0.5 --t1 1.1 --json"


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    """Add ``simulate``, ``calibrate`` and ``compare`` to the ``neurosim events`` group."""
    from neurosim.cli import add_verb, defaults_of
    from neurosim.io import Output

    p = add_verb(verbs, "simulate", _simulate, help="convert a video / image folder / .npz to DVS events + APS frames",
                 example=EXAMPLE_SIMULATE, params=defaults_of("sim_events.params:preset", "davis346"),
                 inputs=("input", "timestamps"), outputs=[Output()],
                 description="Simulate a DAVIS-style event camera watching INPUT (video, image folder, NFS-style "
                 "sequence folder, or .npz with frames and frame_ts). Writes a sequence .h5 with the events, "
                 "APS frames every --aps-every input frames and the boxes of NFS inputs. Parameters: --preset, "
                 "then --config (e.g. the TOML of `neurosim events calibrate`), then --set key=value.")
    p.add_argument("input", metavar="INPUT", help="video file, image folder, NFS sequence folder or frames .npz")
    p.add_argument("-o", "--out", required=True, metavar="OUT.h5", help="output sequence file")
    p.add_argument("--preset", default="davis346",
                   help="sensor preset: davis346 (default), davis240, dvxplorer, prophesee_gen4, clean")
    p.add_argument("--fps", type=float, default=None, help="frame rate of an image folder (or to override a video's)")
    p.add_argument("--timestamps", metavar="FILE", default=None,
                   help="frame times, one per line (integers: µs; decimals: seconds)")
    p.add_argument("--resize", metavar="WxH", default=None, help="resize frames to the sensor size, e.g. 346x260")
    p.add_argument("--aps-every", type=int, default=1, help="write an APS frame every N input frames (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = add_verb(verbs, "calibrate", _calibrate, help="fit the simulator's parameters to a real recording",
                 example=EXAMPLE_CALIBRATE, params=defaults_of("sim_events.params:preset", "davis346"),
                 inputs=("recording",), outputs=[Output()],
                 description="Fit thresholds, mismatch, refractory period, bandwidth, noise and leak rates, hot "
                 "pixels and the input-frame response to a real recording with APS frames and DVS events "
                 "(recording .npz, AEDAT4 with frames, or a sequence .h5; an FE240hz folder with 240 Hz event frames "
                 "gets its low-light response and per-pixel background fitted instead). Choices are made on held-out "
                 "time blocks. Writes a TOML usable as --config of "
                 "`neurosim events simulate` and prints the fit metrics.")
    p.add_argument("recording", metavar="RECORDING", help="real recording with frames and events")
    p.add_argument("-o", "--out", required=True, metavar="CAL.toml", help="output parameter file")
    p.add_argument("--preset", default="davis346", help="starting preset (default davis346)")
    p.add_argument("--passes", type=int, default=2, help="rounds of the coordinate search (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--folds", type=int, default=None,
                   help="contiguous time blocks for the held-out choices (default: 2-3 by length; 1 = in-sample)")
    p.add_argument("--holdout", action="store_true",
                   help="also calibrate on each half and score the other half (an outer check no choice saw; ~2x time)")

    p = add_verb(verbs, "compare", _compare, help="fidelity metrics of simulated vs real events",
                 example=EXAMPLE_COMPARE,
                 description="Compare two event files over a time window: count ratio, per-pixel ON/OFF count "
                 "Pearson r, event-rate r in frame-interval bins, phase CV, and event F1 at 5 ms "
                 "(see docs/explanation/references.md §1).")
    p.add_argument("sim", metavar="SIM", help="simulated event file")
    p.add_argument("real", metavar="REAL", help="real event file")
    p.add_argument("--t0", type=float, default=None, help="window start, seconds from the real file's first frame (or event)")
    p.add_argument("--t1", type=float, default=None, help="window end, seconds from the same origin")
    p.add_argument("--frame-interval-ms", type=float, default=None,
                   help="frame interval for rate bins and phase (default: median of the real file's frame interval, else 40)")


def _params(args: argparse.Namespace):
    from neurosim.cli import params_from_args
    from sim_events.params import DvsParams, preset_dict

    return params_from_args(args, DvsParams, base=preset_dict(args.preset)).validate()


def _simulate(args: argparse.Namespace, ctx) -> dict:
    import cv2

    from neurosim.io import check_writable
    from sim_events.simulator import simulate
    from sim_events.sources import open_frames, parse_resize

    cv2.setNumThreads(1)
    params = _params(args)
    check_writable(args.out)
    src = open_frames(args.input, fps=args.fps, timestamps=args.timestamps, resize=parse_resize(args.resize))
    _check_resources(src, args)
    summary = simulate(src, args.out, params, seed=args.seed, aps_every=args.aps_every,
                       progress=lambda it: ctx.progress(it, desc="simulate", unit="frame"))
    ctx.say(f"wrote {summary['output']}: {summary['events']} events ({summary['on_events']} ON) and "
            f"{summary['aps_frames']} APS frames from {summary['frames']} frames, {summary['width']}x{summary['height']}, "
            f"{summary['frames_per_second']:g} frames/s")
    return summary


def _check_resources(src, args: argparse.Namespace) -> None:
    """Refuse a simulation whose working memory or APS frames cannot fit (neurosim.resources)."""
    from neurosim.resources import check_disk, check_memory, simulate_needs

    aps = None if src.num_frames is None else -(-src.num_frames // max(1, int(args.aps_every)))
    memory, disk = simulate_needs(src.width, src.height, aps)
    size = f"{src.width}x{src.height}"
    check_memory(memory, f"simulating a {size} sensor", "give a smaller --resize")
    check_disk(args.out, disk, f"writing {aps} APS frames of {size}",
               "free space there, write elsewhere with -o, or give a larger --aps-every or a smaller --resize")


def _fmt(m: dict) -> str:
    keys = ["count_ratio", "pixel_r_on", "pixel_r_off", "rate_r", "phase_cv", "phase_cv_real", "f1_5ms",
            "precision", "recall", "activity_ratio", "pixel_activity_r_on", "pixel_activity_r_off", "window_activity_r"]
    return ", ".join(f"{k} {m[k]:.3f}" for k in keys if k in m)


def _calibrate(args: argparse.Namespace, ctx) -> dict:
    import cv2

    from neurosim.errors import ParameterError
    from neurosim.io import check_writable
    from sim_events.calibrate import calibrate, write_params_toml

    cv2.setNumThreads(1)
    if args.passes < 1:
        raise ParameterError(f"--passes {args.passes} must be >= 1")
    if args.folds is not None and args.folds < 1:
        raise ParameterError(f"--folds {args.folds} must be >= 1")
    base = _params(args)
    check_writable(args.out)
    from sim_events.formats import detect_format

    if detect_format(args.recording) == "fe240hz":  # the real side is event frames: activity metrics
        from sim_events.calibrate import calibrate_event_frames

        params, metrics = calibrate_event_frames(args.recording, seed=args.seed, base=base, progress=ctx.say)
        lines = [f"DVS simulator parameters fitted by `neurosim events calibrate` to the event frames of {args.recording}",
                 f"fit windows (first half): {_fmt(metrics['fit'])}",
                 f"held-out windows (second half; no choice saw them): {_fmt(metrics['held_out'])}",
                 f"the base parameters on the held-out windows: {_fmt(metrics['base_held_out'])}"]
        write_params_toml(params, args.out, "\n".join(lines))
        for line in lines[1:]:
            ctx.say(line)
        return {"output": str(args.out), "params": params.to_dict(), "metrics": metrics}
    params, metrics = calibrate(args.recording, seed=args.seed, base=base, passes=args.passes, folds=args.folds,
                                holdout=args.holdout, progress=ctx.say)
    lines = [f"DVS simulator parameters fitted by `neurosim events calibrate` to {args.recording}",
             f"fit on that recording (in-sample): {_fmt(metrics)}",
             f"held-out blocks ({metrics['folds']}, each simulated from a fresh start; they guided the choices): "
             f"{_fmt(metrics['cv'])}"]
    if metrics.get("holdout"):
        lines.append(f"outer holdout (fit on one half, scored on the other; no choice saw it): {_fmt(metrics['holdout'])}")
    write_params_toml(params, args.out, "\n".join(lines))
    for line in lines[1:]:
        ctx.say(line)
    ctx.say(f"wrote {args.out} (use it with: neurosim events simulate INPUT --config {args.out} -o OUT.h5)")
    return {"output": str(args.out), "params": params.to_dict(), "metrics": metrics}


def _compare(args: argparse.Namespace, ctx) -> dict:
    from sim_events.metrics import compare_files

    m = compare_files(args.sim, args.real, args.t0, args.t1, args.frame_interval_ms)
    origin = m.pop("origin_us")
    ctx.say(f"window {(m['t0_us'] - origin) / 1e6:.3f}–{(m['t1_us'] - origin) / 1e6:.3f} s, {m['sim_events']} simulated vs "
            f"{m['real_events']} real events")
    ctx.say(_fmt(m))
    return m
