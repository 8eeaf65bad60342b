"""Files of scattering imaging: speckle data files and run folders.

A **speckle data file** (``neurosim scatter simulate``) is one safetensors file: ``speckle``
(N, S, S) float32 max-normalised camera frames, ``counts`` (N, S, S) uint16 raw ADC counts,
``objects`` (N, S, S) float32 in [0, 1]; its metadata ``neurosim`` holds JSON
``{"format": "neurosim-speckle", "simulate": SimulateParams}``.

A **run folder** (``train`` / ``finetune``) holds ``model.safetensors`` (the state dict) and
``config.json`` (``{"format": "neurosim-scattering-run", "train": TrainParams, "finetune":
FinetuneParams or null, "speckle": the data's SpeckleParams, "summary": ...,
"weights_sha256": ...}``); a run fine-tuned with an int8 scheme also holds ``head_int8/``,
the head as an integer network folder (``network.json`` + ``tensors.safetensors``).
Everything is written atomically; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Callable

import numpy as np

from neurosim.errors import InputError, ParameterError
from neurosim.scattering.speckle import SpeckleParams

DATA_FORMAT = "neurosim-speckle"
RUN_FORMAT = "neurosim-scattering-run"


@dataclasses.dataclass
class SimulateParams:
    """Parameters of ``neurosim scatter simulate``.

    Attributes:
        objects: ``digits``, ``natural`` or ``shapes`` (:mod:`neurosim.scattering.objects`).
        split: ``train``, ``val`` or ``test``.
        count: number of samples (digits: at most the split's size).
        seed: object seed (natural patch places, shapes).
        data_root: real data folder for ``natural`` ("" = ``$NEUROSIM_SHARED_DATA`` or ../shared/data).
        speckle: the simulator's parameters (a ``[speckle]`` table; ``--set speckle.encoding=phase``).
    """

    objects: str = "digits"
    split: str = "train"
    count: int = 1000
    seed: int = 0
    data_root: str = ""
    speckle: SpeckleParams = dataclasses.field(default_factory=SpeckleParams)

    def check(self) -> "SimulateParams":
        """Raise ParameterError naming the first impossible value."""
        from neurosim.config import check_range
        from neurosim.scattering.objects import KINDS, SPLITS

        check_range("count", self.count, 1, 10**7, why="to go past it edit SimulateParams.check")
        check_range("seed", self.seed, 0, 2**32 - 1)
        if self.objects not in KINDS:
            raise ParameterError(f"parameter objects = {self.objects!r} is unknown: use one of {', '.join(KINDS)}")
        if self.split not in SPLITS:
            raise ParameterError(f"parameter split = {self.split!r} is unknown: use one of {', '.join(SPLITS)}")
        self.speckle.check()
        return self


def simulate_data(params: SimulateParams) -> dict[str, np.ndarray]:
    """Objects of ``params`` and their speckle: ``{"speckle", "counts", "objects"}``."""
    import cv2

    from neurosim.scattering.objects import make_objects
    from neurosim.scattering.speckle import simulate

    params.check()
    objects = make_objects(params.objects, params.count, params.split, params.seed, params.data_root or None)
    size = params.speckle.size
    if objects.shape[-1] != size:
        objects = np.stack([cv2.resize(o, (size, size), interpolation=cv2.INTER_AREA) for o in objects])
    speckle, counts = simulate(objects, params.speckle, stream=noise_stream(params.objects, params.split, params.seed))
    return {"speckle": speckle, "counts": counts, "objects": objects.astype(np.float32)}


def noise_stream(objects: str, split: str, seed: int) -> int:
    """The camera-noise stream of a set: distinct for every (objects, split, seed)."""
    from neurosim.scattering.objects import KINDS, SPLITS

    return 1 + KINDS.index(objects) + len(KINDS) * (SPLITS.index(split) + len(SPLITS) * seed)


MEDIUM_FIELDS = ("size", "encoding", "slm_levels", "modes", "coherence_modes", "decorrelation", "drift_every", "medium_seed")
"""The SpeckleParams fields that define the medium and modulator (not the camera)."""


def save_data(data: dict[str, np.ndarray], params: SimulateParams, path: str | os.PathLike) -> pathlib.Path:
    """Write a speckle data file atomically."""
    from safetensors.numpy import save_file

    from neurosim.config import to_dict
    from neurosim.io import atomic_output

    meta = json.dumps({"format": DATA_FORMAT, "simulate": to_dict(params)})
    with atomic_output(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in data.items()}, str(tmp), metadata={"neurosim": meta})
    return pathlib.Path(path)


def load_data(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], SimulateParams]:
    """Read a speckle data file: its arrays and the SimulateParams it was made with."""
    from safetensors import safe_open

    from neurosim.config import from_dict
    from neurosim.io import existing_file

    p = existing_file(path, "speckle data file")
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("neurosim", "{}"))
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"{p} is not a readable speckle data file ({exc}): make one with neurosim scatter simulate") from None
    if meta.get("format") != DATA_FORMAT or not {"speckle", "objects"} <= set(arrays):
        raise InputError(f"{p} is not a speckle data file (no speckle/objects): make one with neurosim scatter simulate")
    s, o = arrays["speckle"], arrays["objects"]
    if s.ndim != 3 or s.shape != o.shape:
        raise InputError(f"{p}: speckle {s.shape} and objects {o.shape} must both be (N, S, S): simulate it again")
    return arrays, from_dict(SimulateParams, meta["simulate"])


def save_run(model: Any, out: str | os.PathLike, config: dict[str, Any], int_head: Any = None) -> pathlib.Path:
    """Write a run folder atomically: model.safetensors, config.json (+ head_int8/)."""
    from safetensors.torch import save_file

    from neurosim import intnet
    from neurosim.io import CONTENT_HASH, atomic_folder, sha256_file

    out = pathlib.Path(out)
    with atomic_folder(out) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        doc = {"format": RUN_FORMAT, **config, CONTENT_HASH: sha256_file(tmp / "model.safetensors")}
        (tmp / "config.json").write_text(json.dumps(doc, indent=1, default=str))
        if int_head is not None:
            intnet.save(int_head, tmp / "head_int8")
    return out


def load_run(folder: str | os.PathLike):
    """The model of a run folder (eval mode; int8 head re-converted) and its config dict."""
    from safetensors.torch import load_file

    from neurosim.config import from_dict
    from neurosim.io import CONTENT_HASH, existing_dir, verify_sha256
    from neurosim.scattering.train import FinetuneParams, TrainParams

    run = existing_dir(folder, "run folder")
    try:
        cfg = json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{run} is not a readable scattering run ({exc}): train one with neurosim scatter train") from None
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise InputError(f"{run}/config.json is not a scattering run: train one with neurosim scatter train")
    verify_sha256(run / "model.safetensors", cfg.get(CONTENT_HASH), run / "config.json")
    try:
        train_params = from_dict(TrainParams, cfg["train"])
        ft = from_dict(FinetuneParams, cfg["finetune"]) if cfg.get("finetune") else None
        state = load_file(str(run / "model.safetensors"))
    except (KeyError, TypeError, ParameterError) as exc:
        raise InputError(f"{run}/config.json is malformed ({exc}): train the run again") from None
    except Exception as exc:  # safetensors' own errors
        raise InputError(f"{run}/model.safetensors is unreadable ({exc}): train the run again") from None
    model = train_params.model(int(cfg.get("speckle", {}).get("size", 32)))
    if ft is not None and ft.scheme != "fp32":
        from neurosim.quant import quantize_model

        quantize_model(model.head, ft.scheme)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{run}/model.safetensors does not match its config.json ({str(exc).splitlines()[0]})") from None
    return model.eval(), cfg


def train_run(data_path: str | os.PathLike, out: str | os.PathLike, params: Any, progress: Callable | None = None) -> dict:
    """Train a network on a speckle data file and write its run folder; returns the summary."""
    from neurosim.config import to_dict
    from neurosim.scattering.models import count_parameters
    from neurosim.scattering.train import evaluate, train

    data, sim = load_data(data_path)
    params.check()
    model = train(data["speckle"], data["objects"], params, progress)
    summary = {"arch": params.arch, "parameters": count_parameters(model), "head_parameters": count_parameters(model.head),
               "samples": len(data["speckle"]), "train_quality": evaluate(model, data["speckle"][:500], data["objects"][:500])}
    save_run(model, out, {"train": to_dict(params), "finetune": None, "speckle": to_dict(sim.speckle),
                          "data": {"train": to_dict(sim)}, "summary": summary})
    return {**summary, "output": str(out)}


def finetune_run(run: str | os.PathLike, data_path: str | os.PathLike, out: str | os.PathLike, params: Any,
                 progress: Callable | None = None) -> dict:
    """Fine-tune a run's head on a data file (float or int8) and write a new run folder."""
    from neurosim.config import to_dict
    from neurosim.scattering.train import evaluate, finetune, head_to_integer

    model, cfg = load_run(run)
    if cfg.get("finetune"):
        raise ParameterError(f"{run} is already fine-tuned: fine-tune the pre-trained run it came from")
    data, sim = load_data(data_path)
    params.check()
    _same_size(cfg, sim, data_path)
    model = finetune(model, data["speckle"], data["objects"], params, progress)
    n = params.samples or len(data["speckle"])
    summary = {"samples": n, "scheme": params.scheme,
               "finetune_quality": evaluate(model, data["speckle"][:n], data["objects"][:n])}
    int_head = head_to_integer(model, data["speckle"]) if params.scheme != "fp32" else None
    save_run(model, out, {"train": cfg["train"], "finetune": to_dict(params), "speckle": cfg["speckle"],
                          "data": {**cfg.get("data", {}), "finetune": to_dict(sim)}, "summary": summary}, int_head)
    return {**summary, "output": str(out), "head_int8": str(pathlib.Path(out) / "head_int8") if int_head else None}


def eval_run(run: str | os.PathLike, data_path: str | os.PathLike, out: str | os.PathLike, shown: int = 8) -> dict:
    """Evaluate a run on a data file: metrics.json and reconstructions.png in ``out``."""
    from neurosim.io import atomic_output
    from neurosim.scattering.functional import quality
    from neurosim.scattering.train import reconstruct, reconstruct_integer

    model, cfg = load_run(run)
    data, sim = load_data(data_path)
    _same_size(cfg, sim, data_path)
    pred = reconstruct(model, data["speckle"])
    result: dict[str, Any] = {"run": str(run), "data": str(data_path), "samples": len(pred),
                              "same_medium": all(cfg.get("speckle", {}).get(k) == getattr(sim.speckle, k) for k in MEDIUM_FIELDS),
                              "quality": quality(pred, data["objects"])}
    head = pathlib.Path(run) / "head_int8"
    if head.is_dir():
        from neurosim import intnet

        ipred = reconstruct_integer(intnet.load(head), model, data["speckle"])
        result["integer_quality"] = quality(ipred, data["objects"])
        result["integer_vs_model_max_abs"] = float(np.abs(ipred - pred).max()) if len(pred) else 0.0
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "reconstructions.png") as tmp:
        plot_reconstructions(data["speckle"][:shown], pred[:shown], data["objects"][:shown], tmp)
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    return {**result, "plot": str(out / "reconstructions.png"), "output": str(out)}


def _same_size(cfg: dict, sim: SimulateParams, where: Any) -> None:
    size = int(cfg.get("speckle", {}).get("size", 32))
    if sim.speckle.size != size:
        raise InputError(f"{where} has {sim.speckle.size}×{sim.speckle.size} speckle, the run was trained on {size}×{size}: "
                         "simulate data of the run's size")


def plot_reconstructions(speckle: np.ndarray, prediction: np.ndarray, objects: np.ndarray, path: str | os.PathLike) -> None:
    """A PNG of rows speckle / reconstruction / ground truth, one column per sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(speckle), 1)
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
    for row, (name, images) in enumerate((("speckle", speckle), ("reconstruction", prediction), ("object", objects))):
        for col in range(n):
            ax = axes[row, col]
            if col < len(images):
                ax.imshow(images[col], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
