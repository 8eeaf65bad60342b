"""Build an NFS-DAVIS-style event dataset from a collection of tracking sequences.

``build_dataset(source, out_dir, params)`` discovers the sequences of ``source``
(:mod:`benchmarks_data.layouts`), converts each one with the DVS simulator
(:func:`sim_events.simulator.simulate`) into ``out_dir/sequences/NAME.h5`` and writes
``out_dir/index.json`` (:mod:`benchmarks_data.index`).

Per sequence, with input frame rate f_in and APS rate f_aps:

- events come from *all* input frames (the simulator interpolates between them);
- an APS frame is kept every ``aps_every = max(1, round(f_in / f_aps))`` input frames
  (NFS-DAVIS: 240 fps → 30 Hz, every 8th frame);
- a box is stored at every input frame time, t_k = round(k · 10⁶ / f_in) µs.

Reproducible and parallel: a sequence's simulator seed is derived from the base seed and the
sequence's name only (:func:`sequence_seed`), never from the order in which workers pick
sequences up, so a 1-process, an N-process and a Dask-cluster build write byte-identical files.

Resumable and safe: each sequence file is written under a temporary name and renamed when
complete; then ``NAME.done`` (JSON with the hash of everything that determines the file) is
written. A re-run skips a sequence whose ``.done`` hash matches and whose file opens; anything
else is rebuilt. A build killed at any moment therefore leaves no file that looks complete,
and its re-run produces the same dataset as an uninterrupted build. A sequence that fails
(missing annotation, box count ≠ frame count, unreadable frames, ...) is reported with its
reason and the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import time
import traceback
from typing import Any, Callable

import numpy as np

from benchmarks_data import index as index_mod
from benchmarks_data.layouts import SequenceSpec, check_sequence, discover
from neurosim.errors import InputError, NeurosimError, OutputError, ParameterError
from neurosim.io import atomic_output, json_default

SEQ_DIR = "sequences"


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """What, besides the simulator parameters, determines a built sequence.

    ``aps_rate_hz``: APS frame rate (Hz); ``seed``: base seed; ``fps``: input frame rate
    override (None = the layout's: NFS 240, OTB/VOT 30, videos their own); ``resize``:
    ``(width, height)`` of the output sensor or None to keep the input size.
    """

    aps_rate_hz: float = 30.0
    seed: int = 0
    fps: float | None = None
    resize: tuple[int, int] | None = None


def sequence_seed(base_seed: int, name: str) -> int:
    """The simulator seed of sequence ``name``: first 4 bytes of sha256("base_seed:name")."""
    return int.from_bytes(hashlib.sha256(f"{int(base_seed)}:{name}".encode()).digest()[:4], "little")


def aps_every_for(input_fps: float, aps_rate_hz: float) -> int:
    """Input frames per APS frame: max(1, round(input_fps / aps_rate_hz))."""
    if aps_rate_hz <= 0:
        raise ParameterError(f"APS rate {aps_rate_hz} Hz is impossible: give a positive --aps-rate")
    return max(1, int(round(float(input_fps) / float(aps_rate_hz))))


def frame_times_us(n: int, fps: float) -> np.ndarray:
    """Input frame times t_k = round(k · 10⁶ / fps) µs, k = 0 .. n−1 (int64)."""
    return np.round(np.arange(n, dtype=np.float64) * (1e6 / float(fps))).astype(np.int64)


def build_dataset(
    source: str | os.PathLike, out_dir: str | os.PathLike, params: Any = None, aps_rate_hz: float = 30.0,
    seed: int = 0, workers: int = 1, scheduler: str | None = None, fps: float | None = None,
    resize: tuple[int, int] | None = None, split_seed: int = 0, test_fraction: float = 0.2,
    val_fraction: float = 0.0, split_list: str | os.PathLike | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Convert every sequence of ``source`` into ``out_dir``; return the build report.

    ``params``: a ``sim_events.params.DvsParams`` (None = its defaults). ``workers``: processes
    on this machine (1 = in this process). ``scheduler``: None (local processes), ``"local"``
    (a Dask ``LocalCluster`` with ``workers`` worker processes) or a Dask scheduler address
    (``tcp://host:8786``; the workers need neurosim installed and ``source``/``out_dir`` on a
    shared file system). ``progress(result)`` is called as each sequence finishes.

    Report: ``{"out", "index", "built", "skipped", "failed": [{"name", "reason"}],
    "sequences", "input_frames", "events", "seconds", "cpu_seconds" (summed over the
    sequences' workers), "workers", "scheduler"}``. Raises
    InputError only when the source has no sequences at all; the caller decides what to do
    when every sequence failed (the CLI exits 2).
    """
    start = time.perf_counter()
    params = _default_params(params)
    opts = BuildOptions(float(aps_rate_hz), int(seed), float(fps) if fps else None,
                        tuple(int(v) for v in resize) if resize else None)
    if opts.aps_rate_hz <= 0:
        raise ParameterError(f"APS rate {aps_rate_hz} Hz is impossible: give a positive --aps-rate")
    specs = discover(source, opts.fps)
    return run_build(specs, out_dir, params, opts, workers, scheduler, split_seed, test_fraction, val_fraction,
                     split_list, progress, start=start)


def run_build(specs: list[SequenceSpec], out_dir: str | os.PathLike, params: Any, opts: BuildOptions,
              workers: int = 1, scheduler: str | None = None, split_seed: int = 0, test_fraction: float = 0.2,
              val_fraction: float = 0.0, split_list: str | os.PathLike | None = None,
              progress: Callable[[dict], None] | None = None, synth: dict | None = None,
              start: float | None = None) -> dict[str, Any]:
    """Build ``specs`` into ``out_dir`` (the shared engine of build_dataset and synth_dataset).

    ``synth``: the synthetic-scene configuration (a dict) when the specs are ``layout="synth"``.
    """
    start = time.perf_counter() if start is None else start
    if workers < 1:
        raise ParameterError(f"--workers {workers} is impossible: give 1 or more")
    if split_list is not None:  # a bad list is refused before anything is built
        index_mod.check_split_list(split_list, [s.name for s in specs])
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"dataset output {out} is a file: choose a folder with -o")
    seq_dir = out / SEQ_DIR
    created = [d for d in (out, seq_dir) if not d.exists()]
    try:
        seq_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create dataset folder {seq_dir} ({exc.strerror}): choose another -o") from None
    _remove_stale_parts(seq_dir)
    params_dict = _params_dict(params)
    tasks = [
        {"spec": dataclasses.asdict(s), "seq_dir": str(seq_dir), "params": params_dict,
         "params_class": f"{type(params).__module__}:{type(params).__qualname__}",
         "options": dataclasses.asdict(opts), "synth": synth}
        for s in specs
    ]
    try:
        results = _run(tasks, workers, scheduler, progress)
    except BaseException:  # interrupted: the stopped workers' temporaries go; finished sequences stay (a re-run skips them)
        _remove_stale_parts(seq_dir)
        _remove_empty(created)
        raise
    results.sort(key=lambda r: r["name"])
    done = [r for r in results if r["status"] in ("built", "skipped")]
    failed = [{"name": r["name"], "reason": r["reason"]} for r in results if r["status"] == "failed"]
    names = [r["name"] for r in done]
    if split_list is not None:
        splits = index_mod.read_split_list(split_list, names)
        split_info = {"list": str(split_list)}
    else:
        splits = index_mod.make_splits(names, split_seed, test_fraction, val_fraction)
        split_info = {"seed": int(split_seed), "test_fraction": test_fraction, "val_fraction": val_fraction}
    entries = [r["entry"] for r in done]
    index_path = None
    if not entries:  # nothing built: leave no empty dataset folder behind
        _remove_empty(created)
    else:
        index_path = index_mod.write_index(out, {
            "sensor": index_mod.sensor_of(entries), "simulator": params_dict,
            "aps_rate_hz": opts.aps_rate_hz, "seed": opts.seed, "resize": list(opts.resize) if opts.resize else None,
            "sequences": entries, "failed": failed, "splits": splits, "split": split_info,
            **({"synth": synth} if synth is not None else {}),
        })
    return {
        "out": str(out), "index": str(index_path) if index_path else None,
        "built": [r["name"] for r in results if r["status"] == "built"],
        "skipped": [r["name"] for r in results if r["status"] == "skipped"],
        "failed": failed, "sequences": len(entries),
        "input_frames": int(sum(e["input_frames"] for e in entries)),
        "events": int(sum(e["events"] for e in entries)),
        "seconds": round(time.perf_counter() - start, 3),
        "cpu_seconds": round(sum(r.get("cpu_seconds", 0.0) for r in results), 3),
        "workers": workers, "scheduler": scheduler,
    }


