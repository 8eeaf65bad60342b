"""``neurosim fewshot bench``: the few-shot detection benchmark (RepMet vs NP-RepMet) on real images."""

from __future__ import annotations

import argparse

DEFAULT_DATA = "../shared/data"


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fewshot`` group with the verb bench."""
    from neurosim.cli import add_verb, defaults_of

    group = subparsers.add_parser(name, help="few-shot detection: NP-RepMet benchmark on real images", description=__doc__)
    verbs = group.add_subparsers(dest="verb", metavar="VERB")
    p = add_verb(verbs, "bench", _bench, needs=["torch"], inputs=("data",),
                 params=defaults_of("hybrid.fewshot_bench:BenchParams"),
                 help="few-shot detection episodes on the targets of real tracking sequences: mAP@0.5 of RepMet "
                 "(positive representatives) and NP-RepMet (positive + negative) at 1/5/10 shots",
                 example="neurosim fewshot bench --data ../shared/data --set split=val --set episodes=50 --json",
                 description="Episodes of N-way few-shot detection whose classes are the targets of real tracking "
                 "sequences (tracking_real/fps30, fps10, tracking; one class per sequence; --set split=val|tune|all "
                 "picks them from hybrid/configs/real_split.json). Support: 1/5/10 boxes of a sequence; queries: other "
                 "frames, with proposals around the object and sliding windows over the whole frame. Prints mAP@0.5 "
                 "per shot for RepMet (D = d), the head without negatives (β = 0) and NP-RepMet, the differences, "
                 "their spread over episodes and 95 % bootstrap CIs. --set embedding=learned first trains linear "
                 "heads E^p, E^n with each method's loss on the sequences outside the split.")
    p.add_argument("--data", default=DEFAULT_DATA, help="the shared data folder (holds tracking_real/ and tracking/)")


def _bench(args: argparse.Namespace, ctx) -> dict:
    from hybrid.fewshot_bench import BenchParams, fewshot_bench
    from neurosim.cli import params_from_args

    params = params_from_args(args, BenchParams)
    bar = ctx.progress(total=params.episodes, desc="episodes")
    result = fewshot_bench(args.data, params, progress=lambda done, total: bar.update(1))
    bar.close()
    ctx.say(f"{params.ways}-way episodes over {len(result['sequences'])} {params.split} sequences, {params.episodes} episodes")
    ctx.say("| shots | RepMet | positives only | NP-RepMet | NP − RepMet (95 % CI) | NP − positives only (95 % CI) |")
    ctx.say("|---|---|---|---|---|---|")
    for shots, row in result["map50"].items():
        cells = [f"{row[m]['mean']:.3f} ± {row[m]['sd']:.3f}" for m in ("repmet", "positives_only", "np")]
        for key in ("np_minus_repmet", "np_minus_positives_only"):
            d = row[key]
            ci = f" [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if "ci95" in d else ""
            cells.append(f"{d['mean']:+.3f}{ci}")
        ctx.say(f"| {shots} | " + " | ".join(cells) + " |")
    return result
