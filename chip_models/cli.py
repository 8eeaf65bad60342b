"""``neurosim chip estimate | simulate | map``: a thin layer over chip_models' Python API."""

from __future__ import annotations

import argparse

from neurosim.cli import add_verb, defaults_of
from neurosim.io import Output, check_writable

CHIP_DEFAULTS = defaults_of("chip_models.config:load_chip", "tianjic")  # --set keys: figures of --chip
NETWORK_HELP = "an integer network folder (neurosim.intnet.save), a .nir file, or 'reference' (built-in DashNet-like net)"


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(name, help="neuromorphic chip models: estimate, simulate, map",
                                   description="Map integer ANN/SNN networks onto a many-core neuromorphic chip model, "
                                   "simulate them bit-exactly on int8 kernels and estimate FPS, latency and energy.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    p = add_verb(sub, "estimate", _estimate, help="FPS, latency, energy and per-core breakdown of a network on a chip",
                 example="neurosim chip estimate reference --chip tianjic -o report.json --plot report.png",
                 params=CHIP_DEFAULTS, inputs=("network", "input", "chip"),
                 outputs=[Output(companions=lambda out, args: [out.with_suffix(".md")]), Output(dest="plot", option="--plot")])
    _common(p)
    p.add_argument("--input", metavar="INPUT.npz", help="input arrays (one per network input, int8 (T, ...)); "
                   "default: synthetic frames and events")
    p.add_argument("--frames", type=int, default=2, help="synthetic frames to run (default 2)")
    p.add_argument("--activity", type=float, default=0.1, help="synthetic event probability per input and step (default 0.1)")
    p.add_argument("-o", "--out", metavar="REPORT.json", help="write the full report as JSON (and REPORT.md beside it)")
    p.add_argument("--plot", metavar="REPORT.png", help="write a PNG plot")

    p = add_verb(sub, "simulate", _simulate, help="run a network core by core on the chip kernels",
                 example="neurosim chip simulate net_folder input.npz -o outputs.npz --check", params=CHIP_DEFAULTS,
                 inputs=("network", "input", "chip"), outputs=[Output()])
    _common(p)
    p.add_argument("input", metavar="INPUT.npz", help="input arrays named as the network inputs, int8 (T, ...)")
    p.add_argument("-o", "--out", metavar="OUTPUTS.npz", help="write the outputs (one array per network output)")
    p.add_argument("--check", action="store_true", help="also run the Python integer reference and compare bit for bit")

    p = add_verb(sub, "map", _map, help="show how a network is cut into cores and placed on the mesh",
                 example="neurosim chip map reference --chip tianjicx", params=CHIP_DEFAULTS)
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("network", metavar="NETWORK", help=NETWORK_HELP)
    p.add_argument("--chip", default="tianjic", help="chip preset (tianjic, tianjicx, generic) or a .toml file; "
                   "--set KEY=VALUE overrides one chip figure, e.g. --set chips=2")
    p.add_argument("--dt", type=float, default=None,
                   help="NIR import: time step in seconds (default: the graph's metadata dt, else 1e-3)")
    p.add_argument("--steps", type=int, default=1, help="NIR import: time steps per frame (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference network and synthetic inputs")
    p.add_argument("--path", default="auto", help="kernel path: auto, scalar, avx2, avx512vnni, avxvnni, amx (AMX-INT8 dense MAC; never chosen by auto)")
    p.add_argument("--threads", type=int, default=0, help="kernel threads: each conv layer's output rows are split "
                   "over them, like a chip's cores (default 0 = all CPUs; 1 = one thread; same results for any count)")


def _options(args: argparse.Namespace):
    """The simulation options of --path and --threads, checked (ParameterError, exit 2)."""
    from chip_models import kernels
    from chip_models.simulate import SimOptions

    kernels.resolve_path(args.path)
    kernels._valid_threads(args.threads)
    return SimOptions(path=args.path, threads=args.threads)


def _network_options(args: argparse.Namespace) -> dict:
    return {"dt": args.dt, "steps": args.steps, "seed": args.seed, "overrides": args.overrides, "config": args.config}


def _setup(args: argparse.Namespace):
    from chip_models.pipeline import prepare

    _options(args)
    return prepare(args.network, args.chip, **_network_options(args))


def _estimate(args: argparse.Namespace, ctx) -> dict:
    from chip_models.pipeline import estimate_network, write_report

    from neurosim.extras import ensure_installed

    if args.plot:
        ensure_installed(["matplotlib"], "neurosim chip estimate --plot", prefer="chip")
    for path in (args.out, args.plot):
        if path:
            check_writable(path)
    options = _options(args)
    rep = estimate_network(args.network, args.chip, inputs=args.input, frames=args.frames, activity=args.activity,
                           options=options, **_network_options(args))
    ctx.say(rep.table())
    write_report(rep, args.out, args.plot)
    if args.out:
        ctx.say(f"wrote {args.out}")
    if args.plot:
        ctx.say(f"wrote {args.plot}")
    return {**rep.summary, "report": args.out, "plot": args.plot}


def _simulate(args: argparse.Namespace, ctx) -> dict:
    from chip_models.pipeline import simulate_network

    if args.out:
        check_writable(args.out)
    options = _options(args)
    summary = simulate_network(args.network, args.input, args.chip, check=args.check, out=args.out, options=options,
                               **_network_options(args))
    ctx.say(f"simulated {summary['frames']} frames of {summary['network']} on {summary['cores_used']} cores of "
            f"{summary['chip']} in {summary['seconds']:.3f} s")
    if args.check:
        ctx.say(f"bit-exact with the Python integer reference: {summary['bit_exact']} "
                f"(reference {summary['reference_seconds']} s)")
    if args.out:
        ctx.say(f"wrote {args.out}")
    return summary


def _map(args: argparse.Namespace, ctx) -> dict:
    chip, net, mapping = _setup(args)
    s = mapping.summary()
    ctx.say(f"network {net.name} on {chip.name}: {s['cores_used']}/{s['cores_available']} cores, mesh "
            f"{s['mesh'][0]}x{s['mesh'][1]}, {s['routes']} routes, mean {s['mean_hops']:.1f} hops")
    ctx.say(f"{'layer':<16}{'kind':<9}{'mode':<5}{'cores':>6}  {'splits (in/out/pos)':<20}{'fan-in':>7}{'memory B':>10}")
    for x in s["layers"]:
        sp = x["splits"]
        ctx.say(f"{x['name']:<16}{x['kind']:<9}{x['mode']:<5}{x['cores']:>6}  "
                f"{sp['inputs']}/{sp['outputs']}/{sp['positions']:<16}{x['max_fan_in']:>7}{x['max_memory_bytes']:>10}")
    return s
