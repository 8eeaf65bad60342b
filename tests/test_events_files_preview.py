"""Preview composition: colours by net polarity, dimmed frame, scaling, box."""

import numpy as np

from sim_events.formats import make_events
from sim_events.formats.preview import BOX_BGR, OFF_BGR, ON_BGR, compose_preview


def test_net_polarity_colours_dimmed_frame_scale_and_box():
    ev = make_events([1, 1, 1, 2, 3, 3], [1, 1, 1, 2, 3, 3], np.arange(6), [1, 1, 0, 0, 1, 0])
    grey = np.full((6, 8), 200, np.uint8)
    img = compose_preview(ev, 8, 6, grey=grey, box=np.array([4.0, 0.0, 3.0, 2.0]), scale=2)
    assert img.shape == (12, 16, 3)
    assert (img[2:4, 2:4] == ON_BGR).all()  # +2 -1: ON
    assert (img[4:6, 4:6] == OFF_BGR).all()  # -1: OFF
    assert (img[6:8, 6:8] == ON_BGR).all()  # +1 -1: a tie counts as ON
    assert (img[10:12, 0:2] == 120).all()  # 200 dimmed to 60 %
    assert tuple(img[0, 10]) == BOX_BGR and tuple(img[4, 12]) == BOX_BGR  # box from (8,0) to (14,4)
    nan_box = compose_preview(ev[:0], 8, 6, box=np.full(4, np.nan))
    assert nan_box.sum() == 0  # no frame, no events, absent box: black
