"""``neurosim quant <verb>``: schemes, train-digits, export (a thin layer over neurosim.quant)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quant`` group."""
    from neurosim.cli import add_verb

    group = subparsers.add_parser(name, help="int8 training: schemes, train on digits, export integer networks", description=__doc__)
    verbs = group.add_subparsers(dest="verb", metavar="VERB")
    p = add_verb(verbs, "schemes", _schemes, "list the quantization presets and their bit widths", "neurosim quant schemes --json")
    p.add_argument("scheme", nargs="?", help="a preset name or a .toml scheme file to show")
    p = add_verb(
        verbs, "train-digits", _train_digits, "train a small CNN on scikit-learn's digits with a scheme",
        "neurosim quant train-digits -o run --set scheme=wageubn --set arch=cnn-bn --set lr=8",
        description="Train a small CNN on scikit-learn's bundled handwritten digits (real data) with a quantization "
        "scheme; writes checkpoint.safetensors + config.json. Parameters (--set): scheme, arch (cnn, cnn-bn, fixup, "
        "resnet-bn), width, epochs, batch_size, lr (QuantSGD, in int8 steps), float_lr, seed.",
    )
    p.add_argument("-o", "--output", required=True, help="run folder to create (must not exist)")
    p = add_verb(
        verbs, "export", _export, "export a trained digits run to the integer network format",
        "neurosim quant export run -o run/intnet",
        description="Export a BN-free run (e.g. arch=cnn, scheme=eoq) to a neurosim.intnet folder (network.json + "
        "tensors.safetensors) and check it against the quantized model on the digits test set.",
    )
    p.add_argument("run", help="run folder written by train-digits")
    p.add_argument("-o", "--output", required=True, help="integer network folder to create (must not exist)")


def _schemes(args, ctx) -> dict:
    from neurosim.quant.scheme import PRESETS, get_scheme

    chosen = [get_scheme(args.scheme)] if args.scheme else list(PRESETS.values())
    for s in chosen:
        ctx.say(f"{s.name:8s} " + " ".join(f"{k}={v}" for k, v in s.to_dict().items() if k != "name"))
    return {s.name: s.to_dict() for s in chosen}


def _new_folder(path: str) -> pathlib.Path:
    from neurosim.errors import OutputError

    p = pathlib.Path(path)
    if p.exists():
        raise OutputError(f"output {p} already exists: choose a new -o folder")
    if not p.parent.is_dir() or not os.access(p.parent, os.W_OK):
        raise OutputError(f"output folder {p.parent} does not exist or is not writable: create it or choose another -o")
    return p


def _train_digits(args, ctx) -> dict:
    from safetensors.torch import save_file

    from neurosim.cli import params_from_args
    from neurosim.io import atomic_folder
    from neurosim.quant.scheme import get_scheme
    from neurosim.quant.train import DigitsParams, train_digits

    params = params_from_args(args, DigitsParams)
    get_scheme(params.scheme)  # fail early on an unknown scheme
    out = _new_folder(args.output)
    model, summary = train_digits(params, progress=ctx.progress)
    with atomic_folder(out) as tmp:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "checkpoint.safetensors"))
        (tmp / "config.json").write_text(json.dumps({"params": dataclasses.asdict(params), "summary": summary}, indent=1))
    ctx.say(f"{summary['scheme']} {summary['arch']}: test accuracy {summary['test_accuracy']:.2f} % -> {out}")
    return {**summary, "output": str(out)}


def load_run(folder: str):
    """Rebuild the quantized model of a train-digits run folder (eval mode) and its params."""
    from safetensors.torch import load_file

    from neurosim.errors import InputError
    from neurosim.io import existing_dir
    from neurosim.quant.convert import quantize_model
    from neurosim.quant.train import DigitsParams, digits_model

    run = existing_dir(folder, "run folder")
    try:
        cfg = json.loads((run / "config.json").read_text())
        params = DigitsParams(**cfg["params"])
        state = load_file(str(run / "checkpoint.safetensors"))
    except (OSError, KeyError, TypeError, json.JSONDecodeError, Exception) as exc:  # safetensors has its own errors
        raise InputError(f"{run} is not a readable train-digits run ({exc}): train one with neurosim quant train-digits") from None
    model = quantize_model(digits_model(params.arch, params.width), params.scheme)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{run}/checkpoint.safetensors does not match its config.json ({str(exc).splitlines()[0]})") from None
    return model.eval(), params


def _export(args, ctx) -> dict:
    import numpy as np
    import torch

    from neurosim import intnet
    from neurosim.io import atomic_folder
    from neurosim.quant.export import quantize_input, to_integer
    from neurosim.quant.train import load_digits_split

    model, params = load_run(args.run)
    out = _new_folder(args.output)
    _, _, xte, yte = load_digits_split()
    net = to_integer(model, xte[:1], name=f"digits-{params.arch}-{params.scheme}")
    logits = intnet.run_reference(net, {"input": quantize_input(net, xte)})[net.outputs[0]]
    with torch.no_grad():
        q_pred = model(xte).argmax(1).numpy()
    agree = float(np.mean(logits.argmax(1) == q_pred))
    with atomic_folder(out) as tmp:
        intnet.save(net, tmp)
    acc = float(np.mean(logits.argmax(1) == yte.numpy())) * 100
    ctx.say(f"exported {len(net.layers)} layers -> {out}; integer accuracy {acc:.2f} %, agreement with the model {agree * 100:.2f} %")
    return {"output": str(out), "layers": len(net.layers), "integer_accuracy": acc, "agreement": agree}
