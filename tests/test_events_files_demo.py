"""The sim_events stage of ``neurosim demo``: scene -> DAVIS346 simulation -> sequence + preview."""

import cv2
import numpy as np

from sim_events import demo
from sim_events.formats.sequence import read_sequence
from sim_events.scene import render_scene


def test_demo_stage_writes_a_consistent_sequence_and_preview(tmp_path):
    said = []
    result = demo.run(tmp_path, {"stages": {}}, said.append, seed=0)
    seq = read_sequence(result["sequence"])
    scene = render_scene(demo.WIDTH, demo.HEIGHT, fps=demo.FPS, n_frames=demo.N_FRAMES, n_objects=demo.N_OBJECTS, seed=0)
    assert (seq.width, seq.height) == (346, 260)
    assert result["events"] == len(seq.events) > 10_000
    assert 0.3 < seq.events["p"].mean() < 0.7
    # APS at 30 Hz: every 8th input frame, exactly the scene's frames at the scene's times
    assert result["frames"] == len(seq.frames) == 30
    np.testing.assert_array_equal(seq.frame_t, scene.frame_t[::8])
    np.testing.assert_array_equal(seq.frames[3], scene.frame(24))
    # the target's boxes are carried
    np.testing.assert_array_equal(seq.boxes_t, scene.boxes[0])
    np.testing.assert_array_equal(seq.boxes_xywh, scene.boxes[1])
    # events fall inside the scene's time span and the sensor
    assert seq.events["t"].min() >= 0 and seq.events["t"].max() <= scene.frame_t[-1]
    cap = cv2.VideoCapture(result["preview"])
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == result["preview_frames"] == 120
    assert said  # progress lines went through `say`
