"""Benchmarks of neurosim.quant; prints JSON. Run: .venv/bin/python tests/benchmarks/bench_quant.py [section ...]

Sections: ``step`` (time per training step, float vs each scheme), ``digits`` (3-seed accuracy
of float vs wageubn vs eoq on scikit-learn's digits), ``batch`` (Fixup/eoq vs BN/wageubn at
batch sizes 2, 8, 32), ``seg`` (8-bit segmentation with L1 batch norm vs float).
Timings are taken on a shared 2-core machine: noisy.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from neurosim.quant import quantize_model, make_optimizer
from neurosim.quant.train import accuracy, digits_model, load_digits_split, train_classifier

LR = {"fp32": 0.05, "wageubn": 8.0, "eoq": 0.1, "seg8": 16.0}


def _step_net(bn: bool) -> nn.Module:
    c = [nn.Conv2d(3, 32, 3, padding=1, bias=not bn)] + ([nn.BatchNorm2d(32)] if bn else []) + [nn.ReLU(), nn.MaxPool2d(2)]
    c += [nn.Conv2d(32, 64, 3, padding=1, bias=not bn)] + ([nn.BatchNorm2d(64)] if bn else []) + [nn.ReLU(), nn.MaxPool2d(2)]
    c += [nn.Conv2d(64, 64, 3, padding=1, bias=not bn)] + ([nn.BatchNorm2d(64)] if bn else []) + [nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*c, nn.Flatten(), nn.Linear(64 * 16, 10))


def bench_step(batch: int = 32, steps: int = 30) -> dict:
    """Seconds per training step (forward, backward, optimizer) of a 3-conv CNN on 32×32×3 input.

    The configurations take their steps in turn (interleaved), so load from other processes
    on the shared machine hits all of them alike; the median of ``steps`` is reported.
    """
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(1))
    runs = {}
    for bn in (False, True):
        for scheme in ("fp32", "wageubn", "eoq"):
            torch.manual_seed(0)
            model = quantize_model(_step_net(bn), scheme).train()
            runs[f"{'bn' if bn else 'plain'}/{scheme}"] = (model, make_optimizer(model, scheme, lr=LR[scheme]), [])
    for i in range(steps + 3):
        for model, opt, times in runs.values():
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            if i >= 3:
                times.append(time.perf_counter() - t)
    out = {k: statistics.median(v[2]) for k, v in runs.items()}
    for net in ("plain", "bn"):
        for scheme in ("wageubn", "eoq"):
            out[f"{net}/{scheme}_vs_fp32"] = out[f"{net}/{scheme}"] / out[f"{net}/fp32"]
    return {"batch": batch, "input": [3, 32, 32], "threads": torch.get_num_threads(), "seconds_per_step": out}


def _acc(arch, scheme, data, epochs, batch, seed, lr=None):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = digits_model(arch, 16, torch.Generator().manual_seed(seed))
    lr = LR[scheme] if lr is None else lr
    model = train_classifier(model, scheme, xtr, ytr, epochs, batch, lr=lr, float_lr=lr, seed=seed)
    return accuracy(model, xte, yte)


def batch_lr(scheme: str, batch: int) -> float:
    """Learning rate per batch size (linear scaling below a knee): SGD units 0.0125·min(1, b/8)
    for fp32/eoq (the BN ResNet diverges at 0.05), int8 steps 8·min(1, b/16) for wageubn."""
    if scheme == "wageubn":
        return 8.0 * min(1.0, batch / 16)
    return 0.0125 * min(1.0, batch / 8)


def bench_digits(epochs: int = 10, seeds=(0, 1, 2)) -> dict:
    """Test accuracy (%, 600 held-out digits) of the same networks in float and quantized, 3 seeds."""
    data = load_digits_split()
    rows = {}
    for arch, schemes in (("cnn", ("fp32", "eoq", "wageubn")), ("cnn-bn", ("fp32", "wageubn", "eoq"))):
        for scheme in schemes:
            accs = [_acc(arch, scheme, data, epochs, 16, s) for s in seeds]
            rows[f"{arch}/{scheme}"] = {"mean": statistics.mean(accs), "per_seed": accs}
        for scheme in schemes[1:]:
            rows[f"{arch}/{scheme}"]["gap_vs_fp32"] = rows[f"{arch}/fp32"]["mean"] - rows[f"{arch}/{scheme}"]["mean"]
    return {"epochs": epochs, "batch_size": 16, "seeds": list(seeds), "lr": LR, "accuracy": rows}


def bench_batch(epochs: int = 4, batches=(2, 8, 32), seed: int = 0) -> dict:
    """BN-free Fixup residual net (eoq) vs the same net with batch norm (wageubn), plus float, per batch size."""
    data = load_digits_split()
    rows = {}
    for b in batches:
        rows[str(b)] = {
            f"{arch}/{scheme}": _acc(arch, scheme, data, epochs, b, seed, batch_lr(scheme, b))
            for arch, scheme in (("fixup", "eoq"), ("resnet-bn", "wageubn"), ("fixup", "fp32"), ("resnet-bn", "fp32"))
        }
    lrs = {str(b): {s: batch_lr(s, b) for s in ("fp32", "eoq", "wageubn")} for b in batches}
    return {"epochs": epochs, "seed": seed, "lr": lrs, "test_accuracy_by_batch_size": rows}


def bench_seg(epochs: int = 6, seeds=(0, 1, 2)) -> dict:
    """mIoU (%) of the synthetic-shape FCN: float BN vs 8-bit with L1 batch norm (seg8)."""
    from neurosim.quant.seg import train_segmentation

    out = {}
    for scheme in ("fp32", "seg8"):
        vals = [train_segmentation(scheme, epochs=epochs, seed=s)["miou"] for s in seeds]
        out[scheme] = {"mean": statistics.mean(vals), "per_seed": vals}
    out["gap_vs_fp32"] = out["fp32"]["mean"] - out["seg8"]["mean"]
    return {"epochs": epochs, "seeds": list(seeds), "miou": out}


if __name__ == "__main__":
    sections = sys.argv[1:] or ["step", "digits", "batch", "seg"]
    result = {"torch_threads": torch.get_num_threads()}
    for name in sections:
        t = time.perf_counter()
        result[name] = {"step": bench_step, "digits": bench_digits, "batch": bench_batch, "seg": bench_seg}[name]()
        result[name]["wall_seconds"] = time.perf_counter() - t
    print(json.dumps(result, indent=1))
