"""neurosim.quant: full 8-bit integer training (WAGEUBN, EOQ, square-root-free batch norm).

PyTorch QAT and Brevitas quantize only the forward pass. Here weights, activations, errors,
weight gradients, updates and batch norm are quantized (docs/explanation/references.md §3), switched on with
one call on an ordinary model, and a checker proves what is called 8-bit really is.

Python API in brief::

    import torch.nn as nn
    from neurosim import quant

    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    model = quant.quantize_model(model, "wageubn")      # in place; "eoq", "seg8", "fp32", a .toml
    opt = quant.QuantSGD(model, "wageubn")              # create it AFTER quantize_model
    for x, y in loader:                                 # an ordinary training loop
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    report = quant.check_full_bits(model, "wageubn", lambda: loss_fn(model(x), y).backward())
    assert report["ok"], report["violations"]           # every GEMM operand on an 8-bit grid

    net = quant.to_integer(model.eval(), x[:1])         # BN-free Sequential models (e.g. eoq)
    from neurosim.intnet import run_reference
    logits = run_reference(net, {"input": quant.quantize_input(net, x)})[net.outputs[0]]

Notes for users of the API:

* ``QuantSGD`` learning rates depend on the scheme's gradient quantizer; leave ``lr`` out to get
  ``default_lr(scheme)``: wageubn/seg8 (constant-quantized gradients, lr in "int8 steps": 1.0
  moves the weight with the largest gradient by one step of its 8-bit grid) → 8.0; eoq
  (shift-quantized gradients, ordinary SGD units) → 0.1. A float model uses ordinary torch SGD
  (``make_optimizer`` picks the right one for a scheme).
* Only the GEMM layers (Conv2d, Linear) and BatchNorm2d are converted; scalar (Fixup)
  parameters, residual additions and the loss stay float, as in the released WAGEUBN code.
* Stochastic rounding draws from torch's global generator: ``torch.manual_seed`` makes a run
  reproducible.
* Eval mode uses running activation ranges (batch-independent); ``to_integer`` needs a model
  that has seen training (or calibration) batches.

Public names are imported on first use (``from neurosim import quant`` loads no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurosim._lazy import attach

_LAZY = {
    "PRESETS": "neurosim.quant.scheme",
    "Scheme": "neurosim.quant.scheme",
    "get_scheme": "neurosim.quant.scheme",
    "load_scheme": "neurosim.quant.scheme",
    "quantize_model": "neurosim.quant.convert",
    "check_supported": "neurosim.quant.convert",
    "QuantSGD": "neurosim.quant.optim",
    "make_optimizer": "neurosim.quant.optim",
    "default_lr": "neurosim.quant.optim",
    "set_cq_range": "neurosim.quant.optim",
    "QConv2d": "neurosim.quant.layers",
    "QLinear": "neurosim.quant.layers",
    "QBatchNorm2d": "neurosim.quant.batchnorm",
    "FixupBasicBlock": "neurosim.quant.fixup",
    "BNBasicBlock": "neurosim.quant.fixup",
    "fixup_init": "neurosim.quant.fixup",
    "check_full_bits": "neurosim.quant.checker",
    "to_integer": "neurosim.quant.export",
    "quantize_input": "neurosim.quant.export",
}
__all__ = list(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY)

if TYPE_CHECKING:
    from neurosim.quant.batchnorm import QBatchNorm2d
    from neurosim.quant.checker import check_full_bits
    from neurosim.quant.convert import check_supported, quantize_model
    from neurosim.quant.export import quantize_input, to_integer
    from neurosim.quant.fixup import BNBasicBlock, FixupBasicBlock, fixup_init
    from neurosim.quant.layers import QConv2d, QLinear
    from neurosim.quant.optim import QuantSGD, default_lr, make_optimizer, set_cq_range
    from neurosim.quant.scheme import PRESETS, Scheme, get_scheme, load_scheme
