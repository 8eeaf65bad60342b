"""Make the small fixture files of tests/data: ``python tests/data/make_fixtures.py [OUT_DIR]``.

Deterministic: the same code and package versions write the same bytes on every run
(tests/test_fixtures.py checks it). Every file derives from one simulated recording,
``scene_davis346.npz``: neurosim's DVS simulator watching a procedural scene (moving
textured sprites, 48x36 px, 16 frames at 25 Hz) with KNOWN pixel parameters (``TRUTH``).
The other files hold parts of its events and frames, written by independent writers
(iniVation's dv-processing, expelliarmus) or by this script following the public format
specifications (N-MNIST, jAER AEDAT 2.0 / 3.1), so a reader test can compare what it reads
with the recording's arrays. See README.md beside this script.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import pathlib
import struct
import sys
import zipfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent

# The recording's ground truth: scene, pixel parameters (davis346 preset + these) and seed.
SCENE = dict(width=48, height=36, fps=25.0, n_frames=16, n_objects=3, seed=4, speed_px_s=(60.0, 120.0),
             size_px=(10, 22))
TRUTH = dict(contrast_threshold_on=0.25, contrast_threshold_off=0.35, latency_us=1500.0)
TRUTH_SEED = 7
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: .npz bytes do not depend on the clock

# jAER DAVIS346 addressing (AEDAT 2.0): y and x counted from the far corner
JAER_W, JAER_H = 346, 260


def truth_params():
    """The DvsParams the recording was simulated with (davis346 preset + TRUTH)."""
    from sim_events.params import preset

    return preset("davis346").replace(**TRUTH)


def save_npz(path: pathlib.Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` with fixed member times and order (byte-identical reruns)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def make_recording(out: pathlib.Path) -> dict:
    """scene_davis346.npz (recording layout: frames, frame_ts, t, x, y, p ±1, width, height)
    from the simulator's sequence file, and scene_sequence.h5: that file's first 5 frames,
    their events and the target's boxes (sequence format, written by SequenceWriter)."""
    import tempfile

    from sim_events.formats.sequence import read_sequence, write_sequence
    from sim_events.scene import render_scene
    from sim_events.simulator import simulate

    scene = render_scene(**SCENE)
    with tempfile.TemporaryDirectory() as tmp:
        simulate(scene, pathlib.Path(tmp) / "sim.h5", truth_params(), seed=TRUTH_SEED, aps_every=1)
        seq = read_sequence(pathlib.Path(tmp) / "sim.h5")
    ev = seq.events
    save_npz(out / "scene_davis346.npz", frames=seq.frames, frame_ts=seq.frame_t.astype(np.int64),
             t=ev["t"].astype(np.int64), x=ev["x"].astype(np.uint16), y=ev["y"].astype(np.uint16),
             p=np.where(ev["p"] > 0, 1, -1).astype(np.int8), width=np.int64(seq.width), height=np.int64(seq.height))
    n = 5
    part = copy.copy(seq)
    part.events = ev[ev["t"] < seq.frame_t[n - 1]]
    part.frames, part.frame_t = seq.frames[:n], seq.frame_t[:n]
    part.frame_exposure_us = None if seq.frame_exposure_us is None else seq.frame_exposure_us[:n]
    part.boxes_t, part.boxes_xywh = seq.boxes_t[:n], seq.boxes_xywh[:n]
    write_sequence(out / "scene_sequence.h5", part, source=scene.source, simulator=truth_params().to_dict())
    return {"events": int(len(ev)), "frames": int(len(seq.frames)), "width": seq.width, "height": seq.height,
            "sequence_events": int(len(part.events)), "sequence_frames": n}


def load_recording(out: pathlib.Path) -> dict[str, np.ndarray]:
    """The recording's arrays, read with plain numpy."""
    with np.load(out / "scene_davis346.npz") as d:
        return {k: d[k] for k in d.files}


def make_aedat4(out: pathlib.Path, rec: dict) -> dict:
    """dv_davis346.aedat4: the first 4 frames and their events, written by dv-processing."""
    import dv_processing as dv

    n_frames = 4
    sel = rec["t"] < rec["frame_ts"][n_frames - 1]
    size = (int(rec["width"]), int(rec["height"]))
    writer = dv.io.MonoCameraWriter(str(out / "dv_davis346.aedat4"), dv.io.MonoCameraWriter.DAVISConfig("DAVIS346_fixture", size))
    store = dv.EventStore()
    for t, x, y, p in zip(rec["t"][sel], rec["x"][sel], rec["y"][sel], rec["p"][sel]):
        store.push_back(int(t), int(x), int(y), bool(p > 0))
    writer.writeEvents(store)
    for k in range(n_frames):
        # dv frames carry the exposure start: 1000 µs exposures from each frame time
        writer.writeFrame(dv.Frame(int(rec["frame_ts"][k]), 1000, 0, 0, rec["frames"][k], dv.FrameSource.SENSOR))
    del writer  # closes the file
    return {"events": int(sel.sum()), "frames": n_frames, "exposure_us": 1000}


