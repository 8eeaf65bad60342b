"""``to_integer``: a trained quantized model as an :class:`neurosim.intnet.IntNetwork`.

Each QConv2d / QLinear becomes an ANN-mode integer layer of :mod:`neurosim.intnet`:

    weight (int8) = W·2^f_W           bias (int32) = round(b·2^(f_A + f_W))
    shift         = f_A + f_W − f_next   (f_next: the input grid of the next GEMM layer, or the
                                          layer's own output grid for the last one)
    out           = relu/none(saturate_8(rounding_shift_right(acc, shift)))   (intmath)

ReLU and max pooling commute with that rounding and saturation (both monotone), so the
integer network computes bit-for-bit what the quantized model computes in eval mode, and
``intnet.run_reference`` is the integer-only inference path (int8 in, int32 accumulate,
shift, int8 out). Supported: ``nn.Sequential`` (nested allowed) of QConv2d, QLinear, ReLU,
MaxPool2d (kernel = stride, no padding), Flatten, Identity, Dropout. Batch norm, Fixup
scalars and residual additions have no form in ``intnet`` yet: ParameterError names them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from neurosim.errors import ParameterError
from neurosim.intnet import InputSpec, IntLayer, IntNetwork
from neurosim.quant import quantizers as Q
from neurosim.quant.layers import QConv2d, QLinear, _QuantMixin

_PASS = (nn.Identity, nn.Dropout)


def _leaves(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    if isinstance(model, nn.Sequential):
        out = []
        for name, child in model.named_children():
            out += _leaves(child, f"{prefix}{name}.")
        return out
    if list(model.children()) and not isinstance(model, _QuantMixin):
        raise ParameterError(
            f"layer {prefix.rstrip('.') or '<model>'} ({type(model).__name__}) is not a plain sequence of layers: "
            "to_integer exports nn.Sequential models of Conv2d/Linear/ReLU/MaxPool2d/Flatten"
        )
    return [(prefix.rstrip("."), model)]


def to_integer(model: nn.Module, example_input: torch.Tensor, name: str = "quant") -> IntNetwork:
    """Export an eval-mode quantized Sequential model; ``example_input`` (N, C, H, W) or (N, F) gives shapes."""
    leaves = [(n, m) for n, m in _leaves(model) if not isinstance(m, _PASS)]
    gemms = [i for i, (_, m) in enumerate(leaves) if isinstance(m, _QuantMixin)]
    if not gemms:
        raise ParameterError("to_integer: the model has no quantized Conv2d/Linear layer: call quantize_model and train it first")
    for n, m in leaves:
        if isinstance(m, _QuantMixin):
            s = m.scheme
            if s.w != 8 or s.a != 8:
                raise ParameterError(f"layer {n}: to_integer needs 8-bit weights and activations (scheme {s.name} has w={s.w}, a={s.a})")
            if float(m.in_max) <= 0:
                raise ParameterError(f"layer {n}: no activation range recorded yet: train or run the model in train mode on data first")
        elif isinstance(m, nn.MaxPool2d):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            st = m.stride if isinstance(m.stride, int) else m.stride[0]
            if k != st or m.padding not in (0, (0, 0)) or m.dilation not in (1, (1, 1)) or m.ceil_mode:
                raise ParameterError(f"layer {n}: MaxPool2d must have kernel = stride, no padding/dilation/ceil_mode for the integer format")
        elif not isinstance(m, (nn.ReLU, nn.Flatten)):
            raise ParameterError(
                f"layer {n} ({type(m).__name__}) has no integer form in neurosim.intnet: use Conv2d/Linear/ReLU/MaxPool2d/Flatten "
                "(batch norm: train BN-free, e.g. the eoq scheme)"
            )
    first = leaves[gemms[0]][1]
    if gemms[0] != 0:
        raise ParameterError(f"layer {leaves[0][0]}: the model must start with a quantized Conv2d/Linear")
    in_shape = tuple(int(v) for v in example_input.shape[1:])
    layers: list[IntLayer] = []
    source, pending = "input", None
    for pos, (n, m) in enumerate(leaves):
        lname = n.replace(".", "_") or f"layer{pos}"
        if isinstance(m, _QuantMixin):
            nxt = [leaves[i][1] for i in gemms if i > pos]
            f_in, f_w = m.input_frac(), m.weight_frac()
            f_out = nxt[0].input_frac() if nxt else m.output_frac()
            w = Q.weight(m.weight.detach().double(), 8, float(m.w_scale)) * 2.0**f_w  # the forward's weights
            w = w.round().numpy().astype(np.int8)
            b = m.bias.detach().double() if m.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
            b = torch.floor(b * 2.0 ** (f_in + f_w) + 0.5).clamp(-(2**31), 2**31 - 1).numpy().astype(np.int32)
            kind = "conv2d" if isinstance(m, QConv2d) else "linear"
            if isinstance(m, QConv2d):
                if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.stride[0] != m.stride[1] or m.padding[0] != m.padding[1]:
                    raise ParameterError(f"layer {n}: the integer format needs groups=1, dilation=1 and square stride/padding")
            layer = IntLayer(
                name=lname, kind=kind, source=source, weight=w, bias=b, shift=f_in + f_w - f_out,
                stride=int(m.stride[0]) if kind == "conv2d" else 1, padding=int(m.padding[0]) if kind == "conv2d" else 0,
                activation="none", frac_bits=f_out,
            )
            layers.append(layer)
            pending = layer
        elif isinstance(m, nn.ReLU):
            if pending is None:
                raise ParameterError(f"layer {n}: a ReLU before the first GEMM layer has no integer form")
            pending.activation = "relu"
            continue
        elif isinstance(m, nn.MaxPool2d):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            layer = IntLayer(name=lname, kind="maxpool", source=source, kernel=int(k), frac_bits=layers[-1].frac_bits if layers else 0)
            layers.append(layer)
        elif isinstance(m, nn.Flatten):
            layer = IntLayer(name=lname, kind="flatten", source=source, frac_bits=layers[-1].frac_bits if layers else 0)
            layers.append(layer)
        source = layers[-1].name
    meta = {"scheme": first.scheme.name, "exported_by": "neurosim.quant.to_integer"}
    return IntNetwork(name, {"input": InputSpec(in_shape, first.input_frac(), 1)}, layers, [layers[-1].name], meta)


def quantize_input(net: IntNetwork, x: torch.Tensor | np.ndarray, input_name: str = "input") -> np.ndarray:
    """Float input (N, ...) → int8 on the network input grid: ``saturate_8(round_half_up(x·2^frac))``."""
    frac = net.inputs[input_name].frac_bits
    q = np.floor(np.asarray(x, dtype=np.float64) * 2.0**frac + 0.5)
    return np.clip(q, -128, 127).astype(np.int8)
