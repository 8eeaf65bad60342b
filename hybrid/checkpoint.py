"""Run folders: checkpoints as safetensors + JSON config (never pickles), resume.

A run folder holds ``config.json`` (the full TrainConfig incl. the ModelConfig),
``checkpoint.safetensors`` (model tensors, plus ``adam.<i>.<name>`` / ``qsgd.<i>.<name>``
optimizer state) with
``checkpoint.json`` (epoch, step, optimizer scalars), ``metrics.jsonl`` (one JSON object per
epoch), ``tb/`` (TensorBoard scalars, when ``tensorboard`` is installed) and ``eval/`` after
``neurosim eval``. Checkpoints are written atomically, and the config records the SHA-256 of
the weights file (``weights_sha256``), checked whenever the weights are loaded.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import TYPE_CHECKING, Any

import torch

from hybrid.runs import resolve_run
from neurosim.errors import InputError
from neurosim.io import CONTENT_HASH, atomic_output, sha256_file, verify_sha256

if TYPE_CHECKING:
    from hybrid.model import DashNet

CONFIG = "config.json"
WEIGHTS = "checkpoint.safetensors"
STATE = "checkpoint.json"
OPTIMIZER_PREFIXES = ("adam.", "qsgd.")


def save_checkpoint(run: pathlib.Path, model: torch.nn.Module, config: dict[str, Any],
                    optimizers: dict[str, torch.optim.Optimizer] | None = None, state: dict[str, Any] | None = None) -> None:
    """Write config.json, checkpoint.safetensors and checkpoint.json into ``run``.

    Optimizer tensors are stored as ``<name>.<param index>.<key>`` in the safetensors file,
    their scalars and param groups in checkpoint.json."""
    from safetensors.torch import save_file

    run = pathlib.Path(run)
    run.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    scalars: dict[str, Any] = {}
    for oname, optimizer in (optimizers or {}).items():
        osd = optimizer.state_dict()
        for i, st in osd["state"].items():
            for name, value in st.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    tensors[f"{oname}.{i}.{name}"] = value.contiguous().clone()
                else:
                    scalars[f"{oname}.{i}.{name}"] = float(value)
        scalars[f"{oname}.param_groups"] = osd["param_groups"]
    with atomic_output(run / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
        digest = sha256_file(tmp)
    with atomic_output(run / STATE) as tmp:
        tmp.write_text(json.dumps({"state": state or {}, "optimizer": scalars}, indent=1))
    with atomic_output(run / CONFIG) as tmp:
        tmp.write_text(json.dumps({**config, CONTENT_HASH: digest}, indent=1))


def _files(run: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(weights, config) of a run folder or of a shipped ``NAME.safetensors`` + ``NAME.json`` pair."""
    run = pathlib.Path(run)
    if run.suffix == ".safetensors":
        return run, run.with_suffix(".json")
    return run / WEIGHTS, run / CONFIG


def find_checkpoint(run: str | pathlib.Path) -> pathlib.Path:
    """The run folder (or shipped weights file), or InputError if it has no checkpoint/config."""
    run = pathlib.Path(run)
    if run.suffix == ".safetensors":
        for f in _files(run):
            if not f.is_file():
                raise InputError(f"{f} does not exist: pass a trained run folder or a NAME.safetensors with NAME.json beside it")
        return run
    if not run.is_dir():
        raise InputError(f"run folder {run} does not exist: train one with 'neurosim train' or pass the shipped model folder")
    for name in (WEIGHTS, CONFIG):
        if not (run / name).is_file():
            raise InputError(f"{run} has no {name}: it is not a trained run (train with 'neurosim train -o {run}')")
    return run


def load_config(run: str | pathlib.Path) -> dict[str, Any]:
    cfg_file = _files(find_checkpoint(run))[1]
    try:
        return json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{cfg_file} is unreadable ({exc}): re-train or restore the run") from None


def load_weights(run: str | pathlib.Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights, config = _files(find_checkpoint(run))
    verify_sha256(weights, load_config(run).get(CONTENT_HASH), config)
    try:
        return load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"{weights} is corrupt ({exc}): re-train or restore the run") from None


