"""Training a DashNet variant on a dataset folder (``neurosim train``).

Samples: two-frame windows of ``benchmarks_data.loaders.TrackingWindows`` (S×S crops around
the target, jittered). Frame 0 of the window gives the template, frame 1 is the search frame;
the last W bins of interval 0 are the warm-up and the T bins of interval 1 are tracked. The
start estimate is the true box at t_1 plus Gaussian noise (σ = ``start_noise``·size), like a
tracker's error.

Loss (per unit; centres in search pixels, cells of 4 px; terms a variant lacks are dropped):

    L = CE(R_ann, G(c*_1)) + mean_t CE(R_snn,t, G(c*_t)) + w_box · mean_t smoothL1((ĉ_t − c*_t)/4)
        + w_scale · |Δlog wh − log(wh*_1 / wh_start)|

STBP trains the SNN through the surrogate gradient; the ANN trains through
``neurosim.quant`` when ``model.quant_scheme`` is ``wageubn`` or ``eoq``. Adam, gradient
clipping per branch (ANN, SNN, heads). ``--init-from RUN`` starts from another run's weights;
``--init-from ann:RUN_A,snn:RUN_B`` takes each branch from its own run (``ann``: ANN, its
correlation gain and scale head; ``snn``: SNN and its correlation gain) — the shipped hybrid
starts from the separately trained ANN-only and SNN-only runs. Multi-process: under ``torchrun`` (WORLD_SIZE > 1) each process takes its slice of
the same global batch, gradients are averaged by DDP (gloo); the logged loss is the global
batch mean, so it equals a single-process run with the same global batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import shutil
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hybrid.checkpoint import WEIGHTS, find_checkpoint, load_optimizers, model_weights, save_checkpoint
from hybrid.model import STRIDE, DashNet, ModelConfig
from hybrid.template import response_loss
from neurosim.config import check_range, to_dict
from neurosim.errors import InputError, ParameterError


@dataclasses.dataclass
class TrainConfig:
    """Training parameters (TOML: these keys, and a ``[model]`` table for the ModelConfig).

    ``epochs`` of ``batches_per_epoch`` batches (0: every window once) of ``batch_size`` windows;
    Adam learning rate ``lr`` (QuantSGD ``quant_lr`` in int8 steps for a quantized ANN);
    ``jitter`` and ``start_noise`` as fractions of the crop / box size; ``grad_clip`` the gradient
    norm per branch; ``w_box``, ``w_scale`` loss weights; ``threads`` torch threads per process.
    Ranges: :data:`TRAIN_RANGES` (checked by :meth:`check`, e.g. ``lr`` in (0, 10]).
    """

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    epochs: int = 3
    batch_size: int = 16
    batches_per_epoch: int = 40  # 0: all windows of the split once
    lr: float = 3e-3
    quant_lr: float = 1.0  # QuantSGD learning rate (int8 steps) of a quantized ANN branch
    seed: int = 0
    split: str = "train"
    jitter: float = 0.2  # crop-centre jitter, fraction of the crop
    start_noise: float = 0.1  # start-estimate noise, fraction of the box size
    grad_clip: float = 1.0
    w_box: float = 1.0
    w_scale: float = 1.0
    checkpoint_every: int = 1  # epochs
    threads: int = 1  # torch intra-op threads per process

    def check(self) -> "TrainConfig":
        """Raise ParameterError naming the first value outside its range (:data:`TRAIN_RANGES`)."""
        self.model.check()
        for name, (low, high, low_open) in TRAIN_RANGES.items():
            check_range(name, getattr(self, name), low, high, low_open=low_open,
                        why="to go past an upper bound edit TRAIN_RANGES in hybrid/train.py")
        return self


# (low, high, low excluded) of each TrainConfig number; the upper bounds are far past any useful run.
TRAIN_RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 100_000, False),
    "batch_size": (1, 4096, False),
    "batches_per_epoch": (0, 10_000_000, False),
    "lr": (0.0, 10.0, True),
    "quant_lr": (0.0, 1000.0, True),
    "seed": (0, 2**32 - 1, False),
    "jitter": (0.0, 1.0, False),
    "start_noise": (0.0, 1.0, False),
    "grad_clip": (0.0, 1e6, True),
    "w_box": (0.0, 1000.0, False),
    "w_scale": (0.0, 1000.0, False),
    "checkpoint_every": (1, 100_000, False),
    "threads": (1, 1024, False),
}


def _centre(b: torch.Tensor) -> torch.Tensor:
    return b[..., :2] + (b[..., 2:] - 1) / 2


def window_unit(batch: dict[str, torch.Tensor], warmup: int, noise: float, gen: torch.Generator) -> tuple[dict, dict]:
    """(unit, targets) from a collated 2-frame window batch (see the module docstring)."""
    fr, ev, bx, fb = batch["frames"], batch["events"], batch["boxes"], batch["frame_boxes"]
    valid = batch["box_valid"]
    start = torch.nan_to_num(bx[:, 0, -1].clone(), nan=8.0)
    size = start[:, 2:].amax(1, keepdim=True)
    start[:, :2] += noise * size * torch.randn(start.shape[0], 2, generator=gen)
    start[:, 2:] *= torch.exp(0.5 * noise * torch.randn(start.shape[0], 2, generator=gen))
    unit = {
        "template_frame": fr[:, 0], "template_box": torch.nan_to_num(fb[:, 0], nan=8.0), "frame": fr[:, 1],
        "events": torch.cat([ev[:, 0, ev.shape[2] - warmup :], ev[:, 1]], dim=1), "start_box": start,
    }
    snn_boxes = torch.cat([bx[:, 0, bx.shape[2] - warmup :], bx[:, 1]], dim=1).transpose(0, 1)
    snn_valid = torch.cat([valid[:, 0, valid.shape[2] - warmup :], valid[:, 1]], dim=1).transpose(0, 1)
    targets = {
        "ann_centre": torch.nan_to_num(_centre(fb[:, 1])), "ann_valid": torch.isfinite(fb[:, 1]).all(-1).float(),
        "ann_wh": torch.nan_to_num(fb[:, 1, 2:], nan=1.0).clamp(min=1.0),
        "snn_centres": torch.nan_to_num(_centre(snn_boxes)), "snn_valid": snn_valid.float(),
        "out_centres": torch.nan_to_num(_centre(bx[:, 1].transpose(0, 1))), "out_valid": valid[:, 1].transpose(0, 1).float(),
    }
    return unit, targets


def unit_loss(model: DashNet, out: dict, targets: dict, unit: dict, cfg: TrainConfig) -> tuple[torch.Tensor, dict]:
    """The training loss of one batch of units and its parts."""
    parts = {}
    if "r_ann" in out:
        parts["ann"] = response_loss(out["r_ann"], targets["ann_centre"], STRIDE, targets["ann_valid"])
        want = torch.log(targets["ann_wh"] / unit["start_box"][:, 2:].clamp(min=1.0))
        parts["scale"] = cfg.w_scale * ((out["dlog_wh"] - want).abs().sum(1) * targets["ann_valid"]).mean()
    if "r_snn" in out:
        parts["snn"] = response_loss(out["r_snn"], targets["snn_centres"], STRIDE, targets["snn_valid"])
    if model.cfg.variant != "ann_only":
        err = F.smooth_l1_loss(_centre(out["boxes"]) / STRIDE, targets["out_centres"] / STRIDE, reduction="none").sum(-1)
        parts["box"] = cfg.w_box * (err * targets["out_valid"]).sum() / targets["out_valid"].sum().clamp(min=1)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _tensorboard(folder: pathlib.Path):
    """A TensorBoard SummaryWriter on ``folder``, or None when ``tensorboard`` is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def make_windows(dataset: str | pathlib.Path | Sequence[str | pathlib.Path], cfg: TrainConfig, split: str | None = None):
    """Training windows of ``split`` (default ``cfg.split``) of one dataset folder, or of several
    folders concatenated (``ConcatWindows``: e.g. a benchmark plus extra training scenes)."""
    from benchmarks_data.loaders import ConcatWindows, TrackingWindows, dataset_folders

    parts = []
    for folder in dataset_folders(dataset):
        part = TrackingWindows(folder, split or cfg.split, frames_per_window=2, snn_rate_hz=cfg.model.snn_rate_hz,
                               crop=(cfg.model.search_size,) * 2, jitter=cfg.jitter, seed=cfg.seed)
        if len(part) == 0:
            raise InputError(f"dataset {folder}: split {split or cfg.split!r} has no 2-frame windows: it needs sequences with ≥ 3 APS frames")
        parts.append(part)
    windows = parts[0] if len(parts) == 1 else ConcatWindows(parts)
    if windows.bins_per_frame <= cfg.model.warmup_bins:
        raise ParameterError(f"model.warmup_bins = {cfg.model.warmup_bins} must be below the {windows.bins_per_frame} SNN bins per frame")
    return windows


