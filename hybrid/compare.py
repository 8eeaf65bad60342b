"""Tracker comparisons over training seeds or pooled over datasets, from the folders ``neurosim eval`` wrote.

Each folder is one training seed's evaluation (its ``scores.json``) of the same trackers (same
names) on the same sequences. For every tracker k present in all of them:

- ``AUC_k,s`` per seed s (the OTB AUC over all steps of the split), its mean and sample
  standard deviation over the seeds, and the mean P@20;

and for every tracker k other than the base b:

- the per-seed differences ``AUC_b,s − AUC_k,s`` and their mean;
- a paired bootstrap over sequences (:func:`hybrid.metrics.paired_bootstrap`) of
  ``d_i = mean_s auc_b,s,i − mean_s auc_k,s,i``, each sequence's AUC averaged over the seeds:
  the 95 % interval of the mean difference and the number of sequences the base wins.

Pooled (``pool=True``): each folder is instead an evaluation of the same trackers on *other*
sequences (another dataset, split or regime), and the sequences of all folders are pooled, each
with one vote: ``auc`` holds each evaluation's AUC, ``auc_mean`` (``precision_20_mean``) is the
mean over all N pooled sequences of the per-sequence AUC (P@20), and the bootstrap resamples
``d_i = auc_b,i − auc_k,i`` over those N sequences (a sequence of folder j is named ``j:name``,
so one clip built in two regimes counts twice). This is the figure for "over every real clip we
have, does b beat k?".
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from neurosim.errors import InputError


def load_scores(folder: str | pathlib.Path) -> dict[str, Any]:
    """The ``trackers`` table of ``<folder>/scores.json``; InputError when it is missing or not one."""
    path = pathlib.Path(folder) / "scores.json"
    try:
        trackers = json.loads(path.read_text())["trackers"]
        ok = isinstance(trackers, dict) and all(
            _number(t["auc"]) and _number(t["precision_20"]) and all(_number(v["auc"]) for v in t["per_sequence"].values())
            for t in trackers.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise InputError(f"{path}: not a scores.json of 'neurosim eval': give the folder 'neurosim eval -o' wrote")
    return trackers


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(folders: list[str | pathlib.Path], base: str, pool: bool = False) -> dict[str, Any]:
    """Seed means and base-minus-tracker differences (see the module docstring) of the trackers
    found in every folder of ``folders`` (one ``neurosim eval`` output per training seed; with
    ``pool``, one per dataset, their sequences pooled).

    Returns ``{"evaluations", "base", "pooled", "trackers": {name: {"auc": [per evaluation],
    "auc_mean", "auc_sd", "precision_20_mean", "sequences"}}, "differences": {name: {"per_seed"
    (pooled: "per_evaluation"), "mean", "bootstrap": {"diff", "ci95", "wins", "n"}}}, "left_out"}``
    (AUC and P@20 as fractions in [0, 1]; pooled: ``auc_mean`` and ``mean`` over the pooled sequences)."""
    from hybrid.metrics import paired_bootstrap

    evals = [load_scores(f) for f in folders]
    names = [n for n in evals[0] if all(n in e for e in evals)]
    if base not in names:
        raise InputError(f"tracker {base!r} is not in every evaluation (common: {', '.join(names) or 'none'}): "
                         "choose --base among them")
    per_seq = {n: (_pooled if pool else _seed_means)(n, [e[n]["per_sequence"] for e in evals]) for n in names}
    trackers: dict[str, Any] = {}
    for n in names:
        auc = [float(e[n]["auc"]) for e in evals]
        if pool and set(per_seq[n]) != set(per_seq[base]):
            raise InputError(f"trackers {n!r} and {base!r} were scored on other sequences in one evaluation: "
                             "evaluate them together (one 'neurosim eval' per dataset)")
        trackers[n] = {"auc": auc,
                       "auc_mean": float(np.mean(list(per_seq[n].values()))) if pool else float(np.mean(auc)),
                       "auc_sd": float(np.std(auc, ddof=1)) if len(auc) > 1 else 0.0,
                       "precision_20_mean": float(np.mean(_pooled_p20(n, evals) if pool else
                                                          [e[n]["precision_20"] for e in evals])),
                       "sequences": len(per_seq[n])}
    diffs = {}
    for n in names:
        if n != base:
            per_eval = [a - b for a, b in zip(trackers[base]["auc"], trackers[n]["auc"])]
            boot = paired_bootstrap(per_seq[base], per_seq[n])
            diffs[n] = {"per_evaluation" if pool else "per_seed": per_eval,
                        "mean": boot["diff"] if pool else float(np.mean(per_eval)), "bootstrap": boot}
    return {"evaluations": [str(f) for f in folders], "base": base, "pooled": pool, "trackers": trackers,
            "differences": diffs, "left_out": sorted({n for e in evals for n in e} - set(names))}


def _seed_means(name: str, per: list[dict[str, Any]]) -> dict[str, float]:
    """Each sequence's AUC averaged over the seeds (every seed scored on the same sequences)."""
    if any(set(p) != set(per[0]) for p in per):
        raise InputError(f"tracker {name!r} was scored on other sequences in some evaluations: evaluate every seed "
                         "on the same dataset split, or pass --pool to pool evaluations of different datasets")
    return {s: float(np.mean([p[s]["auc"] for p in per])) for s in per[0]}


