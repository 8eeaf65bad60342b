"""``neurosim quant <verb>``: schemes, train-digits, export (a thin layer over neurosim.quant)."""

from __future__ import annotations

import argparse


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quant`` group."""
    from neurosim.cli import add_verb, defaults_of
    from neurosim.io import Output

    group = subparsers.add_parser(name, help="int8 training: schemes, train on digits, export integer networks", description=__doc__)
    verbs = group.add_subparsers(dest="verb", metavar="VERB")
    p = add_verb(verbs, "schemes", _schemes, "list the quantization presets and their bit widths", "neurosim quant schemes --json",
                 needs=["torch"])
    p.add_argument("scheme", nargs="?", help="a preset name or a .toml scheme file to show")
    p = add_verb(
        verbs, "train-digits", _train_digits, "train a small CNN on scikit-learn's digits with a scheme",
        "neurosim quant train-digits -o run --set scheme=wageubn --set arch=cnn-bn --set lr=8",
        params=defaults_of("neurosim.quant.train:DigitsParams"), needs=["torch", "sklearn"],
        outputs=[Output(dest="output", kind="folder")],
        description="Train a small CNN on scikit-learn's bundled handwritten digits (real data) with a quantization "
        "scheme; writes checkpoint.safetensors + config.json. Parameters (--set): scheme, arch (cnn, cnn-bn, fixup, "
        "resnet-bn), width, epochs, batch_size, lr (QuantSGD, in int8 steps), float_lr, seed.",
    )
    p.add_argument("-o", "--output", required=True, help="run folder to create (must not exist)")
    p = add_verb(
        verbs, "export", _export, "export a trained digits run to the integer network format",
        "neurosim quant export run -o run/intnet", needs=["torch"], inputs=("run",),
        outputs=[Output(dest="output", kind="folder")],
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


def _train_digits(args, ctx) -> dict:
    from neurosim.cli import params_from_args
    from neurosim.quant.runs import train_digits_run
    from neurosim.quant.train import DigitsParams

    result = train_digits_run(params_from_args(args, DigitsParams), args.output, progress=ctx.progress)
    ctx.say(f"{result['scheme']} {result['arch']}: test accuracy {result['test_accuracy']:.2f} % -> {result['output']}")
    return result


def load_run(folder: str):
    """Rebuild the quantized model of a train-digits run folder (eval mode) and its params."""
    from neurosim.quant.runs import load_digits_run

    return load_digits_run(folder)


def _export(args, ctx) -> dict:
    from neurosim.quant.runs import export_digits_run

    r = export_digits_run(args.run, args.output)
    ctx.say(f"exported {r['layers']} layers -> {r['output']}; integer accuracy {r['integer_accuracy']:.2f} %, "
            f"agreement with the model {r['agreement'] * 100:.2f} %")
    return r
