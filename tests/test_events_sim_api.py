"""simulate(): determinism, APS frames on the event clock, streaming, the sequence file it writes."""

import itertools

import h5py
import numpy as np
import pytest

from neurosim.cli import main
from sim_events.params import PRESETS, DvsParams, preset
from sim_events.simulator import simulate, simulate_frames


def events_bytes(path):
    with h5py.File(path, "r") as f:
        return b"".join(f["events"][k][:].tobytes() for k in ("x", "y", "t", "p")), int(f["t_offset"][()])


def test_same_input_params_and_seed_give_a_byte_identical_stream(shared_data, tmp_path, capsys):
    video = shared_data / "video" / "carphone_pristine.mp4"
    outs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = tmp_path / f"{name}.h5"
        # davis346 has shot noise and jitter: the seed matters
        assert main(["events", "simulate", str(video), "-o", str(out), "--seed", str(seed), "-q",
                     "--set", "shot_noise_rate_hz=0.5"]) == 0
        outs.append(events_bytes(out))
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    assert len(outs[0][0]) > 1000


def test_aps_frames_share_the_event_clock(shared_data, tmp_path):
    video = shared_data / "video" / "carphone_pristine.mp4"
    out = tmp_path / "s.h5"
    summary = simulate(str(video), out, preset("davis346"), seed=0, aps_every=4)
    with h5py.File(out, "r") as f:
        frame_t = f["frames/t"][:]
        data = f["frames/data"]
        t = f["events/t"][:] + f["t_offset"][()]
        assert data.shape == (30, 144, 176) and data.dtype == np.uint8
    step = round(4 * 1e6 / 29.97)
    np.testing.assert_allclose(np.diff(frame_t), step, atol=1)  # every 4th input frame, input times
    assert summary["frames"] == 120 and summary["aps_frames"] == 30 and summary["events"] == len(t)
    assert np.all(np.diff(t) >= 0) and t[0] >= frame_t[0]


def test_streaming_consumes_frames_lazily():
    consumed = []

    def endless():
        rng = np.random.default_rng(0)
        for i in itertools.count():
            consumed.append(i)
            yield i * 10_000, rng.integers(0, 255, (24, 32), dtype=np.uint8)

    chunks = list(itertools.islice(simulate_frames(endless(), 32, 24, DvsParams(), 0), 3))
    assert len(chunks) == 3 and len(consumed) == 4  # 3 frame pairs need 4 frames, no read-ahead


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_simulate(name, shared_data):
    p = preset(name)
    frames = zip(range(0, 200_000, 40_000), np.load(shared_data / "events" / "davis346_traffic_first_half.npz")["frames"][:5])
    n = sum(len(c) for c in simulate_frames(frames, 346, 260, p, 0))
    assert n > 100


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_simulate_the_fixture_frames(name, fixture_data):
    frames = np.load(fixture_data / "scene_davis346.npz")["frames"][:5]
    n = sum(len(c) for c in simulate_frames(zip(range(0, 200_000, 40_000), frames), 48, 36, preset(name), 0))
    assert n > 100


def test_calibrate_reads_a_sequence_file_and_writes_a_usable_config(shared_data, tmp_path, capsys):
    import json

    from sim_events.formats import load_recording_npz
    from sim_events.formats.sequence import write_sequence

    rec = load_recording_npz(shared_data / "events" / "davis346_traffic_first_half.npz")
    keep = rec.events["t"] <= rec.frame_t[9]
    rec.events, rec.frames, rec.frame_t = rec.events[keep], rec.frames[:10], rec.frame_t[:10]
    rec.frame_exposure_us = None
    seq = write_sequence(tmp_path / "real.h5", rec)
    cal = tmp_path / "cal.toml"
    assert main(["events", "calibrate", str(seq), "-o", str(cal), "--passes", "1", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.9 < out["metrics"]["count_ratio"] < 1.1 and out["metrics"]["pixel_r_off"] > 0.8
    assert cal.read_text().startswith("# DVS simulator parameters")
    # the TOML is a valid --config: re-simulating the same frames reproduces the fitted counts
    frames = tmp_path / "f.npz"
    np.savez(frames, frames=rec.frames, frame_ts=rec.frame_t)
    sim = tmp_path / "sim.h5"
    assert main(["events", "simulate", str(frames), "--config", str(cal), "-o", str(sim), "-q"]) == 0
    with h5py.File(sim, "r") as f:
        n = len(f["events/t"])
    assert abs(n / len(rec.events) - 1) < 0.15


def test_calibrate_reads_the_fixture_sequence_file_and_writes_a_usable_config(fixture_data, tmp_path, capsys):
    """Plain-clone variant: the 5-frame sequence of tests/data (simulated with θ 0.25/0.35)."""
    import json
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from sim_events.formats.sequence import read_sequence

    seq_path = fixture_data / "scene_sequence.h5"
    cal = tmp_path / "cal.toml"
    assert main(["events", "calibrate", str(seq_path), "-o", str(cal), "--passes", "1", "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.9 < out["metrics"]["count_ratio"] < 1.1 and out["metrics"]["pixel_r_off"] > 0.8
    fitted = tomllib.loads(cal.read_text())
    assert fitted["contrast_threshold_on"] < fitted["contrast_threshold_off"]  # simulated with 0.25 < 0.35
    seq = read_sequence(seq_path)
    frames = tmp_path / "f.npz"
    np.savez(frames, frames=seq.frames, frame_ts=seq.frame_t)
    sim = tmp_path / "sim.h5"
    assert main(["events", "simulate", str(frames), "--config", str(cal), "-o", str(sim), "-q"]) == 0
    with h5py.File(sim, "r") as f:
        n = len(f["events/t"])
    assert abs(n / len(seq.events) - 1) < 0.15
