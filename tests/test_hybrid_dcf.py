"""The online target model (hybrid.dcf): closed-form shifts and scales, the int8 conv layer, real video,
and its place as the hybrid's ANN branch (target_model = "dcf")."""

import dataclasses
import sys

import numpy as np
import pytest

from hybrid import metrics
from hybrid.baselines import StaticBox, make_baseline, track_frames
from hybrid.data import Track
from hybrid.dcf import (DCFParams, DCFTracker, constrained_filter, features, gaussian_label_dft, gradient_filters, hann,
                        sample_region, support_mask)
from neurosim.errors import ParameterError

cv2 = pytest.importorskip("cv2")
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_hybrid_baselines import moving_square  # noqa: E402


def with_random_events(track: Track, n: int, seed: int) -> Track:
    """``track`` with ``n`` events uniform over its pixels, times and polarities (its events replaced)."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=track.events.dtype)
    ev["t"] = np.sort(rng.integers(0, int(track.frame_t[-1]), n))
    ev["x"], ev["y"] = rng.integers(0, track.width, n), rng.integers(0, track.height, n)
    ev["p"] = rng.integers(0, 2, n)
    track.events = ev
    return track


def texture(h=160, w=200, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.uint8), (7, 7), 0)


@pytest.mark.parametrize("shift", [(5, -3), (-7, 4), (2, 6)])
def test_a_known_translation_is_recovered_to_a_fraction_of_a_pixel(shift):
    frame = texture()
    box = np.array([80.0, 60.0, 30.0, 30.0])
    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    moved = cv2.warpAffine(frame, m, frame.shape[::-1], borderMode=cv2.BORDER_REFLECT)
    tracker = DCFTracker(DCFParams(scales=1))
    tracker.init(frame, box)
    out = tracker.update(moved)
    np.testing.assert_allclose(out[:2] - box[:2], shift, atol=0.6)
    np.testing.assert_array_equal(out[2:], box[2:])


@pytest.mark.parametrize("zoom", [1.1, 1 / 1.1, 1.0])
def test_a_known_zoom_picks_that_scale(zoom):
    frame = texture(seed=1)
    box = np.array([85.0, 65.0, 30.0, 30.0])
    c = box[:2] + box[2:] / 2
    m = cv2.getRotationMatrix2D((float(c[0] - 0.5), float(c[1] - 0.5)), 0.0, zoom)
    zoomed = cv2.warpAffine(frame, m, frame.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    tracker = DCFTracker(DCFParams(scales=3, scale_step=1.1))
    tracker.init(frame, box)
    _, scale, _ = tracker.detect(zoomed)
    assert scale == pytest.approx(zoom)


def _sample(seed=0, channels=3, n=16):
    """Random features (C, n, n), their spectra, and a Gaussian label (σ 1.5 cells) in space and spectrum."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(channels, n, n))
    d = np.minimum(np.arange(n), n - np.arange(n)).astype(np.float64)
    ys = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * 1.5**2))
    return xs, np.fft.rfft2(xs), ys, gaussian_label_dft(n, 1.5)


def test_the_constrained_filter_with_a_full_support_is_the_closed_form_ridge_solution():
    """M = 1 everywhere: ADMM (fixed μ) converges to the multichannel ridge solution of one sample,
    Ĝ_c = Ŷ·X̂_c* / (Σ_c |X̂_c|² + λ) (Sherman–Morrison), which the unconstrained tracker uses."""
    _, x, _, y = _sample()
    lam = 0.5
    closed = y[None] * np.conj(x) / ((x * np.conj(x)).real.sum(0) + lam)[None]
    g = constrained_filter(x, y, np.ones((16, 16), np.float32), lam, iterations=100, mu=1.0, mu_growth=1.0)
    np.testing.assert_allclose(g, closed, rtol=1e-9, atol=1e-9)


def test_the_constrained_filter_is_the_ridge_fit_of_filters_zero_outside_the_support():
    """Reference: the dense least-squares solve over the filter taps inside M, the response built
    by circular shifts (r = Σ_c Σ_q g_c(q)·roll(x_c, q)), min ½‖y − r‖² + ½λ‖g‖²."""
    xs, x, ys, y = _sample(seed=1)
    n, lam = 16, 1.0
    mask = support_mask(n, np.array([4.0, 6.0]))  # 5 × 7 cells around cell (8, 8)
    assert mask.sum() == 35 and mask[8, 8] == 1 and mask[8, 11] == 0 and mask[11, 10] == 1
    taps = np.argwhere(mask > 0)
    a = np.stack([np.roll(xs[c], (qy, qx), axis=(0, 1)).ravel() for c in range(3) for qy, qx in taps], axis=1)
    expect = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ ys.ravel())
    g = np.fft.irfft2(constrained_filter(x, y, mask, lam, iterations=500, mu=30.0, mu_growth=1.0), s=(n, n))
    np.testing.assert_allclose(g[:, taps[:, 0], taps[:, 1]].ravel(), expect, rtol=0, atol=1e-6 * np.abs(expect).max())
    assert np.abs(g * (1 - mask)).max() < 1e-6 * np.abs(expect).max()


