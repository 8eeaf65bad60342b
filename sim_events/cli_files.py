"""``neurosim events info`` and ``neurosim events render``: thin shells over sim_events.formats."""

from __future__ import annotations

import argparse

EXAMPLE_INFO = "neurosim events info recording.aedat4 --json"
EXAMPLE_RENDER = "neurosim events render seq.h5 -o preview.mp4 --fps 30 --window-ms 10"


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    """Add ``info`` and ``render`` to the ``neurosim events`` group."""
    from neurosim.cli import add_verb
    from neurosim.io import Output

    p = add_verb(verbs, "info", _info, help="summarize an event file (sensor, duration, counts, frames, boxes)",
                 example=EXAMPLE_INFO,
                 description="Print the sensor size, time span, event count and rate, ON fraction, frames "
                 "and boxes of a sequence .h5, AEDAT4, Prophesee EVT2/EVT3 .raw, N-MNIST .bin or recording .npz.")
    p.add_argument("file", metavar="FILE", help="event file")

    p = add_verb(verbs, "render", _render, help="render an event file as a preview video (ON/OFF over frames)",
                 example=EXAMPLE_RENDER, inputs=("file",), outputs=[Output()],
                 description="Write a video of an event file: events of each window coloured ON (green) / "
                 "OFF (red) over the latest APS frame, target box in yellow. mp4v codec.")
    p.add_argument("file", metavar="FILE", help="event file")
    p.add_argument("-o", "--out", required=True, metavar="OUT.mp4", help="output video (.mp4, .avi)")
    p.add_argument("--fps", type=float, default=30.0, help="output frames per second of recording time (default 30)")
    p.add_argument("--window-ms", type=float, default=None, help="event window per output frame in ms (default 1000/fps)")
    p.add_argument("--play-fps", type=float, default=None, help="playback rate of the video (default: --fps, real time; lower = slow motion)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many output frames")


def _info(args: argparse.Namespace, ctx) -> dict:
    from sim_events.formats.info import file_info, format_info

    info = file_info(args.file)
    ctx.say(format_info(info))
    return info


def _render(args: argparse.Namespace, ctx) -> dict:
    from sim_events.formats.preview import render_preview

    result = render_preview(args.file, args.out, fps=args.fps, window_ms=args.window_ms,
                            max_frames=args.max_frames, play_fps=args.play_fps, progress=lambda it: ctx.progress(it, desc="render", unit="frame"))
    ctx.say(f"wrote {result['out']}: {result['frames']} frames at {result['fps']:g} fps, "
            f"{result['window_ms']:g} ms windows, {result['width']}x{result['height']}")
    return result