# ModelConfig fields that older runs may still carry; they never had an effect
RETIRED_MODEL_FIELDS = ("context", "min_crop")


def load_model(run: str | pathlib.Path, variant: str | None = None, model: dict[str, Any] | None = None) -> DashNet:
    """The trained tracker of a run, ready to track (eval mode).

    Args:
        run: a run folder written by :func:`hybrid.train` (``config.json`` +
            ``checkpoint.safetensors``), a shipped ``.safetensors`` model with its ``.json``,
            or ``"default"`` for the model shipped with neurosim.
        variant: evaluate the weights as this variant (``ann_only``, ``snn_only``, ``no_tcf``,
            ``no_attention``, ``full``) instead of the trained one.
        model: ModelConfig fields to override (e.g. ``{"target_model": "template"}``); fields
            that change the weights' shapes make the checkpoint not fit (InputError).

    Returns:
        A ``hybrid.model.DashNet`` (a torch module) in eval mode.

    Raises:
        InputError: the run is missing or its checkpoint does not match its config.
    """
    from hybrid.model import DashNet, ModelConfig
    from neurosim.config import from_dict

    run = resolve_run(run)
    cfg = load_config(run)
    fields = {k: v for k, v in cfg.get("model", {}).items() if k not in RETIRED_MODEL_FIELDS}
    mcfg = from_dict(ModelConfig, {**fields, **(model or {})}, where="model.")
    if variant is not None:
        mcfg = dataclasses.replace(mcfg, variant=variant)
    model = DashNet(mcfg)
    weights = model_weights(run)
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shapes differ: weights of another architecture
        first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc).splitlines()[0])
        raise InputError(f"{run}: checkpoint does not fit its config ({first.rstrip('.')}): "
                         "use the config the weights were trained with, or re-train") from None
    if unexpected or [m for m in missing if not m.startswith(("snn.", "ann."))]:
        raise InputError(f"{run}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return model


def ship(run: str | pathlib.Path, target: str | pathlib.Path, model: dict[str, Any] | None = None) -> pathlib.Path:
    """Write a run's model weights (no optimizer state) and config as ``target.safetensors`` + ``.json``.

    ``model``: ModelConfig fields to override in the shipped config — only inference-time
    settings that leave the weights' meaning intact (e.g. ``{"size_estimation": "hold"}``)."""
    from safetensors.torch import save_file

    target = pathlib.Path(target).with_suffix(".safetensors")
    with atomic_output(target) as tmp:
        save_file({k: v.contiguous() for k, v in model_weights(run).items()}, str(tmp))
        digest = sha256_file(tmp)
    with atomic_output(target.with_suffix(".json")) as tmp:
        cfg = load_config(run)
        if model:
            cfg["model"] = {**cfg.get("model", {}), **model}
        tmp.write_text(json.dumps({**cfg, CONTENT_HASH: digest}, indent=1))
    return target


def model_weights(run: str | pathlib.Path) -> dict[str, torch.Tensor]:
    """The model tensors of a checkpoint (optimizer entries dropped)."""
    return {k: v for k, v in load_weights(run).items() if not k.startswith(OPTIMIZER_PREFIXES)}


def load_optimizers(run: pathlib.Path, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Restore optimizer states saved by :func:`save_checkpoint`; return the training state dict."""
    run = find_checkpoint(run)
    try:
        doc = json.loads((run / STATE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{run / STATE} is missing or unreadable ({exc}): cannot resume, train anew") from None
    tensors = load_weights(run)
    for oname, optimizer in optimizers.items():
        sd = optimizer.state_dict()
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(oname + "."):
                _, i, name = key.split(".", 2)
                state.setdefault(int(i), {})[name] = value
        for key, value in doc["optimizer"].items():
            if key.startswith(oname + ".") and not key.endswith(".param_groups"):
                _, i, name = key.split(".", 2)
                state.setdefault(int(i), {})[name] = torch.tensor(value)
        sd["state"] = state
        if f"{oname}.param_groups" in doc["optimizer"]:
            sd["param_groups"] = doc["optimizer"][f"{oname}.param_groups"]
        optimizer.load_state_dict(sd)
    return doc["state"]