def _pooled_p20(name: str, evals: list[dict[str, Any]]) -> list[float]:
    """The per-sequence P@20 of every evaluation's sequences (each evaluation's own where a
    sequence lacks one)."""
    return [float(v.get("precision_20", e[name]["precision_20"])) for e in evals for v in e[name]["per_sequence"].values()]


def _pooled(name: str, per: list[dict[str, Any]]) -> dict[str, float]:
    """Every evaluation's sequences, named ``j:sequence`` (j: the evaluation's position)."""
    return {f"{j}:{s}": float(v["auc"]) for j, p in enumerate(per) for s, v in p.items()}


def table(result: dict[str, Any]) -> str:
    """Two Markdown tables: AUC per seed (or evaluation) with mean (sd) and P@20; base minus each tracker."""
    seeds, pooled = len(result["evaluations"]), result.get("pooled", False)
    unit = "evaluation" if pooled else "seed"
    head = " | ".join(f"{unit} {i}" for i in range(seeds))
    mean_head = f"mean over {next(iter(result['trackers'].values()))['sequences']} sequences" if pooled else "mean (sd)"
    lines = [f"| tracker | {head} | {mean_head} | P@20, mean |", "|---" * (seeds + 3) + "|"]
    for n, t in sorted(result["trackers"].items(), key=lambda kv: -kv[1]["auc_mean"]):
        cells = " | ".join(f"{a:.3f}" for a in t["auc"])
        mean = f"{t['auc_mean']:.3f}" if pooled else f"{t['auc_mean']:.3f} ({t['auc_sd']:.3f})"
        lines.append(f"| {n} | {cells} | {mean} | {t['precision_20_mean']:.3f} |")
    lines += ["", f"| {result['base']} minus | per {unit} | mean | 95 % CI (paired bootstrap over sequences) | wins |",
              "|---|---|---|---|---|"]
    for n, d in result["differences"].items():
        b = d["bootstrap"]
        per = d["per_evaluation" if pooled else "per_seed"]
        lines.append(f"| {n} | {' / '.join(f'{x:+.3f}' for x in per)} | {d['mean']:+.3f} | "
                     f"{b['ci95'][0]:+.3f} … {b['ci95'][1]:+.3f} | {b['wins']} / {b['n']} |")
    return "\n".join(lines) + "\n"


def write_compare(result: dict[str, Any], out: str | pathlib.Path) -> list[pathlib.Path]:
    """Write ``compare.json`` (``result`` as JSON) and ``compare.md`` (:func:`table`) into the
    folder ``out`` (created if missing); return the two paths (``neurosim compare -o``).

    Raises:
        ParameterError: ``out`` is a file.
    """
    from neurosim.errors import ParameterError
    from neurosim.io import atomic_output

    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"-o {out} is a file: give a folder for compare.json and compare.md")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "compare.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    with atomic_output(out / "compare.md") as tmp:
        tmp.write_text(table(result))
    return [out / "compare.json", out / "compare.md"]