def make_prophesee(out: pathlib.Path, rec: dict) -> dict:
    """expelliarmus_evt2.raw (events of the first 0.1 s) and expelliarmus_evt3.raw (the
    busiest 4096 µs window), written by expelliarmus."""
    from expelliarmus import Wizard

    def arr(sel):
        a = np.zeros(int(sel.sum()), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
        a["t"], a["x"], a["y"], a["p"] = rec["t"][sel], rec["x"][sel], rec["y"][sel], rec["p"][sel] > 0
        return a

    sel2 = rec["t"] < 100_000
    Wizard(encoding="evt2").save(out / "expelliarmus_evt2.raw", arr(sel2))
    # expelliarmus 1.1's EVT3 writer emits TIME_HIGH only once, so a spec-correct file must
    # keep every event in one 4096 µs TIME_HIGH period
    period = rec["t"] // 4096
    busiest = int(np.bincount(period).argmax())
    sel3 = period == busiest
    Wizard(encoding="evt3").save(out / "expelliarmus_evt3.raw", arr(sel3))
    return {"evt2_events": int(sel2.sum()), "evt3_events": int(sel3.sum()), "evt3_window_us": [busiest * 4096, busiest * 4096 + 4096]}


def make_nmnist(out: pathlib.Path, rec: dict) -> dict:
    """nmnist_34x34.bin: the events inside the top-left 34x34 px of the first 0.3 s, in the
    N-MNIST binary layout (5 bytes an event: x, y, p<<7 | t[22:16], t[15:8], t[7:0])."""
    sel = (rec["x"] < 34) & (rec["y"] < 34) & (rec["t"] < 300_000)
    t = rec["t"][sel].astype(np.uint32)
    raw = np.zeros((int(sel.sum()), 5), np.uint8)
    raw[:, 0], raw[:, 1] = rec["x"][sel], rec["y"][sel]
    raw[:, 2] = ((rec["p"][sel] > 0).astype(np.uint8) << 7) | ((t >> 16) & 0x7F).astype(np.uint8)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    (out / "nmnist_34x34.bin").write_bytes(raw.tobytes())
    return {"events": int(sel.sum())}


def make_jaer(out: pathlib.Path, rec: dict) -> dict:
    """jaer_davis346.aedat (AEDAT 2.0, jAER's DAVIS346 addresses, big-endian, with an APS
    sample every 50 events that readers must skip) and jaer_davis346_v31.aedat (AEDAT 3.1:
    two polarity packets with a frame packet between them), events of the first 0.1 s."""
    sel = rec["t"] < 100_000
    x, y, t, p = rec["x"][sel].astype(np.uint32), rec["y"][sel].astype(np.uint32), rec["t"][sel], (rec["p"][sel] > 0).astype(np.uint32)
    addr = ((JAER_H - 1 - y) << 22) | ((JAER_W - 1 - x) << 12) | (p << 11)
    ts = t.astype(np.uint32)
    k = np.arange(0, len(addr), 50)
    aps = np.uint32((1 << 31) | (5 << 22) | (7 << 12) | 0x3FF)
    addr, ts = np.insert(addr, k, aps), np.insert(ts, k, ts[k])
    rows = np.empty(len(addr), dtype=[("a", ">u4"), ("t", ">u4")])
    rows["a"], rows["t"] = addr, ts
    header = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
              b"# AEChip: eu.seebetter.ini.chips.davis.DAVIS346B\r\n# End of ASCII Header\r\n")
    (out / "jaer_davis346.aedat").write_bytes(header + rows.tobytes())

    def polarity_packet(i0: int, i1: int) -> bytes:
        n = i1 - i0
        data = (x[i0:i1] << 17) | (y[i0:i1] << 2) | (p[i0:i1] << 1) | np.uint32(1)
        ev = np.empty(n, dtype=[("d", "<u4"), ("t", "<u4")])
        ev["d"], ev["t"] = data, t[i0:i1].astype(np.uint32)
        return struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, n, n, n) + ev.tobytes()

    half = len(x) // 2
    frame_packet = struct.pack("<hhiiiiii", 2, 1, 24, 12, 0, 2, 2, 2) + bytes(48)
    v31 = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DAVIS346\r\n#!END-HEADER\r\n"
           + polarity_packet(0, half) + frame_packet + polarity_packet(half, len(x)))
    (out / "jaer_davis346_v31.aedat").write_bytes(v31)
    return {"events": int(sel.sum()), "aps_samples": int(len(k))}


def make_all(out: pathlib.Path = HERE) -> dict:
    """Write every fixture into ``out``; return the manifest (also written as fixtures.json)."""
    out.mkdir(parents=True, exist_ok=True)
    facts = {"scene": {**SCENE, "speed_px_s": list(SCENE["speed_px_s"]), "size_px": list(SCENE["size_px"])},
             "truth": {"preset": "davis346", **TRUTH, "seed": TRUTH_SEED}}
    facts["scene_davis346.npz"] = make_recording(out)
    rec = load_recording(out)
    facts["dv_davis346.aedat4"] = make_aedat4(out, rec)
    facts["expelliarmus.raw"] = make_prophesee(out, rec)
    facts["nmnist_34x34.bin"] = make_nmnist(out, rec)
    facts["jaer_davis346.aedat"] = make_jaer(out, rec)
    files = sorted(p.name for p in out.iterdir() if p.suffix in (".npz", ".h5", ".aedat4", ".raw", ".bin", ".aedat"))
    facts["sha256"] = {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in files}
    (out / "fixtures.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    return facts


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    manifest = make_all(target)
    total = sum((target / n).stat().st_size for n in manifest["sha256"])
    print(f"wrote {len(manifest['sha256'])} fixtures ({total / 1024:.0f} KiB) to {target}")