def test_region_sampling_at_scale_one_is_a_plain_slice():
    frame = texture()
    patch = sample_region(frame, np.array([50.0, 40.0]), 32.0, 32)  # covers x ∈ [34, 66), y ∈ [24, 56)
    np.testing.assert_array_equal(patch, frame[24:56, 34:66].astype(np.float32) / np.float32(255.0))


def test_first_layer_is_an_int8_conv_giving_directional_derivatives():
    """On a ramp I = a·x + b·y the conv of G_k is exactly 2(a·c_k + b·s_k)/64 (torch conv2d as the reference)."""
    torch = pytest.importorskip("torch")
    w = gradient_filters(8)
    assert w.dtype == np.int8 and np.abs(w).max() == 64
    a, b = 0.003, -0.002
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float64)
    ramp = torch.tensor(a * xx + b * yy)[None, None]
    out = torch.nn.functional.conv2d(ramp, torch.tensor(w, dtype=torch.float64)[:, None] / 64)[0]
    c, s = w[:, 1, 2].astype(np.float64), w[:, 2, 1].astype(np.float64)
    expected = 2 * (a * c + b * s) / 64
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(expected[:, None, None], out.shape), rtol=1e-12, atol=1e-15)
    # the features of a ramp peak in the orientation channel nearest its gradient direction
    phi = features((0.5 + 10 * (a * xx + b * yy)).repeat(4, 0).repeat(4, 1).astype(np.float32)[:64, :64], 8, hann(16))
    k = int(np.argmax(phi[:8, 8, 8]))
    assert k == int(np.round(np.arctan2(b, a) / (2 * np.pi / 8))) % 8


def test_same_frames_give_the_same_boxes_bit_for_bit():
    track = moving_square()
    a = track_frames(DCFTracker(), track).boxes
    b = track_frames(DCFTracker(), track).boxes
    np.testing.assert_array_equal(a, b)
    sc = metrics.evaluate({"s": (a, track_frames(StaticBox(), track).gt)})
    assert sc.auc > 0.6, sc.auc


