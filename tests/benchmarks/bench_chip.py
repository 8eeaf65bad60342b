"""Benchmark of the chip kernels and simulation; prints JSON (run: .venv/bin/python tests/benchmarks/bench_chip.py).

* dense int8 MAC throughput (one core) as a fraction of this CPU's int8 peak, per path;
* event-driven spike accumulation in synaptic operations per second at 10 % input activity;
* simulation speed of the reference network vs the Python integer reference (run_reference);
* torch's fbgemm int8 linear (torch.ops.quantized.linear) on the same shape, one thread, alone and
  interleaved with the automatic path's dense MAC (their ratio then robust to the host's load).

Peak formula (documented in docs/explanation/chip-kernels.md): an exact int8 GEMM on AVX2 needs two
multiply-pipe instructions per 32 MACs (two vpmaddwd on int16-widened data, or vpmaddubsw plus
vpmaddwd-by-ones to widen its int16 pair sums, as fbgemm does), so the int8 peak is
(256 / 16) MACs per instruction × 2 multiply pipes × clock (MHz from /proc/cpuinfo). A
register-only vpmaddwd loop measures what the (boosting, shared) CPU really delivers; a register-only
zmm vpdpbusd loop does the same for AVX-512 VNNI (Zen 4 issues one per cycle, the formula two). Timings
on a shared machine are noisy: best CPU time of several repeats.
"""

from __future__ import annotations

import json
import os
import re
import time

# one thread everywhere: numpy's BLAS threads would otherwise spin and add CPU time to both sides
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from chip_models import kernels  # noqa: E402


