"""Benchmark of the docs/explanation/references.md §2 network: neurosim vs norse, snntorch and SpikingJelly.

Network: T = 20, batch 16, 2×34×34 input with 10 % events; conv 2→16 3×3 (pad 1) → LIF →
conv 16→32 3×3 (pad 1) → LIF → flatten → linear 36992 → 10; loss = cross-entropy of the
time-averaged output. All libraries get the same weights and the same LIF dynamics
(decay 0.9 per 1 ms step: norse LIFBox τ_mem⁻¹ = 100/s, snntorch Leaky β = 0.9 with inputs
scaled by 0.1, SpikingJelly LIFNode τ = 10). Each other library runs two ways — its usual
per-step loop and with the convolutions batched over T·B (the faster of the two counts).
Weights are scaled (``--gain``) so the hidden layers fire at realistic rates; the rates are
reported, since neurosim's spike kernels get faster with fewer spikes.

neurosim runs its fused chain path (``neurosim.snn.chain``: the whole conv → LIF → conv → LIF →
linear stack in one C++ pass per sample); ``neurosim_layer_by_layer`` is the same network with
the chain switched off (the previous path), timed alongside for before/after figures and not
counted among the other libraries.

Run: ``.venv/bin/python tests/benchmarks/bench_snn.py [--iters 10] [--gain 60] [--threads N]``; prints JSON.
Times are medians (and minima) in ms per iteration, libraries interleaved round-robin (the
machine is shared, so figures are noisy; the 1-minute load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

T, B, H, W = 20, 16, 34, 34


def make_data(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((T, B, 2, H, W), generator=g) < 0.1).float()
    y = torch.randint(0, 10, (B,), generator=g)
    return x, y


def make_weights(seed: int, gain: float):
    torch.manual_seed(seed)
    c1, c2 = torch.nn.Conv2d(2, 16, 3, padding=1), torch.nn.Conv2d(16, 32, 3, padding=1)
    fc = torch.nn.Linear(32 * H * W, 10)
    with torch.no_grad():
        for m in (c1, c2):
            m.weight.mul_(gain)
            m.bias.mul_(gain)
    return {k: v.detach().clone() for k, v in
            {"c1.w": c1.weight, "c1.b": c1.bias, "c2.w": c2.weight, "c2.b": c2.bias, "fc.w": fc.weight, "fc.b": fc.bias}.items()}


def _load(conv1, conv2, fc, w, scale=1.0):
    with torch.no_grad():
        conv1.weight.copy_(w["c1.w"] * scale); conv1.bias.copy_(w["c1.b"] * scale)
        conv2.weight.copy_(w["c2.w"] * scale); conv2.bias.copy_(w["c2.b"] * scale)
        fc.weight.copy_(w["fc.w"]); fc.bias.copy_(w["fc.b"])


# ----------------------------------------------------------------------------- neurosim


def neurosim_net(w):
    from neurosim.snn import layers as L
    from neurosim.snn.neurons import LIFBox
    from neurosim.snn.sequential import Sequential

    # the input is DVS events (0/1), so the first convolution is told so (no per-call check)
    net = Sequential(L.Conv2d(2, 16, 3, padding=1, spike_input=True), LIFBox(),
                     L.Conv2d(16, 32, 3, padding=1), LIFBox(), L.Flatten(), L.Linear(32 * H * W, 10))
    _load(net[0], net[2], net[5], w)

    def run(x):
        return net(x).mean(0)
    return run, net


def neurosim_layer_by_layer(w):
    """neurosim with the fused chain switched off (the path before it): for before/after figures."""
    from neurosim.snn import chain

    run, net = neurosim_net(w)

    def run_lbl(x):
        with chain.disabled():
            return run(x)
    return run_lbl, net


def firing_rates(net, x) -> dict:
    """Fraction of 1s in the input and in the output of each neuron layer."""
    rates, h, n = {"input": float(x.mean())}, x, 0
    with torch.no_grad():
        for m in net:
            h = m.sequence(h)[0] if hasattr(m, "sequence") else m(h)
            if hasattr(m, "sequence"):
                n += 1
                rates[f"lif{n}"] = round(float(h.mean()), 4)
    return rates


# -------------------------------------------------------------------------------- norse


def norse_net(w, folded: bool):
    from norse.torch import LIFBoxCell

    conv1, conv2 = torch.nn.Conv2d(2, 16, 3, padding=1), torch.nn.Conv2d(16, 32, 3, padding=1)
    fc = torch.nn.Linear(32 * H * W, 10)
    _load(conv1, conv2, fc, w)
    lif1, lif2 = LIFBoxCell(), LIFBoxCell()
    mods = torch.nn.ModuleList([conv1, conv2, fc, lif1, lif2])

    def run(x):
        if folded:
            c1 = conv1(x.flatten(0, 1)).unflatten(0, (T, B))
            s, z1 = None, []
            for t in range(T):
                z, s = lif1(c1[t], s)
                z1.append(z)
            c2 = conv2(torch.stack(z1).flatten(0, 1)).unflatten(0, (T, B))
            s, z2 = None, []
            for t in range(T):
                z, s = lif2(c2[t], s)
                z2.append(z)
            return fc(torch.stack(z2).flatten(2)).mean(0)
        s1 = s2 = None
        outs = []
        for t in range(T):
            z, s1 = lif1(conv1(x[t]), s1)
            z, s2 = lif2(conv2(z), s2)
            outs.append(fc(z.flatten(1)))
        return torch.stack(outs).mean(0)
    return run, mods


# ----------------------------------------------------------------------------- snntorch


def snntorch_net(w, folded: bool):
    import snntorch as snn

    conv1, conv2 = torch.nn.Conv2d(2, 16, 3, padding=1), torch.nn.Conv2d(16, 32, 3, padding=1)
    fc = torch.nn.Linear(32 * H * W, 10)
    _load(conv1, conv2, fc, w, scale=0.1)  # Leaky: mem = β mem + x, so x carries the (1-β) gain
    lif1, lif2 = snn.Leaky(beta=0.9), snn.Leaky(beta=0.9)
    mods = torch.nn.ModuleList([conv1, conv2, fc, lif1, lif2])

    def run(x):
        m1, m2 = lif1.reset_mem(), lif2.reset_mem()
        if folded:
            c1 = conv1(x.flatten(0, 1)).unflatten(0, (T, B))
            z1 = []
            for t in range(T):
                z, m1 = lif1(c1[t], m1)
                z1.append(z)
            c2 = conv2(torch.stack(z1).flatten(0, 1)).unflatten(0, (T, B))
            z2 = []
            for t in range(T):
                z, m2 = lif2(c2[t], m2)
                z2.append(z)
            return fc(torch.stack(z2).flatten(2)).mean(0)
        outs = []
        for t in range(T):
            z, m1 = lif1(conv1(x[t]), m1)
            z, m2 = lif2(conv2(z), m2)
            outs.append(fc(z.flatten(1)))
        return torch.stack(outs).mean(0)
    return run, mods


# ------------------------------------------------------------------------- SpikingJelly


def spikingjelly_net(w, multistep: bool):
    from spikingjelly.activation_based import functional, layer, neuron

    mode = "m" if multistep else "s"
    net = torch.nn.Sequential(
        layer.Conv2d(2, 16, 3, padding=1, step_mode=mode), neuron.LIFNode(tau=10.0, step_mode=mode),
        layer.Conv2d(16, 32, 3, padding=1, step_mode=mode), neuron.LIFNode(tau=10.0, step_mode=mode),
        layer.Flatten(step_mode=mode), layer.Linear(32 * H * W, 10, step_mode=mode),
    )
    _load(net[0], net[2], net[5], w)

    def run(x):
        functional.reset_net(net)
        if multistep:
            return net(x).mean(0)
        return torch.stack([net(x[t]) for t in range(T)]).mean(0)
    return run, net


# ------------------------------------------------------------------------------ driver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gain", type=float, default=60.0, help="weight scale of the two convolutions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch (and neurosim) threads; 0 = torch's default")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    x, y = make_data(args.seed)
    w = make_weights(args.seed, args.gain)
    ours, ours_mod = neurosim_net(w)
    rates = firing_rates(ours_mod, x)
    from neurosim.snn import chain

    neurosim_path = "fused chain" if chain.match(list(ours_mod), x) == len(ours_mod) else "layer by layer"
    runners = {"neurosim": (ours, ours_mod), "neurosim_layer_by_layer": neurosim_layer_by_layer(w)}
    skipped = {}
    for name, factory in [("norse_step", lambda: norse_net(w, False)), ("norse_folded", lambda: norse_net(w, True)),
                          ("snntorch_step", lambda: snntorch_net(w, False)), ("snntorch_folded", lambda: snntorch_net(w, True)),
                          ("spikingjelly_single_step", lambda: spikingjelly_net(w, False)),
                          ("spikingjelly_multi_step", lambda: spikingjelly_net(w, True))]:
        try:
            runners[name] = factory()
        except ImportError as exc:
            skipped[name] = f"not installed: {exc.name}"

    def fwd_bwd(run, mod):
        mod.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(run(x), y)
        loss.backward()

    def fwd(run, mod):
        with torch.no_grad():
            run(x)

    times = {"fwd_bwd": {n: [] for n in runners}, "fwd": {n: [] for n in runners}}
    cpu = {"fwd_bwd": {n: [] for n in runners}, "fwd": {n: [] for n in runners}}
    for kind, fn in (("fwd_bwd", fwd_bwd), ("fwd", fwd)):
        for it in range(args.warmup + args.iters):
            for name, (run, mod) in runners.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn(run, mod)
                dt = (time.perf_counter() - t0) * 1e3
                dc = (time.process_time() - c0) * 1e3
                if it >= args.warmup:
                    times[kind][name].append(dt)
                    cpu[kind][name].append(dc)

    # agreement check: neurosim and norse (same weights, same dynamics) give the same output
    with torch.no_grad():
        agree = float((runners["neurosim"][0](x) - runners["norse_folded"][0](x)).abs().max()) if "norse_folded" in runners else None

    med = {k: {n: round(statistics.median(v), 2) for n, v in d.items()} for k, d in times.items()}
    best_ms = {k: {n: round(min(v), 2) for n, v in d.items()} for k, d in times.items()}
    others = {k: {n: t for n, t in d.items() if not n.startswith("neurosim")} for k, d in med.items()}
    others_min = {k: {n: t for n, t in d.items() if not n.startswith("neurosim")} for k, d in best_ms.items()}
    result = {
        "network": "T=20 B=16 2x34x34 10% events; conv2-16 3x3 -> LIF -> conv16-32 3x3 -> LIF -> linear 36992-10",
        "threads": torch.get_num_threads(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "iters": args.iters,
        "conv_gain": args.gain,
        "neurosim_path": neurosim_path,
        "neurosim_firing_rates": rates,
        "max_abs_output_diff_neurosim_vs_norse": agree,
        "median_ms": med,
        "min_ms": best_ms,
        # process CPU time (all threads): with --threads 1 on a shared machine this is less
        # sensitive to other processes than wall time
        "median_cpu_ms": {k: {n: round(statistics.median(v), 2) for n, v in d.items()} for k, d in cpu.items()},
        "skipped": skipped,
    }
    for kind in ("fwd_bwd", "fwd"):
        if others[kind]:
            best = min(others[kind], key=others[kind].get)
            result[f"{kind}_fastest_other"] = best
            result[f"{kind}_speedup_vs_fastest_other"] = round(others[kind][best] / med[kind]["neurosim"], 2)
            result[f"{kind}_speedup_vs_neurosim_layer_by_layer"] = round(
                med[kind]["neurosim_layer_by_layer"] / med[kind]["neurosim"], 2)
            best_min = min(others_min[kind], key=others_min[kind].get)
            result[f"{kind}_speedup_vs_fastest_other_by_min"] = round(
                others_min[kind][best_min] / best_ms[kind]["neurosim"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
