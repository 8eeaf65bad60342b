"""Scattering imaging benchmark: LISMU-FCN vs OCN, transfer vs scratch, float vs int8 fine-tuning.

    nice .venv/bin/python tests/benchmarks/bench_scattering.py [--quick] [--seed 0] > scattering.json

One medium (``SpeckleParams()`` defaults: amplitude SLM, fully developed speckle, 1000
photoelectrons, 4 e⁻ read noise, 10 bits). Two directions:

- ``natural->digits`` (complex → simple): pre-train on ``pretrain`` natural patches of the
  30 fps training sequences, fine-tune on the first 10/100/1000 of the 1197 training digits,
  test on the 400 test digits;
- ``digits->natural`` (simple → complex): pre-train on the 1197 training digits (as many
  steps as the other direction), fine-tune on 10/100/1000 natural patches of the two
  validation sequences (Woman, David), test on 500 patches of the 10 fps sequences.

Per arch and sample count: head-only transfer in float (Adam) and int8 (QuantSGD), and the
whole network trained from scratch on the same samples for ``scratch_steps`` steps (the
pre-training recipe: Adam 10⁻³, λ_s = 0.008). The fine-tuning settings of :data:`FINETUNE`
(learning rates, the int8 scheme) were chosen on the 200 validation digits: the setting with
the highest sum of validation PSNR after fine-tuning on 10 and on 100 training digits; the
OCN's int8 learning rate for 1000 samples by validation at 1000 digits. Prints one JSON object; figures depend
only on the seeds (one torch thread).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time

import numpy as np
import torch

from neurosim.scattering.objects import make_objects
from neurosim.scattering.runs import noise_stream
from neurosim.scattering.speckle import SpeckleParams, simulate
from neurosim.scattering.train import FinetuneParams, TrainParams, evaluate, finetune, train


FINETUNE = {  # arch -> (float Adam lr, int8 scheme, QuantSGD lr by sample count): chosen on the validation digits
    "fcn": (1e-2, "eoq", {10: 0.1, 100: 0.1, 1000: 0.1}),
    "ocn": (1e-3, "wageubn", {10: 2.0, 100: 2.0, 1000: 8.0}),
}


def _data(kind: str, count: int, split: str, p: SpeckleParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Objects and their speckle, as ``neurosim scatter simulate`` makes them (same noise stream)."""
    objects = make_objects(kind, count, split, seed)
    return simulate(objects, p, stream=noise_stream(kind, split, seed))[0], objects


def _round(q: dict) -> dict:
    return {k: round(v, 4) for k, v in q.items()}


def run(quick: bool, seed: int, pretrain: int, epochs: int, scratch_steps: int, ft_steps: int) -> dict:
    torch.set_num_threads(1)
    p = SpeckleParams()
    counts = (10, 100) if quick else (10, 100, 1000)
    start = time.perf_counter()
    natural_pre = _data("natural", pretrain, "train", p, seed)
    natural_ft = _data("natural", max(counts), "val", p, seed)
    natural_test = _data("natural", 500, "test", p, seed)
    digits_train = _data("digits", 1197, "train", p, seed)
    digits_test = _data("digits", 400, "test", p, seed)
    out: dict = {"speckle": p.__dict__, "seed": seed, "pretrain_samples": pretrain, "epochs": epochs,
                 "finetune_steps": ft_steps, "scratch_steps": scratch_steps, "finetune": FINETUNE,
                 "simulate_s": round(time.perf_counter() - start, 1), "directions": {}}
    pre_steps = epochs * pretrain // 32
    directions = {"natural->digits": (natural_pre, digits_train, digits_test),
                  "digits->natural": (digits_train, natural_ft, natural_test)}
    for name, (source, target, test) in directions.items():
        res = out["directions"][name] = {}
        for arch in ("fcn", "ocn"):
            t0 = time.perf_counter()
            base = train(*source, TrainParams(arch=arch, steps=pre_steps, seed=seed))
            row = res[arch] = {"pretrain_s": round(time.perf_counter() - t0, 1),
                               "zero_shot": _round(evaluate(base, *test)), "by_samples": {}}
            for n in counts:
                cell = row["by_samples"][str(n)] = {}
                lr, int8_scheme, int8_lrs = FINETUNE[arch]
                int8_lr = int8_lrs[n]
                for label, scheme in (("transfer_float", "fp32"), ("transfer_int8", int8_scheme)):
                    t0 = time.perf_counter()
                    model = finetune(copy.deepcopy(base), *target, FinetuneParams(
                        samples=n, steps=ft_steps, lr=lr, scheme=scheme, int8_lr=int8_lr, seed=seed))
                    cell[label] = {**_round(evaluate(model, *test)), "seconds": round(time.perf_counter() - t0, 1)}
                t0 = time.perf_counter()
                scratch = train(target[0][:n], target[1][:n], TrainParams(arch=arch, steps=scratch_steps, seed=seed))
                cell["scratch"] = {**_round(evaluate(scratch, *test)), "seconds": round(time.perf_counter() - t0, 1)}
                print(json.dumps({name: {arch: {n: cell}}}), flush=True, file=__import__("sys").stderr)
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["machine"] = platform.processor() or platform.machine()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 and 100 samples only, 1000 pre-training samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretrain", type=int, default=5000, help="natural pre-training samples")
    ap.add_argument("--epochs", type=int, default=8, help="pre-training epochs (of --pretrain samples, batch 32)")
    ap.add_argument("--scratch-steps", type=int, default=600)
    ap.add_argument("--finetune-steps", type=int, default=300)
    a = ap.parse_args()
    pretrain = 1000 if a.quick else a.pretrain
    print(json.dumps(run(a.quick, a.seed, pretrain, a.epochs, a.scratch_steps, a.finetune_steps), indent=1))


if __name__ == "__main__":
    main()