def epoch_order(rng: np.random.Generator, n_windows: int, n_items: int) -> np.ndarray:
    """``n_items`` window indices for one epoch: shuffled passes over all ``n_windows``, cut at
    ``n_items``. Every window is drawn once per pass, so an epoch shorter than the dataset is
    a uniform sample of it, never only its first windows."""
    passes = -(-n_items // n_windows)
    return np.concatenate([rng.permutation(n_windows) for _ in range(passes)])[:n_items]


def _collate(items: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0] if k != "sequence"}


def param_groups(model: DashNet) -> list[list[torch.nn.Parameter]]:
    """Parameters in three groups for gradient clipping: ANN branch, SNN branch, the rest."""
    ann = list(model.ann.parameters())
    snn = list(model.snn.parameters())
    seen = {id(p) for p in ann + snn}
    return [ann, snn, [p for p in model.parameters() if id(p) not in seen]]


def make_optimizers(model: DashNet, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam for the float parameters; ``neurosim.quant.QuantSGD`` for a quantized ANN branch."""
    if cfg.model.quant_scheme == "fp32":
        return {"adam": torch.optim.Adam(model.parameters(), lr=cfg.lr)}
    from neurosim.quant import QuantSGD

    ann = {id(p) for p in model.ann.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ann]
    return {"adam": torch.optim.Adam(rest, lr=cfg.lr), "qsgd": QuantSGD(model.ann, cfg.model.quant_scheme, lr=cfg.quant_lr)}


BRANCH_PREFIXES = {"ann": ("ann.", "corr_ann.", "scale_head."), "snn": ("snn.", "corr_snn.")}


def init_weights(init_from: str) -> dict[str, torch.Tensor]:
    """Weights named by ``--init-from``: ``RUN`` (all of its model tensors) or a comma-separated
    list of ``BRANCH:RUN`` (BRANCH in ann, snn: only that branch's tensors), applied in order."""
    out: dict[str, torch.Tensor] = {}
    for item in (s.strip() for s in str(init_from).split(",")):
        if not item:
            continue
        branch, sep, run = item.partition(":")
        if not sep or branch not in BRANCH_PREFIXES:
            if sep and len(branch) > 1:  # not a Windows drive letter
                raise ParameterError(f"--init-from {item!r}: the branch must be one of {', '.join(BRANCH_PREFIXES)} (e.g. ann:runs/ann_only,snn:runs/snn_only)")
            out.update(model_weights(item))
            continue
        out.update({k: v for k, v in model_weights(run).items() if k.startswith(BRANCH_PREFIXES[branch])})
    return out


def load_matching(model: DashNet, weights: dict[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """Load ``weights`` into ``model``; ParameterError (one line) when a tensor's shape differs,
    i.e. the weights come from a model with other [model] settings (channels, template sizes)."""
    own = model.state_dict()
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in weights.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise ParameterError(f"{source}: its weights do not fit this model ({bad[0]}{' and more' if len(bad) > 1 else ''}): "
                             "use the [model] settings it was trained with (see its config.json)")
    model.load_state_dict(weights, strict=strict)


def build_model(cfg: TrainConfig) -> DashNet:
    torch.manual_seed(cfg.seed)
    return DashNet(cfg.model)


def train(dataset: str | pathlib.Path | Sequence[str | pathlib.Path], run: str | pathlib.Path, cfg: TrainConfig, resume: bool = False,
          progress: Callable | None = None, say: Callable = print, init_from: str | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on the split ``cfg.split`` of ``dataset`` (a folder, or a list of folders
    whose windows are concatenated) and write the run folder ``run`` (``neurosim train``).

    Files in ``run``: ``config.json`` (the TrainConfig), ``checkpoint.safetensors`` (weights and
    optimizer state, every ``cfg.checkpoint_every`` epochs and at the end), ``checkpoint.json``
    (epoch, step), ``metrics.jsonl`` (one line of mean losses per epoch) and ``tb/`` (TensorBoard,
    where installed). ``resume`` continues from the checkpoint in ``run``; ``init_from`` starts
    from another run's weights (``RUN`` or ``ann:RUN_A,snn:RUN_B``); ``progress`` wraps the batch
    iterator (tqdm-like); ``say`` gets one line per epoch.

    Returns ``{"run", "epochs", "steps", "history" (the metrics.jsonl records), "world_size",
    "seconds_per_epoch"}``.
    """
    cfg.check()
    torch.set_num_threads(max(1, cfg.threads))
    rank, world = _dist()
    run = pathlib.Path(run)
    if cfg.batch_size % world:
        raise ParameterError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    windows = make_windows(dataset, cfg)
    model = build_model(cfg)
    if init_from:
        load_matching(model, init_weights(init_from), f"--init-from {init_from}", strict=False)
    opts = make_optimizers(model, cfg)
    start_epoch, step = 0, 0
    if resume:
        find_checkpoint(run)
        load_matching(model, model_weights(run), f"--resume {run}")
        state = load_optimizers(run, opts)
        start_epoch, step = int(state.get("epoch", -1)) + 1, int(state.get("step", 0))
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    from benchmarks_data.loaders import dataset_folders

    folders = [str(d) for d in dataset_folders(dataset)]
    config_doc = {"model": to_dict(cfg.model), **{k: v for k, v in to_dict(cfg).items() if k != "model"},
                  "dataset": folders[0] if len(folders) == 1 else folders}
    created = rank == 0 and not run.exists()
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
    try:
        return _train_epochs(run, cfg, model, net, opts, windows, config_doc, start_epoch, step, rank, world,
                             progress, say)
    except BaseException:  # interrupted or failed before its first checkpoint: leave no run folder
        if created and not (run / WEIGHTS).exists():
            shutil.rmtree(run, ignore_errors=True)
        raise


def _train_epochs(run: pathlib.Path, cfg: TrainConfig, model, net, opts, windows, config_doc: dict, start_epoch: int,
                  step: int, rank: int, world: int, progress: Callable | None, say: Callable) -> dict[str, Any]:
    """The epoch loop of :func:`train`: metrics, TensorBoard and checkpoints into ``run``."""
    n_batches = cfg.batches_per_epoch or math.ceil(len(windows) / cfg.batch_size)
    history = []
    writer = _tensorboard(run / "tb") if rank == 0 else None
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        windows.set_epoch(epoch)
        rng = np.random.default_rng((cfg.seed, epoch))
        order = epoch_order(rng, len(windows), n_batches * cfg.batch_size)
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        sums: dict[str, float] = {}
        it = range(n_batches)
        if progress is not None and rank == 0:
            it = progress(it, desc=f"epoch {epoch + 1}/{cfg.epochs}", total=n_batches)
        model.train()
        for b in it:
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch = _collate([windows[int(i)] for i in idx])
            unit, targets = window_unit(batch, cfg.model.warmup_bins, cfg.start_noise, gen)
            local = slice(rank, None, world)
            unit = {k: v[local] for k, v in unit.items()}
            targets = {k: (v[local] if v.shape[0] == len(idx) else v[:, local]) for k, v in targets.items()}
            out = net(unit)
            loss, parts = unit_loss(model, out, targets, unit, cfg)
            for opt in opts.values():
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:  # per branch, so large SNN gradients do not starve the ANN
                for group in param_groups(model):
                    torch.nn.utils.clip_grad_norm_(group, cfg.grad_clip)
            for opt in opts.values():
                opt.step()
            step += 1
            parts["loss"] = loss.item()
            if world > 1:
                vec = torch.tensor([parts[k] for k in sorted(parts)], dtype=torch.float64)
                torch.distributed.all_reduce(vec)
                parts = dict(zip(sorted(parts), (vec / world).tolist()))
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
        record = {"epoch": epoch, "step": step, "seconds": round(time.perf_counter() - t0, 3),
                  **{k: v / n_batches for k, v in sums.items()}}
        if "tcf" in dict(model.named_children()):
            a_f, a_h = model.tcf.alphas
            record["alpha_frame"], record["alpha_hold"] = float(a_f.detach()), float(a_h.detach())
        history.append(record)
        if rank == 0:
            with open(run / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if writer is not None:
                for k, v in record.items():
                    if k not in ("epoch", "step"):
                        writer.add_scalar(f"train/{k}", v, step)
                writer.flush()
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                save_checkpoint(run, model, config_doc, opts, {"epoch": epoch, "step": step})
            say(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f} ({record['seconds']:.1f} s)")
    if writer is not None:
        writer.close()
    return {"run": str(run), "epochs": cfg.epochs, "steps": step, "history": history, "world_size": world,
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])) if history else None}


def train_variants(dataset: str | pathlib.Path | Sequence[str | pathlib.Path], out: str | pathlib.Path, cfg: TrainConfig,
                   variants: str | Sequence[str], resume: bool = False, progress: Callable | None = None,
                   say: Callable = print, init_from: str | None = None) -> dict[str, Any]:
    """Train ``cfg`` once per model variant, side by side (``neurosim train --variants``).

    Args:
        dataset: a dataset folder (``index.json``), or a list of folders whose windows are pooled.
        out: parent folder; variant ``v`` is trained into the run folder ``out/v``.
        cfg: the training parameters; ``cfg.model.variant`` is replaced by each variant.
        variants: names from ``hybrid.model.VARIANTS`` (``ann_only``, ``snn_only``, ``no_tcf``,
            ``no_attention``, ``full``), as a list or comma-separated.
        resume: continue each variant whose run folder has a checkpoint; the others start anew.
        progress: tqdm-like wrapper of the batch iterator, as for :func:`train`.
        say: where progress lines go (default print).
        init_from: start from another run's weights, as for :func:`train`.

    Returns:
        ``{"runs": {variant: summary of train()}}``.
    """
    from hybrid.model import check_variants

    names = check_variants(variants, "--variants")
    out = pathlib.Path(out)
    results = {}
    for v in names:
        say(f"== variant {v}")
        vcfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, variant=v))
        results[v] = train(dataset, out / v, vcfg, resume=resume and (out / v / "checkpoint.safetensors").exists(),
                           progress=progress, say=say, init_from=init_from)
    return {"runs": results}