def _crossing(shared_data) -> Track:
    seq = shared_data / "tracking" / "Crossing"
    frames = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((seq / "img").glob("*.jpg"))])
    gt = np.loadtxt(seq / "groundtruth_rect.txt", ndmin=2)
    gt[:, :2] -= 1  # OTB boxes are 1-based
    t = np.arange(len(frames), dtype=np.int64) * 33_333
    events = np.zeros(0, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
    return Track("Crossing", frames, t, events, t.copy(), gt.astype(np.float32), frames.shape[2], frames.shape[1])


def test_on_a_real_otb_sequence_it_is_in_the_class_of_opencv_trackers(shared_data):
    """OTB Crossing (real, grey): far above a static box and above OpenCV's KCF through the same harness."""
    track = _crossing(shared_data)
    auc = {n: metrics.evaluate({"c": (r.boxes, r.gt)}).auc for n, r in (
        ("dcf", track_frames(DCFTracker(), track)), ("kcf", track_frames(make_baseline("kcf"), track)),
        ("static", track_frames(StaticBox(), track)))}
    assert auc["dcf"] > auc["static"] + 0.2 and auc["dcf"] > auc["kcf"], auc


def test_as_the_hybrids_ann_branch_it_gives_the_ann_only_boxes():
    """ann_only with target_model="dcf" holds the DCF's frame box over each interval, as the frame harness does."""
    pytest.importorskip("torch")
    from hybrid.checkpoint import load_model
    from hybrid.track import track_sequence

    model = load_model("default", "ann_only")
    model.cfg = dataclasses.replace(model.cfg, target_model="dcf")
    track = moving_square()
    hybrid = track_sequence(model, track)
    frame = track_frames(DCFTracker(), track, snn_rate_hz=model.cfg.snn_rate_hz)
    np.testing.assert_array_equal(hybrid.times, frame.times)
    # the hybrid hands the filter its own box back through float32 tensors: a few thousandths of a pixel
    np.testing.assert_allclose(hybrid.boxes, frame.boxes, atol=1e-2)


def test_config_checks():
    pytest.importorskip("torch")
    from hybrid.model import ModelConfig

    with pytest.raises(ParameterError, match="target_model"):
        ModelConfig(target_model="siamfc").check()
    with pytest.raises(ParameterError, match="no_tcf"):
        ModelConfig(target_model="dcf", variant="no_tcf").check()
    with pytest.raises(ParameterError, match="snn_min_confidence"):
        ModelConfig(snn_min_confidence=1.5).check()
    for bad, match in ((dict(scales=2), "odd"), (dict(region_px=130), "multiple of 4"), (dict(learning_rate=2.0), "learning_rate")):
        with pytest.raises(ParameterError, match=match):
            DCFTracker(DCFParams(**bad))


def test_gate_freezes_steps_whose_response_is_flat():
    torch = pytest.importorskip("torch")
    from hybrid.model import gate_path

    peaked = torch.full((4, 4), -50.0)
    peaked[1, 2] = 50.0
    flat = torch.zeros(4, 4)
    responses = torch.stack([peaked, peaked, flat, peaked, peaked])[:, None]  # (T+1=5, B=1, 4, 4)
    positions = torch.tensor([[0.0, 0.0], [1.0, 0.0], [9.0, 9.0], [3.0, 1.0], [4.0, 1.0]])[:, None]
    gated = gate_path(positions, responses, 1.0, 0.5)[:, 0]
    # steps 1 and 4 move (both ends peaked); steps 2 and 3 touch the flat map and are frozen
    np.testing.assert_allclose(gated.numpy(), [[0, 0], [1, 0], [1, 0], [1, 0], [2, 0]])


def test_small_targets_keep_their_first_position_and_others_move():
    torch = pytest.importorskip("torch")
    from hybrid.model import hold_small_targets

    positions = torch.tensor([[[0.0, 0.0], [5.0, 5.0]], [[1.0, 2.0], [6.0, 7.0]], [[3.0, 1.0], [9.0, 9.0]]])  # (T+1=3, B=2, 2)
    wh = torch.tensor([[16.0, 9.0], [16.0, 16.0]])  # √(w·h) = 12 and 16 px
    held = hold_small_targets(positions, wh, 16.0)
    np.testing.assert_array_equal(held[:, 0].numpy(), [[0, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(held[:, 1].numpy(), positions[:, 1].numpy())  # 16 px is not under 16
    with pytest.raises(ParameterError, match="snn_min_target_px"):
        __import__("hybrid.model").model.ModelConfig(snn_min_target_px=-1.0).check()


def test_the_shipped_hybrid_holds_a_small_target_between_frames_like_its_frame_branch():
    """A 12-px target (under the shipped 16 px): between frames the full hybrid's box does not move,
    so it is x̂ = α_frame·start + (1 − α_frame)·x_ann for every step; a 30-px target moves with the events (confidence gate off)."""
    torch = pytest.importorskip("torch")
    from hybrid.checkpoint import load_model
    from hybrid.data import crop_origin, make_unit

    track = with_random_events(moving_square(n_frames=4), 6000, seed=1)
    model = load_model("default", "full")
    assert model.cfg.snn_min_target_px == 16.0
    model.cfg = dataclasses.replace(model.cfg, snn_min_confidence=0.0)  # random events: the confidence gate would hold both
    a = float(model.tcf.alphas[0].detach())
    moved = []
    for side in (12.0, 30.0):
        box = np.array([30.0, 25.0, side, side])
        x0, y0 = crop_origin(box, 64)
        unit = make_unit(track, 2, (x0, y0), 64, 33, 5)
        start = torch.tensor([[box[0] - x0, box[1] - y0, side, side]], dtype=torch.float32)
        ann = start + torch.tensor([[4.0, -3.0, 0, 0]])
        batch = {"frame": torch.from_numpy(unit["frame"][None]), "events": torch.from_numpy(unit["events"][None]),
                 "start_box": start}
        with torch.no_grad():
            boxes = model(batch, ann_estimate=ann)["boxes"][:, 0]
        moved.append(float((boxes[1:, :2] - boxes[:1, :2]).abs().max()))
        if side == 12.0:
            expect = a * start[0, :2] + (1 - a) * ann[0, :2]
            torch.testing.assert_close(boxes[:, :2], expect.expand(len(boxes), 2), rtol=0, atol=1e-5)
    assert moved[0] == 0.0 and moved[1] > 0.5, moved


@pytest.mark.parametrize("support", [0.0, 1.0])
def test_a_dark_frame_is_neither_searched_nor_learned(support):
    frame = texture()
    box = np.array([80.0, 60.0, 30.0, 30.0])
    tracker = DCFTracker(DCFParams(filter_support=support))
    tracker.init(frame, box)
    learned = (tracker.num if support == 0 else tracker.model_x).copy()
    dark = (frame // 32).astype(np.uint8)  # mean ≈ 4 DN, as the FE240hz dove's APS frames
    np.testing.assert_array_equal(tracker.update(dark), box)
    assert not tracker.usable
    np.testing.assert_array_equal(tracker.num if support == 0 else tracker.model_x, learned)
    tracker.update(frame)
    assert tracker.usable


def test_a_unit_without_a_usable_frame_is_tracked_with_the_events_alone():
    """ann_fresh=False (the frame was too dark to search): the full hybrid's boxes are snn_only's."""
    torch = pytest.importorskip("torch")
    from hybrid.checkpoint import load_model
    from hybrid.data import crop_origin, make_unit

    track = with_random_events(moving_square(n_frames=4), 4000, seed=0)
    box = track.box_at(track.frame_t[2:3])[0]
    x0, y0 = crop_origin(box, 64)
    unit = make_unit(track, 2, (x0, y0), 64, 33, 5)
    start = torch.tensor([[box[0] - x0, box[1] - y0, box[2], box[3]]], dtype=torch.float32)
    batch = {"frame": torch.from_numpy(unit["frame"][None]), "events": torch.from_numpy(unit["events"][None]),
             "start_box": start}
    with torch.no_grad():
        full = load_model("default", "full")(batch, ann_estimate=start + torch.tensor([[9.0, -7.0, 0, 0]]),
                                             ann_fresh=False)["boxes"]
        fresh = load_model("default", "full")(batch, ann_estimate=start + torch.tensor([[9.0, -7.0, 0, 0]]))["boxes"]
        snn = load_model("default", "snn_only")(batch)["boxes"]
    torch.testing.assert_close(full, snn, rtol=0, atol=0)
    assert not torch.equal(fresh, snn)


def test_the_exported_int8_feature_layers_match_the_float_features():
    """dcf_grad + dcf_pool in pure integer arithmetic (neurosim.intnet reference) ≈ 127.5 × the
    float pooled orientation means, within one unit of rounding, away from the border."""
    from hybrid.export import dcf_layers
    from neurosim.intnet import IntNetwork, run_reference

    inputs, layers = dcf_layers()
    net = IntNetwork("dcf", inputs, layers, ["dcf_pool"])
    patch = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (128, 128)).astype(np.uint8), (9, 9), 0)
    got = run_reference(net, {"frame": (patch.astype(np.int64) - 128)[None, None].repeat(3, 0)})["dcf_pool"]
    assert got.shape == (3, 8, 32, 32) and (got[0] == got[2]).all()
    p = patch.astype(np.float64) / 255
    gx, gy = p[1:-1, 2:] - p[1:-1, :-2], p[2:, 1:-1] - p[:-2, 1:-1]
    w = gradient_filters(8).astype(np.float64) / 64
    o = np.maximum(w[:, 1, 2, None, None] * gx + w[:, 2, 1, None, None] * gy, 0)  # interior pixels 1..126
    means = o[:, 3:123, 3:123].reshape(8, 30, 4, 30, 4).mean(axis=(2, 4))  # cells 1..30
    assert np.abs(got[0][:, 1:31, 1:31] - 127.5 * means).max() <= 1.0


def test_the_shipped_model_exports_and_maps_onto_four_tianjic_chips(tmp_path):
    pytest.importorskip("torch")
    from chip_models import prepare
    from hybrid.export import export_run
    from neurosim.errors import NeurosimError

    res = export_run("default", tmp_path / "int")
    # 3 scales at the APS frame + 7 event frames of one scale (240 Hz at 30 Hz APS) per APS frame
    assert res["meta"]["target_model"] == "dcf" and res["inputs"]["frame"] == [1, 128, 128, 3 + 7]
    _, net, _ = prepare(tmp_path / "int", "tianjic", overrides=["chips=4"])
    assert [layer.name for layer in net.layers][:2] == ["dcf_grad", "dcf_pool"]
    with pytest.raises(NeurosimError, match="dcf_grad needs 512 cores"):
        prepare(tmp_path / "int", "tianjic", overrides=["chips=3"])
