"""``neurosim snn <verb>``: NIR file inspection, brian2 cross-check.

A thin layer over :mod:`neurosim.snn.nir_io` and :mod:`neurosim.snn.reference`.
"""

from __future__ import annotations

import argparse
import dataclasses


@dataclasses.dataclass
class CrosscheckParams:
    """Options of ``neurosim snn crosscheck``."""

    neurons: int = 1000  # [1, 1e6]
    steps: int = 1000  # [1, 1e6] steps of 1 ms
    synaptic: bool = True
    seed: int = 0  # [0, 2^32 - 1]

    def check(self) -> "CrosscheckParams":
        """Raise ParameterError naming the first value out of its range (in the field comments)."""
        from neurosim.config import check_range

        for name, high in (("neurons", 10**6), ("steps", 10**6), ("seed", 2**32 - 1)):
            check_range(name, getattr(self, name), 0 if name == "seed" else 1, high,
                        why="to go past the upper bound edit CrosscheckParams.check in neurosim/snn/cli.py")
        return self


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    """Add the ``snn`` group with the verbs nir-info and crosscheck."""
    from neurosim.cli import add_verb

    group = subparsers.add_parser(name, help="spiking networks: NIR info, brian2 cross-check", description=__doc__)
    verbs = group.add_subparsers(dest="verb", metavar="VERB")

    p = add_verb(verbs, "nir-info", _nir_info, help="list the nodes and time constants of a NIR file",
                 example="neurosim snn nir-info network.nir --json", needs=["torch", "nir"])
    p.add_argument("path", help="NIR file (HDF5)")

    p = add_verb(verbs, "crosscheck", _crosscheck,
                 help="simulate the same LIF population in brian2 and neurosim and compare",
                 example="neurosim snn crosscheck --neurons 1000 --steps 1000 --json", params=CrosscheckParams,
                 needs=["torch", "brian2"])
    p.add_argument("--neurons", type=int, default=None, help="population size (default 1000)")
    p.add_argument("--steps", type=int, default=None, help="time steps of 1 ms (default 1000)")
    p.add_argument("--no-synaptic", action="store_true", help="LIF without synaptic current (norse LIFBox)")
    p.add_argument("--seed", type=int, default=None, help="input seed (default 0)")


def _nir_info(args: argparse.Namespace, ctx) -> dict:
    from neurosim.snn.nir_io import describe_nir

    info = describe_nir(args.path)
    for row in info["nodes"]:
        consts = ", ".join(f"{k}={v}" for k, v in row.items() if k in ("tau", "tau_mem", "tau_syn", "v_threshold", "r"))
        ctx.say(f"{row['name']:>16}  {row['type']:<10} {consts}")
    ctx.say(f"{len(info['nodes'])} nodes, {len(info['edges'])} edges, metadata {info['metadata']}")
    return info


def _crosscheck(args: argparse.Namespace, ctx) -> dict:
    from neurosim.cli import params_from_args
    from neurosim.snn.reference import crosscheck_brian2

    base = {k: v for k, v in (("neurons", args.neurons), ("steps", args.steps), ("seed", args.seed)) if v is not None}
    if args.no_synaptic:
        base["synaptic"] = False
    p = params_from_args(args, CrosscheckParams, base)
    r = crosscheck_brian2(p.neurons, p.steps, p.synaptic, p.seed)
    ctx.say(f"{r.neurons} neurons x {r.steps} steps ({'with' if r.synaptic else 'without'} synaptic current): "
            f"{r.spike_mismatches} spike mismatches of {r.spikes_brian2} spikes, max |dv| = {r.max_abs_dv:.3g}")
    return dataclasses.asdict(r)
