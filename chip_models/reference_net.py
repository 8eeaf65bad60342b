"""A DashNet-like reference network: an int8 ANN branch on frames + an SNN branch on event bins.

Built as an :class:`~neurosim.intnet.IntNetwork` with random int8 weights from a fixed seed (the
chip's speed and energy depend on the shapes and the activity, not on trained values).

Assumptions (DashNet's layer sizes are not public; docs/explanation/references.md §4 gives the group's public hybrid
sensing network, which this follows in geometry, scaled to fit one Tianjic chip):

* Search region 64×64 px. ANN input: one grey frame per frame period (``frame``, 1×64×64,
  values 0..127, 1 step). SNN input: ``events``, 2 polarity channels × 64×64, T = 10 bins of
  1 ms per frame (§4), values 0/1 (event present in the bin).
* Both branches share the ResNet-stem geometry of §4 with reduced widths: conv 7×7 stride 2
  (8 channels) → 2×2 max pooling → conv 3×3 (16) → conv 3×3 (16). ANN layers use ReLU; SNN
  layers the integer LIF (threshold 64, subtractive reset, leak 230/256 ≈ 0.9 per 1 ms step).
* The tracking head: the 3×3 template taken from the ANN features at the target is
  cross-correlated with the SNN features at every step (§4). On the chip that is a 3×3 conv
  16 → 1 whose weights are the template (``snn_xcorr``, ANN mode, a 16×16 response map per
  step, 10 per frame = 1 kHz tracking). Its weights would be rewritten every frame (144 bytes,
  not modelled); here they are random like the others.
* The temporal complementary filter and the box decoding (a handful of scalar operations per
  frame) run on the host and are not mapped.
* Shifts are set from the fan-in so accumulators use the int8 range without saturating
  (``shift ≈ log2(sqrt(fan_in)·σ_w·σ_x / 32)``).
"""

from __future__ import annotations

import math

import numpy as np

from neurosim.intnet import InputSpec, IntLayer, IntNetwork
from neurosim.intneuron import IntLIFParams

FRAME_SIZE = 64
EVENT_STEPS = 10
WIDTHS = (8, 16, 16)
NEURON = IntLIFParams(v_th=64, v_reset=0, reset_mode="subtract", leak_alpha=230, leak_beta=0, refractory_steps=0)


def _conv(rng: np.random.Generator, name: str, source: str, cin: int, cout: int, k: int, stride: int, pad: int,
          mode: str, x_std: float, activation: str = "relu") -> IntLayer:
    w = rng.integers(-64, 65, size=(cout, cin, k, k)).astype(np.int8)
    fan_in = cin * k * k
    acc_std = math.sqrt(fan_in) * 37.0 * x_std  # std of uniform[-64, 64] weights is ~37
    if mode == "ann":
        shift = max(0, round(math.log2(acc_std / 32)))
        bias = rng.integers(-(1 << shift) * 8, (1 << shift) * 8 + 1, size=cout).astype(np.int32)
        return IntLayer(name=name, kind="conv2d", source=source, mode="ann", weight=w, bias=bias, shift=shift,
                        stride=stride, padding=pad, activation=activation)
    shift = max(0, round(math.log2(acc_std / 48)))
    bias = np.full(cout, 1 << max(shift - 1, 0) if shift else 0, np.int32) * 8
    return IntLayer(name=name, kind="conv2d", source=source, mode="snn", weight=w, bias=bias, shift=shift,
                    stride=stride, padding=pad, neuron=NEURON)


def build_reference(seed: int = 0, size: int = FRAME_SIZE, steps: int = EVENT_STEPS,
                    widths: tuple[int, int, int] = WIDTHS) -> IntNetwork:
    """The reference hybrid network (see the module docstring for every assumption); ``widths``
    are the channels of the three conv layers of each branch (the default fits one Tianjic)."""
    rng = np.random.default_rng(seed)
    c1, c2, c3 = widths
    layers = [
        _conv(rng, "ann_conv1", "frame", 1, c1, 7, 2, 3, "ann", x_std=37.0),
        IntLayer(name="ann_pool", kind="maxpool", source="ann_conv1", kernel=2),
        _conv(rng, "ann_conv2", "ann_pool", c1, c2, 3, 1, 1, "ann", x_std=40.0),
        _conv(rng, "ann_conv3", "ann_conv2", c2, c3, 3, 1, 1, "ann", x_std=40.0),
        _conv(rng, "snn_conv1", "events", 2, c1, 7, 2, 3, "snn", x_std=0.3),
        IntLayer(name="snn_pool", kind="maxpool", source="snn_conv1", kernel=2),
        _conv(rng, "snn_conv2", "snn_pool", c1, c2, 3, 1, 1, "snn", x_std=0.4),
        _conv(rng, "snn_conv3", "snn_conv2", c2, c3, 3, 1, 1, "snn", x_std=0.4),
        _conv(rng, "snn_xcorr", "snn_conv3", c3, 1, 3, 1, 1, "ann", x_std=0.4, activation="none"),
    ]
    inputs = {
        "frame": InputSpec((1, size, size), frac_bits=7, steps=1),
        "events": InputSpec((2, size, size), frac_bits=0, steps=steps),
    }
    meta = {"description": "DashNet-like reference (chip_models.reference_net)", "seed": seed,
            "frame_rate_hz": 100, "event_bin_us": 1000}
    return IntNetwork("dashnet_like_reference", inputs, layers, ["ann_conv3", "snn_xcorr"], meta)


def synthetic_inputs(net: IntNetwork, frames: int = 1, seed: int = 0, activity: float = 0.1) -> dict[str, np.ndarray]:
    """Random int8 inputs for ``frames`` frames: inputs with ``steps > 1`` are event bins (0/1 with
    probability ``activity``), single-step inputs are frames (uniform 0..127)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, spec in net.inputs.items():
        shape = (frames * spec.steps, *spec.shape)
        if spec.steps > 1:
            out[name] = (rng.random(shape) < activity).astype(np.int8)
        else:
            out[name] = rng.integers(0, 128, size=shape).astype(np.int8)
    return out