def cpu_info() -> dict:
    text = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", text).group(1)
    mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", text).group(1))
    flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
    return {"model": model, "mhz": mhz, "avx2": "avx2" in flags, "avx512vnni": "avx512_vnni" in flags,
            "avxvnni": "avx_vnni" in flags, "logical_cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}


def best(fn, repeats=5) -> float:
    """Best CPU time (process_time) of ``repeats`` runs: on a shared machine the CPU time of this
    single-threaded process is far less noisy than the wall time (both are reported in ``TIMES``)."""
    cpu, wall = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    TIMES.append({"cpu_s": round(min(cpu), 5), "wall_s": round(min(wall), 5)})
    return min(cpu)


TIMES: list = []


def dense(info: dict) -> dict:
    rng = np.random.default_rng(0)
    n, k, m = 1024, 2048, 2048
    x = rng.integers(-128, 128, (n, k)).astype(np.int8)
    w = rng.integers(-128, 128, (m, k)).astype(np.int8)
    clock = info["mhz"] * 1e6
    vec_bits = 512 if info["avx512vnni"] else 256
    ports = 2  # vector integer multiply pipes (Zen 3: VPMADDWD/VPMADDUBSW ymm, 2 per clock)
    # Every exact int8 GEMM on AVX2 spends two multiply-pipe instructions per 32 MACs: two
    # vpmaddwd on int16-widened data, or vpmaddubsw + vpmaddwd-by-ones to widen its int16 pair
    # sums (fbgemm's AVX2 kernels do the latter). So the int8 peak is (256/16) = 16 MACs per
    # multiply instruction × 2 pipes = 32 MACs per cycle per core.
    peaks = {
        "int8_avx2": (256 // 16) * ports * clock,
        "vpmaddubsw_alone": (256 // 8) * ports * clock,  # 32 products per instruction, int16 results only
    }
    if info["avx512vnni"]:
        peaks["vpdpbusd_512"] = (vec_bits // 8) * ports * clock
    if info["avx2"]:  # the instruction's throughput as this (shared, virtualized) CPU delivers it
        from chip_models import _kernels

        rounds = 20_000_000
        dt = best(lambda: _kernels.madd_probe(rounds), 3)
        peaks["measured_int8_avx2"] = rounds * 12 * 16 / dt
    if info["avx512vnni"]:  # the same for zmm vpdpbusd: Zen 4 issues one per clock, not two
        from chip_models import _kernels

        rounds = 10_000_000
        dt = best(lambda: _kernels.vnni512_probe(rounds), 3)
        peaks["measured_vpdpbusd_512"] = rounds * 12 * 64 / dt
    out = {"shape_NxKxM": [n, k, m], "peak_mac_per_s": peaks, "paths": {},
           "peak_note": "int8_avx2: 16 MACs per multiply instruction x 2 multiply pipes x nominal clock "
                        "(/proc/cpuinfo); vpmaddubsw_alone: its 32 products per instruction without the "
                        "widening every exact GEMM needs; measured_int8_avx2: 12 independent register-only "
                        "vpmaddwd chains timed here (the CPU boosts above its nominal clock); vpdpbusd_512: 64 MACs x "
                        "2 ports x nominal clock (Sapphire Rapids' two 512-bit ports); measured_vpdpbusd_512: 12 "
                        "independent register-only zmm vpdpbusd chains timed here (Zen 4 issues one per clock)"}
    x_relu = np.maximum(x, 0)  # non-negative inputs (ReLU outputs): the exact vpmaddubsw kernel on AVX2
    for path in kernels.available_paths():
        with kernels.use_path(path):
            packed = kernels.pack(w)
            rows = 64 if path == "scalar" else n
            for label, data in (("signed_inputs", x), ("non_negative_inputs", x_relu)):
                xs = np.ascontiguousarray(data[:rows])
                dt = best(lambda: kernels.dense_mac(xs, packed), 3 if path == "scalar" else 5)
                rate = rows * k * m / dt
                out["paths"][f"{path}/{label}"] = {
                    "gmac_per_s": round(rate / 1e9, 2), "gops_per_s": round(2 * rate / 1e9, 2),
                    **{f"fraction_of_{name}": round(rate / p, 3) for name, p in peaks.items()}}
    # the paths this CPU cannot run, each with the reason (the AMX path is reported beside the
    # others where it runs, and here where it does not)
    features = _kernels_features()
    need = {"avx2": "AVX2", "avxvnni": "AVX-VNNI", "avx512vnni": "AVX-512 VNNI",
            "amx": "AMX-INT8 tiles (the amx_int8 / amx_tile flags and the kernel's XTILEDATA permission)"}
    out["paths_not_on_this_cpu"] = {p: f"skipped: this CPU has no {need[p]}" for p in need
                                    if p not in kernels.available_paths()}
    out["cpu_features"] = features
    if {"avx512vnni", "avxvnni"} <= set(kernels.available_paths()):
        # the previous AVX-512 VNNI kernel (4 x-rows x 2 w-rows, horizontal sums), in the same run
        from chip_models import _kernels

        with kernels.use_path("avxvnni"):
            chunk = kernels.pack(w).chunks[0]
        res = np.empty((n, m), np.int32)
        for label, data in (("signed_inputs", x), ("non_negative_inputs", x_relu)):
            xs = np.ascontiguousarray(data)
            dt = best(lambda: _kernels.dense_mac_vnni512_rows(chunk, xs, None, res), 5)
            rate = n * k * m / dt
            out["paths"][f"avx512vnni_previous_rows_kernel/{label}"] = {
                "gmac_per_s": round(rate / 1e9, 2), "gops_per_s": round(2 * rate / 1e9, 2),
                **{f"fraction_of_{name}": round(rate / p, 3) for name, p in peaks.items()}}
    return out


def _kernels_features() -> dict:
    from chip_models import _kernels

    return {k: bool(v) for k, v in _kernels.cpu_features().items()}


def spikes() -> dict:
    rng = np.random.default_rng(1)
    steps, k, m = 4000, 1024, 256
    x = (rng.random((steps, k)) < 0.1).astype(np.int8)
    wt = rng.integers(-128, 128, (k, m)).astype(np.int8)
    out = {"shape_TxKxM": [steps, k, m], "activity": 0.1, "paths": {}}
    for path in ("scalar", "avx2"):
        if path not in kernels.available_paths():
            continue
        with kernels.use_path(path):
            res = {}
            dt = best(lambda: res.update(a=kernels.spike_accumulate(x, wt)[1]))
            sops = res["a"] * m
            out["paths"][path] = {"sop_per_s": float(f"{sops / dt:.3g}"), "target": 1e9, "seconds": round(dt, 4)}
    return out


def best_interleaved(fns: dict, repeats: int) -> dict:
    """Best times of each of ``fns`` (name → callable), the runs interleaved (a, b, a, b, ...) so
    that load changes on the shared machine hit all of them alike: ``cpu_s`` the CPU time of the
    calling thread (time.thread_time; all the work of a single-threaded run, and not the idle
    spin of the kernel pool's workers after a threaded run), ``process_cpu_s`` that of all
    threads, ``wall_s`` the wall time."""
    cpu = {k: [] for k in fns}
    pcpu = {k: [] for k in fns}
    wall = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.thread_time() - c0)
            pcpu[k].append(time.process_time() - p0)
    return {k: {"cpu_s": min(cpu[k]), "process_cpu_s": min(pcpu[k]), "wall_s": min(wall[k])} for k in fns}


def _busy_jiffies() -> tuple[int, int]:
    """(non-idle jiffies of all CPUs, jiffies of this process) from /proc: their difference over an
    interval is the CPU time other processes took meanwhile."""
    with open("/proc/stat") as f:
        cpu = [int(v) for v in f.readline().split()[1:]]
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return sum(cpu) - cpu[3] - cpu[4], int(own[11]) + int(own[12])


def simulation(widths=None, threads=None, n_rounds=12) -> dict:
    """Reference network (or the variant with ``widths``): run_reference vs the chip simulation.

    Two speedups: ``speedup_cpu_1_thread`` = reference CPU time / simulation CPU time with
    ``threads=1`` (per CPU second), and ``speedup_wall_N_threads`` = reference wall time (it is
    single-threaded) / simulation wall time with N threads (all CPUs by default: the speed a user
    sees). ``n_rounds`` rounds of one reference run and 5 + 5 simulation runs (1 and N threads
    alternating), so that load changes on a shared machine hit both sides alike; each figure is
    the best of its runs, and ``*_median_of_rounds`` the median over the rounds of each round's own
    ratio (robust to a round that caught a busy moment). ``other_processes_cpus``: how many CPUs
    other processes kept busy on average while this ran (0 on an idle host)."""
    from chip_models.config import load_chip
    from chip_models.mapper import map_network
    from chip_models.reference_net import build_reference, synthetic_inputs
    from chip_models.simulate import SimOptions, compile as compile_plan, simulate
    from neurosim.intnet import run_reference

    n_threads = threads or kernels.cpu_count()
    net = build_reference() if widths is None else build_reference(widths=widths)
    frames = 8
    x = synthetic_inputs(net, frames=frames, activity=0.1)
    mapping = map_network(net, load_chip("tianjic", [f"chips={1 if widths is None else 8}"]))
    plan = compile_plan(mapping, SimOptions(threads=n_threads))  # the path: the process default (auto)
    simulate(plan, x, threads=1)
    simulate(plan, x, threads=n_threads)
    load0 = os.getloadavg()[0]
    (busy0, own0), t_start = _busy_jiffies(), time.perf_counter()
    rounds = [best_interleaved({"ref": lambda: run_reference(net, x)}, 1)
              | best_interleaved({"1": lambda: simulate(plan, x, threads=1),
                                  "n": lambda: simulate(plan, x, threads=n_threads)}, 5) for _ in range(n_rounds)]
    (busy1, own1), elapsed = _busy_jiffies(), time.perf_counter() - t_start
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / os.sysconf("SC_CLK_TCK") / elapsed
    best_of = {k: {f: min(r[k][f] for r in rounds) for f in rounds[0][k]} for k in rounds[0]}
    ref_t, sim_t = best_of["ref"], best_of
    med_cpu = float(np.median([r["ref"]["cpu_s"] / r["1"]["cpu_s"] for r in rounds]))
    med_wall = float(np.median([r["ref"]["wall_s"] / r["n"]["wall_s"] for r in rounds]))
    med_scaling = float(np.median([r["1"]["wall_s"] / r["n"]["wall_s"] for r in rounds]))
    ref = run_reference(net, x)
    ok = all(all(np.array_equal(ref[k], v) for k, v in simulate(plan, x, threads=n).outputs.items())
             for n in (1, n_threads))
    # where the simulation's time goes: the fused whole-layer kernel of each conv layer
    layers = {}
    vals = simulate(plan, x, keep_values=True, threads=1).values
    for layer in net.layers:
        if layer.kind == "conv2d":
            src = vals[layer.source]
            run = {}

            def one(n, src=src, layer=layer, run=run):
                run["r"] = kernels.conv_layer(src, layer.weight, layer.bias, layer.stride, layer.padding, layer.shift,
                                              layer.activation or "none", layer.lut,
                                              layer.neuron if layer.mode == "snn" else None, threads=n)
            t = best_interleaved({"1": lambda: one(1), "n": lambda: one(n_threads)}, 7)
            layers[layer.name] = {"ms_per_frame": round(t["1"]["cpu_s"] / frames * 1e3, 3),
                                  f"wall_ms_per_frame_{n_threads}_threads": round(t["n"]["wall_s"] / frames * 1e3, 3),
                                  "mode": run["r"].mode,
                                  "steps_per_frame": src.shape[0] // frames,
                                  "int16_accumulators": run["r"].int16,
                                  "input_activity": round(float(np.count_nonzero(src)) / src.size, 3)}
    # the SNN chains (simulate's path for them): each in one kernels.snn_chain call, spikes bit-packed between layers
    chains = {}
    for first, chain in plan.chains.items():
        names, convs, calls, pools = chain.names, chain.convs, list(chain.calls), list(chain.pools)
        src = vals[convs[0].source]
        t = best_interleaved({n: lambda src=src, calls=calls, pools=pools, n=n: kernels.snn_chain(src, calls, pools, n)
                              for n in (1, n_threads)}, 7)
        chains[first] = {"layers": list(names), "ms_per_frame": round(t[1]["cpu_s"] / frames * 1e3, 3),
                         f"wall_ms_per_frame_{n_threads}_threads": round(t[n_threads]["wall_s"] / frames * 1e3, 3),
                         "sum_of_its_fused_conv_layers_ms_per_frame":
                             round(sum(layers[c.name]["ms_per_frame"] for c in convs), 3)}
    return {"network": net.name, "widths": list(widths or (8, 16, 16)), "frames": frames,
            "reference_s_per_frame": round(ref_t["cpu_s"] / frames, 5),
            "reference_wall_s_per_frame": round(ref_t["wall_s"] / frames, 5),
            "chip_sim_s_per_frame": round(sim_t["1"]["cpu_s"] / frames, 6),
            "speedup": round(ref_t["cpu_s"] / sim_t["1"]["cpu_s"], 1),
            "speedup_cpu_1_thread": round(ref_t["cpu_s"] / sim_t["1"]["cpu_s"], 1),
            "chip_sim_wall_s_per_frame_1_thread": round(sim_t["1"]["wall_s"] / frames, 6),
            "threads": n_threads,
            f"chip_sim_wall_s_per_frame_{n_threads}_threads": round(sim_t["n"]["wall_s"] / frames, 6),
            f"chip_sim_cpu_s_per_frame_{n_threads}_threads": round(sim_t["n"]["process_cpu_s"] / frames, 6),
            f"speedup_wall_{n_threads}_threads": round(ref_t["wall_s"] / sim_t["n"]["wall_s"], 1),
            "thread_scaling_wall": round(sim_t["1"]["wall_s"] / sim_t["n"]["wall_s"], 2),
            "speedup_cpu_1_thread_median_of_rounds": round(med_cpu, 1),
            f"speedup_wall_{n_threads}_threads_median_of_rounds": round(med_wall, 1),
            "thread_scaling_wall_median_of_rounds": round(med_scaling, 2),
            "rounds": len(rounds), "load_average_before": load0,
            "other_processes_cpus": round(others, 2),
            "speedup_note": ("speedup / speedup_cpu_1_thread: reference CPU time / simulation CPU time, threads=1; "
                             f"speedup_wall_{n_threads}_threads (the user-facing simulation speed): reference wall "
                             f"time (single-threaded) / simulation wall time with {n_threads} threads; "
                             f"thread_scaling_wall: simulation wall time 1 thread / {n_threads} threads; best of "
                             "all runs, and the median over the rounds of each round's ratio; other_processes_cpus "
                             "> 0.2 means the host was not idle and the N-thread figures are low"),
            "load_average": os.getloadavg()[0],
            "target": 100, "bit_exact": ok, "path": kernels.get_path(), "fused_conv_layers": layers,
            "snn_chains": chains}


def chain_first_stage(activities=(0.02, 0.05, 0.1, 0.2, 0.4)) -> dict:
    """The reference network's SNN chain alone (kernels.snn_chain, 1 thread, CPU ms per frame, best
    of 7 interleaved runs) with its first stage as event-driven spans, as dense VNNI rows (where the
    CPU has AVX-512 VNNI + VBMI) and as chosen by ``auto``, at several input activities."""
    from chip_models.config import load_chip
    from chip_models.mapper import map_network
    from chip_models.reference_net import build_reference, synthetic_inputs
    from chip_models.simulate import SimOptions, compile as compile_plan, simulate

    net = build_reference()
    plan = compile_plan(map_network(net, load_chip("tianjic")), SimOptions(threads=1))
    chain = plan.chains["snn_conv1"]
    calls, pools, frames = list(chain.calls), list(chain.pools), 8
    kinds = ["spans", "rows", "auto"] if kernels.chain_rows_available(calls[0]) else ["spans", "auto"]
    out = {"path": kernels.get_path(), "first_stages": kinds, "ms_per_frame": {}}
    for act in activities:
        x = synthetic_inputs(net, frames=frames, activity=act)
        src = simulate(plan, x, keep_values=True).values[chain.convs[0].source]
        t = best_interleaved({k: lambda k=k: kernels.snn_chain(src, calls, pools, 1, first_stage=k) for k in kinds}, 7)
        out["ms_per_frame"][str(act)] = {k: round(t[k]["cpu_s"] / frames * 1e3, 3) for k in kinds}
    return out


def _against_fbgemm(run_fbgemm, n: int, k: int, m: int) -> dict:
    """fbgemm and the automatic path's dense MAC on the same shape, their runs interleaved (7 each),
    so that a load change on the shared machine hits both: the ratio of this run is then robust to
    it, where the dense figures above and fbgemm's own are taken seconds apart."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (n, k)).astype(np.int8)
    x_relu = np.maximum(x, 0)
    packed = kernels.pack(rng.integers(-128, 128, (m, k)).astype(np.int8))
    t = best_interleaved({"fbgemm": run_fbgemm,
                          "signed_inputs": lambda: kernels.dense_mac(x, packed),
                          "non_negative_inputs": lambda: kernels.dense_mac(x_relu, packed)}, 7)
    gops = {name: round(2 * n * k * m / v["cpu_s"] / 1e9, 2) for name, v in t.items()}
    return {"path": kernels.get_path(), "gops_per_s": gops,
            "vs_fbgemm": {name: round(g / gops["fbgemm"], 3) for name, g in gops.items() if name != "fbgemm"}}


def fbgemm() -> dict:
    try:
        import torch

        torch.set_num_threads(1)
        torch.backends.quantized.engine = "fbgemm"
        n, k, m = 1024, 2048, 2048
        x = torch.quantize_per_tensor(torch.rand(n, k), 0.01, 0, torch.quint8)
        w = torch.quantize_per_tensor(torch.randn(m, k), 0.02, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(w, torch.zeros(m))
        dt = best(lambda: torch.ops.quantized.linear(x, packed, 1.0, 0), 5)
        return {"shape_NxKxM": [n, k, m], "gops_per_s": round(2 * n * k * m / dt / 1e9, 2), "threads": 1,
                "note": "u8 x s8, fbgemm's kernel for this CPU (its AVX2 vpmaddubsw kernel may saturate int16 pair "
                        "sums; ours are exact)",
                "interleaved_with_the_automatic_path": _against_fbgemm(lambda: torch.ops.quantized.linear(x, packed, 1.0, 0),
                                                                       n, k, m)}
    except Exception as exc:  # optional comparison
        return {"error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    info = cpu_info()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = {"cpu": info, "dense_int8_mac": dense(info), "spike_accumulation": spikes(),
              "reference_network_simulation": simulation(n_rounds=24),
              "wider_variant_simulation": simulation((32, 64, 64), n_rounds=5),
              "chain_first_stage": chain_first_stage(), "torch_fbgemm_int8_linear": fbgemm()}
    result["timing_note"] = ("rates use the best single-thread CPU time (time.process_time) of several runs; the "
                             "machine is shared (see cpu.load_average), so wall times are longer and noisy; the "
                             "simulations also report wall times with all CPUs (speedup_wall_N_threads)")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
