"""neurosim.scattering: imaging through scattering media (LISMU), from speckle simulation to int8 transfer.

A speckle simulator (transmission matrix, SLM/DMD encoding, partially developed speckle,
partial coherence, a drifting medium, camera noise and ADC), LISMU-FCN and LISMU-OCN in
torch, the balance loss, training, head-only transfer with few samples (float, or int8
with :mod:`neurosim.quant`), the int8 head as an integer network, and PSNR/SSIM/Pearson r.

Python API in brief::

    from neurosim import scattering as sc

    p = sc.SpeckleParams(encoding="amplitude", photons=1000, bits=10)
    objects = sc.make_objects("digits", 500, "train")           # (500, 32, 32) in [0, 1]
    speckle, counts = sc.simulate(objects, p)                  # max-normalised, raw ADC
    model = sc.train(speckle, objects, sc.TrainParams(arch="ocn", epochs=8))
    model = sc.finetune(model, speckle2, objects2, sc.FinetuneParams(samples=100, scheme="eoq"))
    print(sc.evaluate(model, test_speckle, test_objects))      # {"psnr", "ssim", "pearson"}
    net = sc.head_to_integer(model, speckle2)                  # neurosim.intnet network

Public names are imported on first use (``from neurosim import scattering`` loads no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurosim._lazy import attach

_LAZY = {
    "SpeckleParams": "neurosim.scattering.speckle",
    "Medium": "neurosim.scattering.speckle",
    "make_medium": "neurosim.scattering.speckle",
    "encode": "neurosim.scattering.speckle",
    "intensity": "neurosim.scattering.speckle",
    "camera": "neurosim.scattering.speckle",
    "simulate": "neurosim.scattering.speckle",
    "contrast": "neurosim.scattering.speckle",
    "make_objects": "neurosim.scattering.objects",
    "balance_loss": "neurosim.scattering.functional",
    "smoothness": "neurosim.scattering.functional",
    "weight_penalty": "neurosim.scattering.functional",
    "psnr": "neurosim.scattering.functional",
    "ssim": "neurosim.scattering.functional",
    "pearson": "neurosim.scattering.functional",
    "quality": "neurosim.scattering.functional",
    "LismuFCN": "neurosim.scattering.models",
    "LismuOCN": "neurosim.scattering.models",
    "build_model": "neurosim.scattering.models",
    "TrainParams": "neurosim.scattering.train",
    "FinetuneParams": "neurosim.scattering.train",
    "train": "neurosim.scattering.train",
    "finetune": "neurosim.scattering.train",
    "reconstruct": "neurosim.scattering.train",
    "evaluate": "neurosim.scattering.train",
    "head_to_integer": "neurosim.scattering.train",
    "reconstruct_integer": "neurosim.scattering.train",
    "SimulateParams": "neurosim.scattering.runs",
    "simulate_data": "neurosim.scattering.runs",
    "load_data": "neurosim.scattering.runs",
    "load_run": "neurosim.scattering.runs",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY)

if TYPE_CHECKING:
    from neurosim.scattering.functional import balance_loss, pearson, psnr, quality, smoothness, ssim, weight_penalty
    from neurosim.scattering.models import LismuFCN, LismuOCN, build_model
    from neurosim.scattering.objects import make_objects
    from neurosim.scattering.runs import SimulateParams, load_data, load_run, simulate_data
    from neurosim.scattering.speckle import Medium, SpeckleParams, camera, contrast, encode, intensity, make_medium, simulate
    from neurosim.scattering.train import (
        FinetuneParams, TrainParams, evaluate, finetune, head_to_integer, reconstruct, reconstruct_integer, train,
    )
