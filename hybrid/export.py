"""Export a trained tracker to ``neurosim.intnet`` (the integer network ``neurosim chip estimate`` reads).

Network inputs: ``frame`` (1, S, S), 1 step per APS frame (int8, scale from
``neurosim.quant``), and ``events`` (2, S, S), T steps per frame (event counts clipped to
127, ``frac_bits`` 0).

- ANN branch: ``neurosim.quant.to_integer`` of the (quantized) frame CNN, int8 ANN layers,
  renamed ``ann_*``. A model trained in ``fp32`` is quantized after training with the ``eoq``
  scheme, its activation ranges calibrated on ``calibration`` frames (recorded in ``meta``).
- SNN branch: each spiking conv becomes an SNN-mode conv2d: weights ``round(W·2^f)`` (int8,
  per-layer ``f = floor(log2(127/max|W|))``), bias ``round(b·2^f)`` (int32), current shift 0
  (so membrane units are 2^−f), threshold ``v_th = round(θ·2^f)``, reset to 0, leak
  ``alpha = round(256·decay)`` — the STBP recursion in the integer LIF order of
  ``neurosim.intneuron`` (integrate, fire, reset, leak).
- Correlation heads: the template is per target, so ``ann_corr`` / ``snn_corr`` are 3×3
  conv2d layers with one output channel whose weights are a placeholder (the template of the
  first frame is written into them at run time); they carry the correlation's MACs for the
  chip estimate. Soft-argmax, TCF and attention gating are a few hundred host operations per
  step and are not part of the integer graph (listed in ``meta["host_ops"]``).
- Online target model (``target_model = "dcf"``, the shipped model): the ANN branch is the
  DCF's int8 feature layer on the R×R search region (input ``frame`` (1, R, R), pixels − 128,
  one step per searched scale, plus one per event frame with ``event_frames_hz`` > 0): ``dcf_grad`` (K oriented-gradient 3×3 filters, ReLU, shift 7:
  |64·255| ≤ 2^14) and ``dcf_pool`` (4×4 sum pool, shift 4). The correlation with the learned
  filter is not in the graph: as a conv2d its kernel is (R/4)² = 1,024 taps per channel, past a
  Tianjic core's fan-in of 256, so it runs on the host in the Fourier domain with the cell
  normalization, the intensity channel, the event channels (``target_events``), the window and
  the filter's learning (``meta["host_ops"]``).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np
import torch

from neurosim.intneuron import IntLIFParams
from neurosim.intnet import InputSpec, IntLayer, IntNetwork, save


APS_RATE_HZ = 30.0  # the APS rate the export assumes: SNN steps and event frames per APS frame


def _pow2_frac(w: np.ndarray) -> int:
    m = float(np.abs(w).max())
    return 0 if m == 0 else int(math.floor(math.log2(127.0 / m)))


def ann_integer(model, calibration: torch.Tensor | None = None) -> tuple[IntNetwork, dict[str, Any]]:
    """The ANN branch as an IntNetwork via ``neurosim.quant.to_integer`` (PTQ for fp32 runs)."""
    import copy

    from neurosim.quant import quantize_model, to_integer

    S = model.cfg.search_size
    ann, info = model.ann, {"scheme": model.cfg.quant_scheme}
    if model.cfg.quant_scheme == "fp32":
        ann = quantize_model(copy.deepcopy(model.ann), "eoq")
        gen = torch.Generator().manual_seed(0)
        calib = calibration if calibration is not None else torch.rand(16, 1, S, S, generator=gen)
        ann.train()
        with torch.no_grad():
            ann(calib - 0.5)
        info = {"scheme": "eoq (post-training, calibrated)", "calibration_frames": int(calib.shape[0])}
    net = to_integer(ann.eval(), torch.zeros(1, 1, S, S), name="ann")
    return net, info


def snn_layers(model, source: str = "events") -> list[IntLayer]:
    """SNN-mode integer conv layers of the spiking backbone."""
    from neurosim.snn.layers import Conv2d
    from neurosim.snn.neurons import Neuron

    mods = list(model.snn.first) + list(model.snn.rest)
    layers, conv = [], None
    for m in mods:
        if isinstance(m, Conv2d):
            conv = m
        elif isinstance(m, Neuron) and conv is not None:
            w = conv.weight.detach().double().numpy()
            b = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(w.shape[0])
            f = _pow2_frac(w)
            decay = 1.0 - float(m.p.dt) * float(torch.as_tensor(m.params().tau_mem_inv).mean())
            v_th = float(torch.as_tensor(m.params().v_th).mean())
            neuron = IntLIFParams(v_th=max(1, int(round(v_th * 2.0**f))), v_reset=0, reset_mode="value",
                                  leak_alpha=int(round(256 * decay)), leak_beta=0, refractory_steps=0)
            name = f"snn_conv{len(layers)}"
            layers.append(IntLayer(
                name=name, kind="conv2d", source=source, mode="snn",
                weight=np.clip(np.round(w * 2.0**f), -127, 127).astype(np.int8),
                bias=np.round(b * 2.0**f).astype(np.int32), shift=0, stride=int(conv.stride[0]),
                padding=int(conv.padding[0]), activation="none", neuron=neuron, frac_bits=0,
            ))
            source, conv = name, None
    return layers


def dcf_layers(params=None, event_frames: int = 0) -> tuple[dict[str, InputSpec], list[IntLayer]]:
    """The online target model's integer layers (module docstring) and its ``frame`` input: one
    step per searched scale and one per event frame (searched at one scale) of an APS interval."""
    from hybrid.dcf import CELL, DCFParams, gradient_filters

    p = params or DCFParams()
    r, k = p.region_px, p.orientations
    inputs = {"frame": InputSpec((1, r, r), 0, p.scales + event_frames)}
    layers = [
        IntLayer(name="dcf_grad", kind="conv2d", source="frame", weight=gradient_filters(k)[:, None],
                 bias=np.zeros(k, np.int32), shift=7, padding=1, activation="relu", frac_bits=0),
        IntLayer(name="dcf_pool", kind="sumpool", source="dcf_grad", kernel=CELL, stride=CELL, shift=4, frac_bits=0),
    ]
    return inputs, layers


def export_model(model, calibration: torch.Tensor | None = None) -> IntNetwork:
    """The whole tracker (both branches and correlation heads) as one IntNetwork."""
    cfg = model.cfg
    S, k, k_ann = cfg.search_size, cfg.template_size, cfg.ann_template[0]
    bins = max(1, int(round(cfg.snn_rate_hz / APS_RATE_HZ)))
    inputs: dict[str, InputSpec] = {}
    layers: list[IntLayer] = []
    outputs: list[str] = []
    meta: dict[str, Any] = {"exported_by": "hybrid.export", "variant": cfg.variant, "search_size": S,
                            "snn_rate_hz": cfg.snn_rate_hz, "aps_rate_hz_assumed": APS_RATE_HZ,
                            "host_ops": ["soft-argmax", "TCF", "attention gate", "scale head"]}
    if model.uses_ann and cfg.target_model == "dcf":
        from hybrid.event_frames import frames_per_interval

        event_frames = frames_per_interval(cfg.event_frames_hz, APS_RATE_HZ) - 1 if model.uses_attention else 0
        dcf_inputs, dcf = dcf_layers(event_frames=event_frames)
        inputs.update(dcf_inputs)
        layers.extend(dcf)
        outputs.append(dcf[-1].name)
        meta["host_ops"] += ["DCF cell normalization + window", "DCF correlation and filter learning (FFT)",
                             "DCF peak + scale choice"]
        if model.uses_attention and cfg.target_events > 0:
            meta["host_ops"].append("DCF event channels (ON/OFF counts per cell, log, scaling)")
        if event_frames:
            meta["host_ops"].append(f"event frames: {event_frames} per APS frame (event counts, exp per pixel of the region)")
        meta["target_model"] = "dcf"
    elif model.uses_ann:
        ann, info = ann_integer(model, calibration)
        meta["ann"] = info
        inputs["frame"] = InputSpec(ann.inputs["input"].shape, ann.inputs["input"].frac_bits, 1)
        rename = {"input": "frame"}
        for layer in ann.layers:
            rename[layer.name] = f"ann_{layer.name}"
            layer.name, layer.source = rename[layer.name], rename[layer.source]
            layers.append(layer)
        c = layers[-1].weight.shape[0]
        layers.append(IntLayer(name="ann_corr", kind="conv2d", source=layers[-1].name, weight=np.ones((1, c, k_ann, k_ann), np.int8),
                               bias=np.zeros(1, np.int32), shift=int(math.ceil(math.log2(c * k_ann * k_ann))), padding=k_ann // 2,
                               activation="none", frac_bits=layers[-1].frac_bits))
        outputs.append("ann_corr")
    if model.uses_snn:
        inputs["events"] = InputSpec((2, S, S), 0, bins)
        snn = snn_layers(model)
        layers.extend(snn)
        c = snn[-1].weight.shape[0]
        layers.append(IntLayer(name="snn_corr", kind="conv2d", source=snn[-1].name, weight=np.ones((1, c, k, k), np.int8),
                               bias=np.zeros(1, np.int32), shift=0, padding=k // 2, activation="none", frac_bits=0))
        outputs.append("snn_corr")
    return IntNetwork(f"dashnet_{cfg.variant}", inputs, layers, outputs, meta)


def export_run(run: str | pathlib.Path, out: str | pathlib.Path, overwrite: bool = False) -> dict[str, Any]:
    """Export a run (folder, shipped model or ``"default"``) to the integer network folder ``out``
    (``network.json`` + ``tensors.safetensors``, read by ``neurosim chip estimate``;
    ``neurosim export``). The ANN branch goes through ``neurosim.quant.to_integer``, the SNN
    branch becomes integer LIF layers. An existing ``out`` is an OutputError unless
    ``overwrite`` and it holds an earlier export (those two files and nothing else), and never
    the run itself. Returns ``{"intnet" (the folder), "layers" (count),
    "inputs" ({name: [*shape, steps]}), "outputs", "meta"}``."""
    from hybrid.checkpoint import load_model
    from neurosim.io import INTNET_FILES, INTNET_OUTPUT, atomic_folder, check_output, existing_inputs

    out = pathlib.Path(out)
    check_output(out, INTNET_OUTPUT, existing_inputs([str(run)]), overwrite=overwrite)
    model = load_model(run)
    net = export_model(model)
    with atomic_folder(out, replace=INTNET_FILES) as tmp:
        save(net, tmp)
    return {"intnet": str(out), "layers": len(net.layers), "inputs": {k: list(v.shape) + [v.steps] for k, v in net.inputs.items()},
            "outputs": net.outputs, "meta": net.meta}
