"""``neurosim scatter <verb>``: simulate speckle, train, finetune, eval (a thin layer over neurosim.scattering)."""

from __future__ import annotations

import argparse


def register(name: str, subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scatter`` group."""
    from neurosim.cli import COMMANDS, add_verb, defaults_of
    from neurosim.io import Output

    group = subparsers.add_parser(name, help=COMMANDS[name][1], description=__doc__)
    verbs = group.add_subparsers(dest="verb", metavar="VERB")
    p = add_verb(
        verbs, "simulate", _simulate, "simulate objects seen through a scattering medium (speckle data file)",
        "neurosim scatter simulate -o digits_train.safetensors --set objects=digits --set count=1000",
        params=defaults_of("neurosim.scattering.runs:SimulateParams"),
        outputs=[Output(dest="out", kind="file")],
        description="Display objects (digits, natural patches of real frames, shapes) on an SLM/DMD, pass them "
        "through a transmission matrix (fully or partially developed speckle, partial coherence, drift) and "
        "take them with a camera (shot and read noise, ADC bits). Writes one safetensors file: speckle, counts, "
        "objects. Parameters: objects, split, count, seed, data_root and the [speckle] table (speckle.encoding, "
        "speckle.modes, speckle.photons, speckle.bits, speckle.medium_seed, ...). Same parameters = same bits.",
    )
    p.add_argument("-o", "--out", required=True, help="speckle data file to write (.safetensors)")
    p = add_verb(
        verbs, "train", _train, "train LISMU-FCN or LISMU-OCN on a speckle data file",
        "neurosim scatter train natural_train.safetensors -o runs/ocn --set arch=ocn --set epochs=8",
        params=defaults_of("neurosim.scattering.train:TrainParams"), needs=["torch"], inputs=("data",),
        outputs=[Output(dest="out", kind="folder")],
        description="Train a network from scratch (Adam, balance loss 1024·MSE + λ_s·Σ‖k∗ŷ‖², L1/L2). "
        "Writes a run folder (model.safetensors + config.json).",
    )
    p.add_argument("data", help="speckle data file from neurosim scatter simulate")
    p.add_argument("-o", "--out", required=True, help="run folder to create (must not exist)")
    p = add_verb(
        verbs, "finetune", _finetune, "transfer a trained run: fine-tune only its head on a few samples (float or int8)",
        "neurosim scatter finetune runs/ocn digits_train.safetensors -o runs/ocn_digits --set samples=100 --set scheme=eoq",
        params=defaults_of("neurosim.scattering.train:FinetuneParams"), needs=["torch"], inputs=("run", "data"),
        outputs=[Output(dest="out", kind="folder")],
        description="LISMU transfer: restore the run, freeze its body, train the head on the first `samples` pairs "
        "(λ_s = 0). scheme=eoq or wageubn trains the head in int8 (neurosim.quant) and also writes head_int8/, "
        "the head as an integer network (network.json + tensors.safetensors).",
    )
    p.add_argument("run", help="run folder from neurosim scatter train")
    p.add_argument("data", help="speckle data file of the new objects")
    p.add_argument("-o", "--out", required=True, help="run folder to create (must not exist)")
    p = add_verb(
        verbs, "eval", _eval, "reconstruct a data file with a run: PSNR, SSIM, Pearson r and a plot",
        "neurosim scatter eval runs/ocn_digits digits_test.safetensors -o runs/ocn_digits/eval",
        needs=["torch", "matplotlib"], inputs=("run", "data"),
        outputs=[Output(dest="out", kind="results", marker=("metrics.json",))],
        description="Writes metrics.json (mean PSNR in dB, SSIM, Pearson r; for a run with head_int8/ also the "
        "integer head's) and reconstructions.png (speckle, reconstruction, object).",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("data", help="speckle data file (e.g. a test split)")
    p.add_argument("-o", "--out", required=True, help="results folder (new or empty; an earlier eval only with --overwrite)")
    p.add_argument("--show", type=int, default=8, help="samples in the plot (1-32)")


def _simulate(args, ctx) -> dict:
    from neurosim.cli import params_from_args
    from neurosim.scattering.runs import SimulateParams, save_data, simulate_data

    params = params_from_args(args, SimulateParams)
    data = simulate_data(params)
    save_data(data, params, args.out)
    ctx.say(f"{len(data['speckle'])} {params.objects} speckle frames -> {args.out}")
    return {"output": args.out, "samples": len(data["speckle"]), "objects": params.objects, "split": params.split}


def _threads() -> None:
    import torch

    torch.set_num_threads(1)  # bit-reproducible, and polite on a shared machine


def _train(args, ctx) -> dict:
    from neurosim.cli import params_from_args
    from neurosim.scattering.runs import train_run
    from neurosim.scattering.train import TrainParams

    _threads()
    r = train_run(args.data, args.out, params_from_args(args, TrainParams), progress=ctx.progress)
    q = r["train_quality"]
    ctx.say(f"{r['arch']}: {r['parameters']} parameters; training PSNR {q['psnr']:.2f} dB -> {r['output']}")
    return r


def _finetune(args, ctx) -> dict:
    from neurosim.cli import params_from_args
    from neurosim.scattering.runs import finetune_run
    from neurosim.scattering.train import FinetuneParams

    _threads()
    r = finetune_run(args.run, args.data, args.out, params_from_args(args, FinetuneParams), progress=ctx.progress)
    ctx.say(f"head fine-tuned ({r['scheme']}) on {r['samples']} samples; PSNR on them "
            f"{r['finetune_quality']['psnr']:.2f} dB -> {r['output']}")
    return r


def _eval(args, ctx) -> dict:
    from neurosim.config import check_range
    from neurosim.scattering.runs import eval_run

    check_range("--show", args.show, 1, 32)
    _threads()
    r = eval_run(args.run, args.data, args.out, shown=args.show)
    q = r["quality"]
    ctx.say(f"{r['samples']} samples: PSNR {q['psnr']:.2f} dB, SSIM {q['ssim']:.3f}, r {q['pearson']:.3f}; plot {r['plot']}")
    return r