# ------------------------------------------------------------------------------ one sequence


def build_one(task: dict[str, Any]) -> dict[str, Any]:
    """Convert one sequence (runs in a worker process); never raises for a bad sequence.

    Returns ``{"name", "status": "built" | "skipped" | "failed", "reason", "entry", "seconds", "cpu_seconds"}``.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    spec = SequenceSpec(**task["spec"])
    opts = BuildOptions(**{**task["options"], "resize": tuple(task["options"]["resize"]) if task["options"]["resize"] else None})
    seq_dir = pathlib.Path(task["seq_dir"])
    final = seq_dir / f"{spec.name}.h5"
    marker = seq_dir / f"{spec.name}.done"
    result: dict[str, Any] = {"name": spec.name, "status": "failed", "reason": None, "entry": None}
    try:
        synth = task.get("synth")
        if synth is not None:
            n_frames, boxes = -1, np.zeros((0, 4), np.float32)
            input_fps = float(synth["fps"])
        else:
            n_frames, boxes = check_sequence(spec)
            input_fps = spec.fps or _video_fps(spec.frames)
        aps_every = aps_every_for(input_fps, opts.aps_rate_hz)
        seed = sequence_seed(opts.seed, spec.name)
        fingerprint = _fingerprint(spec, boxes, task["params"], opts, input_fps, aps_every, seed, synth)
        entry = _completed_entry(final, marker, fingerprint)
        if entry is not None:
            result.update(status="skipped", entry=entry)
        else:
            marker.unlink(missing_ok=True)
            params = _params_from_dict(task["params_class"], task["params"])
            if synth is not None:
                from benchmarks_data.synth import convert_synth

                stats = convert_synth(spec, synth, final, params, seed, aps_every)
            else:
                stats = _convert(spec, boxes, final, params, seed, aps_every, input_fps, opts.resize)
            entry = {
                "name": spec.name, "file": f"{SEQ_DIR}/{final.name}", "layout": spec.layout,
                "source": spec.frames, "annotation": spec.annotation, "input_fps": input_fps,
                "aps_every": aps_every, "seed": seed, "param_hash": fingerprint, **stats,
            }
            _write_marker(marker, entry)
            result.update(status="built", entry=entry)
    except NeurosimError as exc:
        result["reason"] = str(exc)
    except Exception as exc:  # a broken sequence must not stop the others
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "benchmarks_data" not in f.filename]
        where = f" (in {pathlib.Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        result["reason"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}{where}"
    result["seconds"] = round(time.perf_counter() - t0, 3)
    result["cpu_seconds"] = round(time.process_time() - c0, 3)
    return result


def _convert(spec: SequenceSpec, boxes: np.ndarray, final: pathlib.Path, params: Any, seed: int,
             aps_every: int, input_fps: float, resize: tuple[int, int] | None) -> dict[str, Any]:
    """Simulate ``spec`` into ``final`` (atomically) with a box at every input frame."""
    from sim_events.sources import open_frames

    source = open_frames(spec.frames, fps=input_fps, resize=resize)
    n = len(boxes)
    if spec.layout == "video":
        known = getattr(source, "num_frames", None)
        if known is not None and known != n:
            raise InputError(f"sequence {spec.name}: {n} boxes in {pathlib.Path(spec.annotation).name} but the video has {known} frames")
    scale = np.ones(4, np.float32)
    if resize is not None:
        w0, h0 = _input_size(spec)
        sx, sy = resize[0] / w0, resize[1] / h0
        scale = np.array([sx, sy, sx, sy], np.float32)
    t_boxes = frame_times_us(n, input_fps)
    return simulate_with_boxes(source, final, params, seed, aps_every, t_boxes, boxes * scale, spec, input_fps)


def simulate_with_boxes(source: Any, final: pathlib.Path, params: Any, seed: int, aps_every: int,
                        t_boxes: np.ndarray, boxes: np.ndarray, spec: SequenceSpec, input_fps: float,
                        postprocess: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Run the simulator into a hidden temp file, add the boxes, check, then rename to ``final``.

    ``postprocess(h5)`` may change the open (r+) HDF5 file before it is renamed (the synthetic
    benchmark replaces the APS frames by long-exposure ones).
    """
    import h5py

    from sim_events.simulator import simulate

    expected_aps = (len(t_boxes) + aps_every - 1) // aps_every
    with atomic_output(final) as tmp:
        work = tmp.with_name(tmp.name[:-5] + ".sim.h5.part")
        try:
            simulate(source, work, params, seed=seed, aps_every=aps_every)
            with h5py.File(work, "r+") as h5:
                frame_t = h5["frames/t"][:] if "frames/t" in h5 else np.zeros(0, np.int64)
                if len(frame_t) != expected_aps:
                    raise InputError(
                        f"sequence {spec.name}: the frames gave {len(frame_t)} APS frames, expected {expected_aps} "
                        f"from {len(t_boxes)} boxes: the frame count and the annotation disagree")
                if "boxes" in h5:
                    del h5["boxes"]
                g = h5.create_group("boxes")
                g.create_dataset("t", data=t_boxes.astype(np.int64))
                g.create_dataset("xywh", data=boxes.astype(np.float32))
                n_events = int(h5["events/t"].shape[0])
                width, height = int(h5.attrs["width"]), int(h5.attrs["height"])
                if postprocess is not None:
                    postprocess(h5)
            os.replace(work, tmp)  # atomic_output gives it the umask's mode
        finally:
            work.unlink(missing_ok=True)
    duration = int(round(len(t_boxes) * 1e6 / float(input_fps)))
    return {"width": width, "height": height, "input_frames": int(len(t_boxes)), "aps_frames": int(len(frame_t)),
            "events": n_events, "duration_us": duration, "t_start_us": int(t_boxes[0]), "t_end_us": int(t_boxes[-1])}


