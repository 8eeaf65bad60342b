"""Run folders of the int8 digits classifier (``neurosim quant train-digits | export``).

A run folder holds ``checkpoint.safetensors`` (the quantized model's state dict) and
``config.json`` (``{"params": DigitsParams fields, "summary": training summary}``). Folders are
written atomically: on any error nothing is left at the output path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Callable

from neurosim.errors import InputError, OutputError


def new_folder(path: str | os.PathLike) -> pathlib.Path:
    """``path`` as a Path; OutputError if it exists or its parent is not a writable folder."""
    p = pathlib.Path(path)
    if p.exists():
        raise OutputError(f"output {p} already exists: choose a new -o folder")
    if not p.parent.is_dir() or not os.access(p.parent, os.W_OK):
        raise OutputError(f"output folder {p.parent} does not exist or is not writable: create it or choose another -o")
    return p


def train_digits_run(params: Any, out: str | os.PathLike, progress: Callable | None = None) -> dict[str, Any]:
    """Train the digits classifier with a quantization scheme and write its run folder.

    Args:
        params: a ``neurosim.quant.train.DigitsParams`` (scheme, arch, width, epochs,
            batch_size, lr in int8 steps, float_lr, seed).
        out: the run folder to create (must not exist).
        progress: optional tqdm-like wrapper of the epoch iterator.

    Returns:
        The training summary (scheme, arch, test_accuracy in %, …) plus ``output`` (the folder).
    """
    from safetensors.torch import save_file

    from neurosim.io import CONTENT_HASH, atomic_folder, sha256_file
    from neurosim.quant.scheme import get_scheme
    from neurosim.quant.train import train_digits

    get_scheme(params.scheme)  # fail early on an unknown scheme
    out = new_folder(out)
    model, summary = train_digits(params, progress=progress)
    with atomic_folder(out) as tmp:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "checkpoint.safetensors"))
        (tmp / "config.json").write_text(json.dumps({"params": dataclasses.asdict(params), "summary": summary,
                                                      CONTENT_HASH: sha256_file(tmp / "checkpoint.safetensors")}, indent=1))
    return {**summary, "output": str(out)}


def load_digits_run(folder: str | os.PathLike):
    """The quantized model of a train-digits run folder (eval mode) and its DigitsParams."""
    from safetensors.torch import load_file

    from neurosim.io import CONTENT_HASH, existing_dir, verify_sha256
    from neurosim.quant.convert import quantize_model
    from neurosim.quant.train import DigitsParams, digits_model

    run = existing_dir(folder, "run folder")
    try:
        cfg = json.loads((run / "config.json").read_text())
        params = DigitsParams(**cfg["params"])
        if isinstance(cfg, dict):
            verify_sha256(run / "checkpoint.safetensors", cfg.get(CONTENT_HASH), run / "config.json")
        state = load_file(str(run / "checkpoint.safetensors"))
    except InputError:
        raise
    except (OSError, KeyError, TypeError, json.JSONDecodeError, Exception) as exc:  # safetensors has its own errors
        raise InputError(f"{run} is not a readable train-digits run ({exc}): train one with neurosim quant train-digits") from None
    model = quantize_model(digits_model(params.arch, params.width), params.scheme)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{run}/checkpoint.safetensors does not match its config.json ({str(exc).splitlines()[0]})") from None
    return model.eval(), params


def export_digits_run(run: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Export a BN-free train-digits run to an integer network folder and check it on the test set.

    Args:
        run: a run folder of :func:`train_digits_run` (e.g. arch ``cnn``, scheme ``eoq``).
        out: the ``neurosim.intnet`` folder to create (``network.json`` + ``tensors.safetensors``).

    Returns:
        ``{"output", "layers", "integer_accuracy" (% of the digits test set),
        "agreement" (fraction of test digits where the integer network and the model agree)}``.
    """
    import numpy as np
    import torch

    from neurosim import intnet
    from neurosim.io import atomic_folder
    from neurosim.quant.export import quantize_input, to_integer
    from neurosim.quant.train import load_digits_split

    model, params = load_digits_run(run)
    out = new_folder(out)
    _, _, xte, yte = load_digits_split()
    net = to_integer(model, xte[:1], name=f"digits-{params.arch}-{params.scheme}")
    logits = intnet.run_reference(net, {"input": quantize_input(net, xte)})[net.outputs[0]]
    with torch.no_grad():
        q_pred = model(xte).argmax(1).numpy()
    agree = float(np.mean(logits.argmax(1) == q_pred))
    with atomic_folder(out) as tmp:
        intnet.save(net, tmp)
    acc = float(np.mean(logits.argmax(1) == yte.numpy())) * 100
    return {"output": str(out), "layers": len(net.layers), "integer_accuracy": acc, "agreement": agree}
