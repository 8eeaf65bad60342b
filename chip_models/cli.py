"""``neurosim chip estimate | simulate | map``: a thin layer over chip_models' Python API."""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

from neurosim.cli import add_verb
from neurosim.errors import InputError, ParameterError
from neurosim.io import atomic_output, check_writable, existing_file

NETWORK_HELP = "an integer network folder (neurosim.intnet.save), a .nir file, or 'reference' (built-in DashNet-like net)"


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(name, help="neuromorphic chip models: estimate, simulate, map",
                                   description="Map integer ANN/SNN networks onto a many-core neuromorphic chip model, "
                                   "simulate them bit-exactly on int8 kernels and estimate FPS, latency and energy.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    p = add_verb(sub, "estimate", _estimate, help="FPS, latency, energy and per-core breakdown of a network on a chip",
                 example="neurosim chip estimate reference --chip tianjic -o report.json --plot report.png")
    _common(p)
    p.add_argument("--input", metavar="INPUT.npz", help="input arrays (one per network input, int8 (T, ...)); "
                   "default: synthetic frames and events")
    p.add_argument("--frames", type=int, default=2, help="synthetic frames to run (default 2)")
    p.add_argument("--activity", type=float, default=0.1, help="synthetic event probability per input and step (default 0.1)")
    p.add_argument("-o", "--out", metavar="REPORT.json", help="write the full report as JSON (and REPORT.md beside it)")
    p.add_argument("--plot", metavar="REPORT.png", help="write a PNG plot")

    p = add_verb(sub, "simulate", _simulate, help="run a network core by core on the chip kernels",
                 example="neurosim chip simulate net_folder input.npz -o outputs.npz --check")
    _common(p)
    p.add_argument("input", metavar="INPUT.npz", help="input arrays named as the network inputs, int8 (T, ...)")
    p.add_argument("-o", "--out", metavar="OUTPUTS.npz", help="write the outputs (one array per network output)")
    p.add_argument("--check", action="store_true", help="also run the Python integer reference and compare bit for bit")

    p = add_verb(sub, "map", _map, help="show how a network is cut into cores and placed on the mesh",
                 example="neurosim chip map reference --chip tianjicx")
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("network", metavar="NETWORK", help=NETWORK_HELP)
    p.add_argument("--chip", default="tianjic", help="chip preset (tianjic, tianjicx, generic) or a .toml file; "
                   "--set KEY=VALUE overrides one chip figure, e.g. --set chips=2")
    p.add_argument("--dt", type=float, default=None,
                   help="NIR import: time step in seconds (default: the graph's metadata dt, else 1e-3)")
    p.add_argument("--steps", type=int, default=1, help="NIR import: time steps per frame (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference network and synthetic inputs")
    p.add_argument("--path", default="auto", help="kernel path: auto, scalar, avx2, avx512vnni, avxvnni")
    p.add_argument("--threads", type=int, default=0, help="kernel threads: each conv layer's output rows are split "
                   "over them, like a chip's cores (default 0 = all CPUs; 1 = one thread; same results for any count)")


def _setup(args: argparse.Namespace):
    from chip_models import kernels
    from chip_models.config import load_chip
    from chip_models.mapper import map_network
    from chip_models.network import load_network
    from neurosim.config import load_toml

    kernels.set_path(args.path)
    kernels.set_threads(args.threads)
    if args.steps < 1 or (args.dt is not None and not args.dt > 0):
        raise ParameterError("--steps must be ≥ 1 and --dt positive")
    extra = load_toml(args.config) if args.config else None
    chip = load_chip(args.chip, args.overrides, extra)
    net = load_network(args.network, dt=args.dt, steps=args.steps, seed=args.seed)
    return chip, net, map_network(net, chip)


def _load_inputs(path: str) -> dict[str, np.ndarray]:
    import zipfile

    p = existing_file(path, "input file")
    try:
        data = np.load(p, allow_pickle=False)
        if not hasattr(data, "files"):
            raise ValueError("a single array, not an .npz archive")
        with data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p} is not a readable .npz file ({exc}): save the inputs with numpy.savez") from None


def _estimate(args: argparse.Namespace, ctx) -> dict:
    from chip_models import report
    from chip_models.reference_net import synthetic_inputs
    from chip_models.simulate import simulate
    from chip_models.timing import estimate

    for path in (args.out, args.plot):
        if path:
            check_writable(path)
    if args.frames < 1 or not 0 <= args.activity <= 1:
        raise ParameterError("--frames must be ≥ 1 and --activity within 0..1")
    chip, net, mapping = _setup(args)
    inputs = _load_inputs(args.input) if args.input else synthetic_inputs(net, args.frames, args.seed, args.activity)
    t0 = time.perf_counter()
    sim = simulate(mapping, inputs)
    est = estimate(mapping, sim)
    ctx.say(report.table(est))
    extra = {"inputs": args.input or f"synthetic: {args.frames} frames, event activity {args.activity}, seed {args.seed}",
             "chip_config": chip.__dict__, "simulation_seconds": round(time.perf_counter() - t0, 3)}
    if args.out:
        report.write_json(est, args.out, extra)
        report.write_markdown(est, pathlib.Path(args.out).with_suffix(".md"))
        ctx.say(f"wrote {args.out}")
    if args.plot:
        report.write_plot(est, args.plot, (chip.rows, chip.cols))
        ctx.say(f"wrote {args.plot}")
    return {**report.headline(est), "report": args.out, "plot": args.plot}


def _simulate(args: argparse.Namespace, ctx) -> dict:
    from chip_models.simulate import simulate
    from neurosim.intnet import run_reference

    if args.out:
        check_writable(args.out)
    chip, net, mapping = _setup(args)
    inputs = _load_inputs(args.input)
    t0 = time.perf_counter()
    sim = simulate(mapping, inputs)
    seconds = time.perf_counter() - t0
    summary = {"network": net.name, "chip": chip.name, "frames": sim.frames, "cores_used": len(mapping.tiles),
               "seconds": round(seconds, 4), "outputs": {k: list(v.shape) for k, v in sim.outputs.items()}}
    ctx.say(f"simulated {sim.frames} frames of {net.name} on {len(mapping.tiles)} cores of {chip.name} in {seconds:.3f} s")
    if args.check:
        t0 = time.perf_counter()
        ref = run_reference(net, {k: inputs[k] for k in net.inputs})
        summary["reference_seconds"] = round(time.perf_counter() - t0, 4)
        summary["bit_exact"] = all(np.array_equal(ref[k], sim.outputs[k]) for k in ref)
        ctx.say(f"bit-exact with the Python integer reference: {summary['bit_exact']} "
                f"(reference {summary['reference_seconds']} s)")
        if not summary["bit_exact"]:
            raise ParameterError("the chip simulation differs from the integer reference: please report this bug")
    if args.out:
        with atomic_output(args.out) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **sim.outputs)
        summary["out"] = args.out
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