# ------------------------------------------------------------------------------ execution


def _run(tasks: list[dict], workers: int, scheduler: str | None, progress: Callable | None) -> list[dict]:
    results = []

    def done(r: dict) -> None:
        results.append(r)
        if progress is not None:
            progress(r)

    if scheduler:
        _run_dask(tasks, workers, scheduler, done)
    elif workers == 1 or len(tasks) == 1:
        with _single_thread():  # a worker is one core, in this process too
            for task in tasks:
                done(build_one(task))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        # forkserver: a clean server process imports the simulator once, workers fork from it
        # (no fork of this possibly threaded process, no per-worker re-import as with spawn)
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["benchmarks_data._die_with_parent", "benchmarks_data.build", "sim_events.simulator",
                                    "sim_events.sources", "h5py", "cv2"])
        pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_pool_worker_init)
        try:
            futures = {pool.submit(build_one, t): t for t in tasks}
            for fut in cf.as_completed(futures):
                done(_result_or_crash(fut, futures[fut]))
        except BaseException:  # Ctrl-C, SIGTERM, an error here: stop the workers now, not after their tasks
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)
    return results


def _stop_workers(pool: Any) -> None:
    """Cancel what has not started and terminate the worker processes (their partial outputs are
    temporary files, removed by the next build of the same folder)."""
    processes = list(getattr(pool, "_processes", {}).values())  # the executor exposes no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=10)


