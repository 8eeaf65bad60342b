"""ANN branch: a small CNN on APS frames (frame rate), trainable in int8 via ``neurosim.quant``.

Layers (search crop S×S, 1 channel, intensities ``x = I/255 − 0.5``):

    conv3×3(1→c1, stride 1) → ReLU → conv3×3(c1→c2, stride 2) → ReLU → conv3×3(c2→c3, stride 2)
    [→ ReLU → conv3×3(c3→c4, stride 1) → …]   (channels (c1, c2, c3, c4, …): layers past the
                                               third stay at stride 4 and widen the receptive
                                               field by 8 px each: 9, 17, 25 px, …)

giving signed features F (B, C, S/4, S/4) with stride 4 (no ReLU at the end: a final ReLU
lost most channels early in training, and the normalized correlation needs no sign). The module is a plain ``nn.Sequential`` of
Conv2d/ReLU so that ``neurosim.quant.quantize_model(ann, scheme)`` can swap its layers for
quantized ones (schemes ``fp32``, ``wageubn``, ``eoq``) and ``neurosim.quant.to_integer``
can export it as int8 ANN-mode layers.
"""

from __future__ import annotations

from torch import Tensor, nn

STRIDE = 4


def build_ann(channels: tuple[int, ...] = (8, 16, 16)) -> nn.Sequential:
    """The frame CNN (B, 1, S, S) → (B, C, S/4, S/4); ``channels``: 3 or more output widths."""
    strides = (1, 2, 2) + (1,) * (len(channels) - 3)
    layers: list[nn.Module] = []
    for c_in, c_out, stride in zip((1,) + tuple(channels[:-1]), channels, strides):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def normalize_frames(frames: Tensor) -> Tensor:
    """Intensities in [0, 1] (I/255, as the loaders give them) → ``x − 0.5`` float32."""
    return frames.float() - 0.5
