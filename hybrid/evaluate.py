"""Evaluation of trained trackers on a dataset split (OTB protocol at the SNN rate).

Each tracker runs over every sequence of the split from the ground-truth box of the first
frame; it gives a box at every SNN step (1 ms at 1 kHz), which is scored against the ground
truth interpolated to that step's time (``hybrid.metrics``: success curve, AUC, precision
curve, P@20; the first box is set to the ground truth). Speed is SNN steps per second of
tracker wall time (crop + binning + network) on this CPU.

With ``starts`` = N > 1 (OTB's temporal robustness evaluation, TRE) each sequence is also
tracked from N − 1 later frames spread evenly over it, each start to the sequence's end and
scored as a sequence of its own (``NAME@K``, K its first frame): a tracker's held-or-lost
outcome on one clip then counts N times from N situations, not once.

Output folder: ``results/<tracker>/<sequence>.txt`` + ``times/`` (got10k/OTB layout),
``scores.json``, ``success.png``, ``precision.png`` (all trackers on one plot each) and
``table.md`` (AUC, P@20, steps/s, frames/s). Baseline trackers on the APS frames
(``hybrid.baselines``: a never-moving box, OpenCV CSRT, KCF, MIL) run through the same loop.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

from hybrid import metrics
from hybrid.results import write_results
from neurosim.errors import InputError


def split_sequences(dataset: str | pathlib.Path, split: str) -> list[tuple[str, pathlib.Path]]:
    """(name, file) of the sequences of ``split`` (``all`` for every sequence)."""
    from benchmarks_data.index import load_index

    root = pathlib.Path(dataset)
    index = load_index(root)
    files = {e["name"]: root / e["file"] for e in index["sequences"]}
    if split == "all":
        names = sorted(files)
    else:
        splits = index.get("splits", {})
        if split not in splits:
            raise InputError(f"dataset {root} has no split {split!r}: choose one of {sorted(splits) + ['all']}")
        names = list(splits[split])
    if not names:
        raise InputError(f"dataset {root}: split {split!r} is empty: choose another with --split")
    return [(n, files[n]) for n in names]


MAX_STARTS = 20  # OTB's TRE uses 20 segments


def check_starts(starts: int) -> int:
    """``starts`` if it is 1 .. :data:`MAX_STARTS`, else ParameterError naming the range."""
    from neurosim.errors import ParameterError

    if not 1 <= starts <= MAX_STARTS:
        raise ParameterError(f"--starts {starts} must be 1 (OPE) to {MAX_STARTS} (OTB's TRE segments)")
    return starts


def start_frames(track, starts: int) -> list[int]:
    """The first frames of ``track``'s TRE runs: k_s = ⌊s·F/starts⌋ for s < ``starts``, each moved
    to the first frame from there with a ground-truth box; runs shorter than 2 frames and
    repeated starts are dropped (frame 0 is always the first)."""
    check_starts(starts)
    count = len(track.frame_t)
    has_box = np.isfinite(track.box_at(track.frame_t)).all(axis=1)
    firsts = [0]
    for s in range(1, starts):
        later = np.nonzero(has_box[s * count // starts :])[0]
        if len(later):
            k = s * count // starts + int(later[0])
            if k <= count - 2 and k not in firsts:
                firsts.append(k)
    return firsts


def find_runs(paths: list[str | pathlib.Path]) -> dict[str, pathlib.Path]:
    """Tracker name → run folder: each path is a run or a folder of runs (one per variant)."""
    from hybrid.checkpoint import CONFIG, find_checkpoint

    runs: dict[str, pathlib.Path] = {}
    for p in map(pathlib.Path, paths):
        if p.suffix == ".safetensors":
            runs[p.stem] = find_checkpoint(p)
            continue
        if p.is_dir() and not (p / CONFIG).exists():
            subs = sorted(d for d in p.iterdir() if (d / CONFIG).is_file())
            if subs:
                for d in subs:
                    runs[d.name] = find_checkpoint(d)
                continue
        run = find_checkpoint(p)
        runs[_name(run)] = run
    return runs


def _name(run: pathlib.Path) -> str:
    return run.name or "run"


def evaluate(runs: dict[str, pathlib.Path | tuple[pathlib.Path, str]], dataset: str | pathlib.Path, out: str | pathlib.Path, split: str = "test",
             progress: Callable | None = None, say: Callable = print, max_frames: int | None = None,
             baselines: Sequence[str] = (), model: dict[str, Any] | None = None, starts: int = 1) -> dict[str, Any]:
    """Track every sequence of ``split`` with every run and baseline; write results, scores and plots into ``out``.

    ``runs`` maps a tracker name to a run folder, or to (run folder, variant) to evaluate a run's
    weights as another variant (e.g. the ANN branch of a hybrid alone). ``baselines`` names
    frame trackers of ``hybrid.baselines`` (``static_box``, ``csrt``, ``kcf``, ``mil``) run on the
    APS frames and scored at the SNN step times of the first run (1 kHz without runs).
    ``model``: ModelConfig overrides applied to every run (``neurosim eval --set model.KEY=V``).
    ``starts``: runs per sequence (1: from the first frame only, OPE; N: TRE, module docstring)."""
    from hybrid.baselines import baseline_runner
    from hybrid.checkpoint import load_model
    from hybrid.data import load_track

    clash = sorted(set(runs) & set(baselines))
    if clash:
        raise InputError(f"a run is named like the baseline {clash[0]!r}: rename the run folder or leave that baseline out")
    if not runs and not baselines:
        raise InputError("nothing to evaluate: give a run (or 'default') and/or --baselines")
    seqs = split_sequences(dataset, split)
    check_starts(starts)
    out = pathlib.Path(out)
    models = {name: load_model(*run, model=model) if isinstance(run, tuple) else load_model(run, model=model)
              for name, run in runs.items()}
    snn_rate_hz = next(iter(models.values())).cfg.snn_rate_hz if models else 1000.0
    runners: dict[str, Callable] = {name: _model_runner(model) for name, model in models.items()}
    runners.update({name: baseline_runner(name, snn_rate_hz) for name in baselines})
    origin = {name: str(run[0] if isinstance(run, tuple) else run) for name, run in runs.items()}
    origin.update({name: f"baseline:{name}" for name in baselines})
    tracks = [load_track(f, n) for n, f in seqs]
    for (_, f), tr in zip(seqs, tracks):
        if tr.boxes_t is None or len(tr.boxes_t) == 0 or not np.isfinite(tr.box_at(tr.frame_t[:1])).all():
            raise InputError(f"{f} has no ground-truth box at its first frame: evaluation needs boxes "
                             "(build the sequence from an annotated source, or leave it out of the split)")
    tracks = [tr.from_frame(k) for tr in tracks for k in start_frames(tr, starts)]
    scores: dict[str, Any] = {}
    jobs = [(name, tr) for name in runners for tr in tracks]
    it = progress(jobs, desc="eval", total=len(jobs)) if progress else jobs
    per: dict[str, dict] = {name: {} for name in runners}
    speed: dict[str, list] = {name: [] for name in runners}
    for name, tr in it:
        res = runners[name](tr, max_frames)
        per[name][tr.name] = (res.boxes, res.gt)
        speed[name].append((res.steps, res.seconds, res.frames))
        secs = np.full(len(res.boxes), res.seconds / max(len(res.boxes), 1))
        write_results(out / "results" / name, tr.name, res.boxes, secs)
    for name in runners:
        sc = metrics.evaluate(per[name])
        steps = sum(s for s, _, _ in speed[name])
        secs = sum(t for _, t, _ in speed[name])
        frames = sum(f for _, _, f in speed[name])
        scores[name] = {**sc.summary(), "steps_per_second": steps / max(secs, 1e-9),
                        "frames_per_second": frames / max(secs, 1e-9), "run": origin[name],
                        "sequences": len(tracks), "steps": steps}
        say(f"{name:>16s}: AUC {sc.auc:.3f}  P@20 {sc.precision_20:.3f}  {steps / max(secs, 1e-9):,.0f} steps/s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps({"dataset": str(dataset), "split": split, "starts": starts,
                                                 "trackers": scores}, indent=1))
    plot_curves(scores, out)
    (out / "table.md").write_text(table(scores))
    return {"out": str(out), "split": split, "sequences": len(seqs), "runs_per_tracker": len(tracks),
            "trackers": {n: {k: v for k, v in s.items() if not k.endswith("curve") and k != "per_sequence"}
                         for n, s in scores.items()}}


def _model_runner(model) -> Callable:
    """(track, max_frames) → TrackResult for a loaded DashNet, like ``baselines.baseline_runner``."""
    from hybrid.track import track_sequence

    return lambda track, max_frames: track_sequence(model, track, max_frames=max_frames)


def table(scores: dict[str, Any]) -> str:
    """Markdown table: tracker, AUC, P@20, SNN steps/s, APS frames/s."""
    lines = ["| tracker | AUC | P@20 | SNN steps/s | frames/s |", "|---|---|---|---|---|"]
    for name, s in sorted(scores.items(), key=lambda kv: -kv[1]["auc"]):
        lines.append(f"| {name} | {s['auc']:.3f} | {s['precision_20']:.3f} | {s['steps_per_second']:,.0f} | {s['frames_per_second']:,.0f} |")
    return "\n".join(lines) + "\n"


def plot_curves(scores: dict[str, Any], out: pathlib.Path) -> None:
    """success.png and precision.png with one curve per tracker (AUC / P@20 in the legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for kind, x, key, label in (
        ("success", metrics.IOU_THRESHOLDS, "success_curve", "auc"),
        ("precision", metrics.ERROR_THRESHOLDS, "precision_curve", "precision_20"),
    ):
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, s in sorted(scores.items(), key=lambda kv: -kv[1][label]):
            ax.plot(x, s[key], label=f"{name} [{s[label]:.3f}]")
        ax.set_xlabel("overlap threshold" if kind == "success" else "location error threshold (px)")
        ax.set_ylabel("success rate" if kind == "success" else "precision")
        ax.set_title(f"{kind} plot (OTB protocol, every SNN step)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if kind == "success" else "lower right")
        fig.tight_layout()
        fig.savefig(out / f"{kind}.png", dpi=100)
        plt.close(fig)