def _run_dask(tasks: list[dict], workers: int, scheduler: str, done: Callable) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler == "local":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout=30)  # Dask's own default; 10 s is tight on a loaded machine
            except (OSError, TimeoutError) as exc:
                raise ParameterError(f"cannot reach the Dask scheduler {scheduler} ({exc}): check --scheduler") from None
        with client:
            client.run(_worker_init)
            futures = client.map(build_one, tasks, pure=False)
            by_key = {f.key: t for f, t in zip(futures, tasks)}
            for fut in as_completed(futures):
                done(_result_or_crash(fut, by_key[fut.key]))
    finally:
        if cluster is not None:
            cluster.close()


def _result_or_crash(fut: Any, task: dict) -> dict:
    """A future's result; a worker that died (segfault, out of memory, killed) fails only its task."""
    try:
        return fut.result()
    except Exception as exc:  # BrokenProcessPool, distributed.KilledWorker, ...
        return {"name": task["spec"]["name"], "status": "failed", "entry": None, "seconds": 0.0,
                "reason": f"worker process died ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}): re-run the build"}


@contextlib.contextmanager
def _single_thread():
    """OpenCV on one thread for the block (restored after), like a worker process."""
    try:
        import cv2
    except ImportError:
        yield
        return
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _worker_init() -> None:
    """One OpenCV thread per worker process: the processes are the parallelism."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _pool_worker_init() -> None:
    """A process-pool worker: one OpenCV thread; Ctrl-C is the parent's to handle (the whole
    process group gets SIGINT, and workers printed tracebacks); on Linux the worker gets SIGTERM
    when its parent, the forkserver, dies, and the forkserver when the build dies, even by
    SIGKILL (``benchmarks_data._die_with_parent``)."""
    import signal

    from benchmarks_data._die_with_parent import die_with_parent

    _worker_init()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


# ------------------------------------------------------------------------------ helpers


def _default_params(params: Any) -> Any:
    if params is not None:
        return params
    from sim_events.params import DvsParams

    return DvsParams()


def _params_dict(params: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(params):
        return json.loads(json.dumps(dataclasses.asdict(params), default=json_default))
    if isinstance(params, dict):
        return json.loads(json.dumps(params, default=json_default))
    raise ParameterError(f"simulator parameters must be a DvsParams dataclass, got {type(params).__name__}")


def _params_from_dict(cls_path: str, values: dict[str, Any]) -> Any:
    import importlib

    from neurosim.config import from_dict

    module, _, name = cls_path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return from_dict(cls, values) if dataclasses.is_dataclass(cls) else values


def _fingerprint(spec: SequenceSpec, boxes: np.ndarray, params: dict, opts: BuildOptions,
                 input_fps: float, aps_every: int, seed: int, synth: dict | None = None) -> str:
    """sha256 over everything that determines the sequence file (not the output location)."""
    from neurosim import __version__

    frames = pathlib.Path(spec.frames)
    if synth is not None:
        files = []
    elif frames.is_dir():
        from benchmarks_data.layouts import image_files

        files = [(p.name, p.stat().st_size) for p in image_files(frames)]
    else:
        files = [(frames.name, frames.stat().st_size)]
    blob = json.dumps({
        "spec": dataclasses.asdict(spec), "files": files, "boxes": hashlib.sha256(np.ascontiguousarray(boxes).tobytes()).hexdigest(),
        "params": params, "options": dataclasses.asdict(opts), "input_fps": input_fps, "aps_every": aps_every,
        "seed": seed, "neurosim": __version__, "synth": synth,
    }, sort_keys=True, default=json_default)
    return hashlib.sha256(blob.encode()).hexdigest()


def _completed_entry(final: pathlib.Path, marker: pathlib.Path, fingerprint: str) -> dict | None:
    """The index entry of an already complete sequence with this fingerprint, else None."""
    if not (final.is_file() and marker.is_file()):
        return None
    try:
        entry = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if entry.get("param_hash") != fingerprint or entry.get("file_size") != final.stat().st_size:
        return None
    try:
        import h5py

        with h5py.File(final, "r") as h5:
            if int(h5["events/t"].shape[0]) != entry.get("events"):
                return None
    except (OSError, KeyError):
        return None
    entry = dict(entry)
    entry.pop("file_size", None)
    return entry


def _write_marker(marker: pathlib.Path, entry: dict[str, Any]) -> None:
    final = marker.with_suffix(".h5")
    data = {**entry, "file_size": final.stat().st_size}
    with atomic_output(marker) as tmp:
        tmp.write_text(json.dumps(data, sort_keys=True, indent=1, default=json_default), encoding="utf-8")


def _remove_empty(created: list[pathlib.Path]) -> None:
    """Remove the folders this build created (innermost first) if they are still empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass


def _remove_stale_parts(seq_dir: pathlib.Path) -> None:
    """Delete temporary files a killed build left behind (hidden ``.*.part`` names)."""
    for p in seq_dir.glob(".*.part"):
        try:
            p.unlink()
        except OSError:
            pass


def _video_fps(path: str) -> float:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(f"video {path} does not state its frame rate: pass --fps")
    return fps


def _input_size(spec: SequenceSpec) -> tuple[int, int]:
    import cv2

    from benchmarks_data.layouts import image_files

    if spec.layout == "video":
        cap = cv2.VideoCapture(spec.frames)
        try:
            return int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            cap.release()
    img = cv2.imread(str(image_files(spec.frames)[0]), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"sequence {spec.name}: first frame of {spec.frames} is unreadable")
    return int(img.shape[1]), int(img.shape[0])

