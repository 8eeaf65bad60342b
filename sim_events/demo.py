"""The ``sim_events`` stage of ``neurosim demo``: generated scene → DAVIS346 events → preview.

Renders the default procedural scene (346×260, 240 fps, 1 s: textured objects moving fast
over a textured background, target boxes known), simulates it with the DAVIS346 preset and
APS frames at 30 Hz (every 8th input frame) into ``outdir/sequence.h5``, and renders
``outdir/preview.mp4`` (ON/OFF events over the frames, target box drawn; 4× slow motion).
"""

from __future__ import annotations

import pathlib
from typing import Callable

WIDTH, HEIGHT, FPS, N_FRAMES, N_OBJECTS = 346, 260, 240.0, 240, 3
APS_EVERY = 8  # 240 fps / 8 = 30 Hz APS
PREVIEW_FPS, PREVIEW_PLAY_FPS = 120.0, 30.0


def davis346_params():
    """The simulator's DAVIS346 preset."""
    from sim_events import params

    return params.preset("davis346")


def run(outdir: pathlib.Path, summary: dict, say: Callable[..., None], seed: int = 0) -> dict:
    """Render, simulate and preview the demo scene; returns paths and counts for summary.json."""
    from sim_events.formats.info import file_info
    from sim_events.formats.preview import render_preview
    from sim_events.scene import render_scene
    from sim_events.simulator import simulate

    outdir = pathlib.Path(outdir)
    scene = render_scene(WIDTH, HEIGHT, fps=FPS, n_frames=N_FRAMES, n_objects=N_OBJECTS, seed=seed)
    seq_path = outdir / "sequence.h5"
    say(f"events: simulating {scene.source} with the DAVIS346 preset -> {seq_path}")
    simulate(scene, seq_path, davis346_params(), seed=seed, aps_every=APS_EVERY)
    info = file_info(seq_path)
    preview = outdir / "preview.mp4"
    render = render_preview(seq_path, preview, fps=PREVIEW_FPS, play_fps=PREVIEW_PLAY_FPS)
    say(f"events: {info['events']:,} events ({info['event_rate_hz'] or 0:,.0f} ev/s, ON fraction "
        f"{info['on_fraction']}), {info['frames']} APS frames, {info['boxes']} boxes; preview {preview}")
    return {
        "sequence": str(seq_path), "preview": str(preview), "scene": scene.source,
        "input_frames": N_FRAMES, "input_fps": FPS, "width": WIDTH, "height": HEIGHT,
        "events": info["events"], "event_rate_hz": info["event_rate_hz"], "on_fraction": info["on_fraction"],
        "frames": info["frames"], "frame_rate_hz": info["frame_rate_hz"], "boxes": info["boxes"],
        "preview_frames": render["frames"],
    }
