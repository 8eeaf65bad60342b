"""``quantize_model``: turn an ordinary PyTorch model into one trained with a scheme.

Conv2d → :class:`~neurosim.quant.layers.QConv2d`, Linear → :class:`~neurosim.quant.layers.QLinear`,
BatchNorm2d → :class:`~neurosim.quant.batchnorm.QBatchNorm2d` (WAGEUBN or L1 per the scheme).
Parameter-free modules (ReLU, pooling, Flatten, Dropout, residual-block containers) are kept;
modules holding only scalar parameters (Fixup biases and multipliers) are kept in float, as
the released WAGEUBN code keeps residual additions in float. Anything else with parameters
(LSTM, Conv1d, LayerNorm, ConvTranspose2d, ...) raises ParameterError naming the layer.

Layers are replaced in place and keep the original parameter tensors (values projected to
the stored grid): create the optimizer after converting.
"""

from __future__ import annotations

import torch.nn as nn

from neurosim.errors import ParameterError
from neurosim.quant.batchnorm import QBatchNorm2d
from neurosim.quant.layers import QConv2d, QLinear, _QuantMixin
from neurosim.quant.scheme import Scheme, get_scheme

_CONVERT = {nn.Conv2d: QConv2d, nn.Linear: QLinear, nn.BatchNorm2d: QBatchNorm2d}
_DONE = (QConv2d, QLinear, QBatchNorm2d)


def check_supported(model: nn.Module) -> None:
    """Raise ParameterError naming the first layer ``quantize_model`` cannot convert."""
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False))
        if not own or isinstance(m, _DONE) or type(m) in _CONVERT:
            continue
        if all(p.numel() == 1 for p in own):
            continue  # Fixup scalars: kept in float
        raise ParameterError(
            f"layer {name or '<model>'} ({type(m).__name__}) cannot be quantized: supported are Conv2d, Linear, "
            f"BatchNorm2d, parameter-free layers and scalar (Fixup) parameters; replace or remove it"
        )


def quantize_model(model: nn.Module, scheme: "str | Scheme" = "wageubn") -> nn.Module:
    """Convert ``model`` in place for quantized training with ``scheme``; returns it.

    ``fp32`` leaves the model unchanged. A conv directly followed (in registration order) by a
    batch norm receives its errors in the flagged int8 format; the last GEMM layer also
    quantizes its output (the logits), so integer inference can return int8.
    """
    sch = get_scheme(scheme)
    check_supported(model)
    for name, m in model.named_modules():
        if isinstance(m, _DONE) and m.scheme != sch:
            raise ParameterError(
                f"layer {name} is already quantized with scheme {m.scheme.name!r}: convert the float model once, with one scheme"
            )
    if sch.is_float:
        model.quant_scheme = sch
        return model
    _replace(model, sch, "")
    leaves = [m for m in model.modules() if isinstance(m, (_QuantMixin, QBatchNorm2d))]
    for a, b in zip(leaves, leaves[1:]):
        if isinstance(a, QConv2d) and isinstance(b, QBatchNorm2d):
            a.error_flagged = True
    gemms = [m for m in leaves if isinstance(m, _QuantMixin)]
    for m in gemms:
        m.quantize_output = False
    if gemms:
        gemms[-1].quantize_output = True
    model.quant_scheme = sch
    return model


def _replace(module: nn.Module, sch: Scheme, prefix: str) -> None:
    for name, child in list(module.named_children()):
        full = f"{prefix}{name}"
        cls = _CONVERT.get(type(child))
        if cls is not None:
            setattr(module, name, cls.from_float(child, sch, full))
        elif not isinstance(child, _DONE):
            _replace(child, sch, full + ".")
