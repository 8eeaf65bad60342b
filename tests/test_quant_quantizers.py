"""Quantizers, schemes and conversion errors of neurosim.quant against closed-form values."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from neurosim.errors import ParameterError
from neurosim.quant import quantizers as Q
from neurosim.quant import check_supported, get_scheme, quantize_model, to_integer
from neurosim.quant.checker import grid_bits, is_flagged


def test_direct_clip_and_shift_match_the_formulas():
    x = torch.tensor([0.30, -0.30, 0.996, -2.0, 0.00390625, 1.5])
    # Q(x, 8) = round(x*128)/128 with halves up
    np.testing.assert_array_equal(Q.direct(x, 8).numpy(), np.floor(x.numpy() * 128 + 0.5) / 128)
    np.testing.assert_array_equal(Q.clip(x, 8).numpy(), np.clip(x.numpy(), -127 / 128, 127 / 128))
    # SQ: R(x) = 2^round(log2 1.5) = 2 (log2 1.5 = 0.58); grid 2/128
    sq = Q.shift(x, 8).numpy()
    np.testing.assert_array_equal(sq, np.clip(np.floor(x.numpy() / 2 * 128 + 0.5), -127, 127) * 2 / 128)
    assert Q.pow2_scale(torch.zeros(3)) == 1.0


def test_fixed_is_intmath_requantize():
    from neurosim.intmath import requantize

    acc = np.arange(-5000, 5000, 7)
    for shift in (0, 3, 6):
        ref = requantize(acc, shift, 8)
        got = Q.fixed(torch.tensor(acc, dtype=torch.float64) / 2.0**shift, 0, 8).numpy()
        np.testing.assert_array_equal(got, ref)


def test_constant_quantization_is_int8_unbiased_and_size_free():
    g = torch.tensor([1e-6, -3e-7, 2.5e-7, 0.0])  # R(g) = 2^-20 (log2 1e-6 = -19.9)
    torch.manual_seed(0)
    draws = torch.stack([Q.constant(g, 8) for _ in range(4000)])
    n = draws * 2.0**14
    assert torch.equal(n, n.round()) and n.abs().max() <= 127
    # E[n] = d*g/R(g) = 128 * g * 2^20 (clip at 127 for the first element)
    expect = torch.clamp(128 * g * 2.0**20, -127, 127)
    assert torch.allclose(n.mean(0), expect, atol=0.06)
    # the same gradient times 1000 gives the same integers (CQ ignores |g|)
    torch.manual_seed(1)
    a = Q.constant(g, 8)
    torch.manual_seed(1)
    b = Q.constant(g * 1024, 8)
    assert torch.equal(a, b)


def test_flagged_error_format_by_hand():
    e = torch.tensor([1.0, 0.5, 0.01, -0.003, 0.0])  # R(e) = 1, s = 1/128
    out = Q.flagged(e, 8)
    u = e.numpy() * 128  # 128, 64, 1.28, -0.384, 0
    expect = [127, 64, 1, -round(0.384 * 128) / 128, 0]  # |u|>=1: round, clip 127; |u|<1: Q(|u|, 8)
    np.testing.assert_allclose(out.numpy() * 128, expect, rtol=0, atol=0)
    assert is_flagged(out, 8) and grid_bits(out)[0] > 8


def test_grid_bits_reads_the_float_bits():
    assert grid_bits(torch.tensor([3.0, -128.0]) * 2.0**-9) == (8, -9)
    assert grid_bits(torch.tensor([127.0, 1.0])) == (8, 0)
    assert grid_bits(torch.tensor([128.0, 1.0]))[0] == 9
    assert grid_bits(torch.tensor([0.1]))[0] > 20  # a float value needs its whole mantissa
    assert grid_bits(torch.zeros(4))[0] == 1


def test_scheme_errors_and_toml(tmp_path):
    with pytest.raises(ParameterError, match="unknown quantization scheme 'int4'"):
        get_scheme("int4")
    for bad in (1, 33):
        with pytest.raises(ParameterError, match=f"bit width a = {bad} is outside 2-32"):
            get_scheme({"base": "wageubn", "a": bad})
    with pytest.raises(ParameterError, match="momentum 0.3 is not a shift"):
        get_scheme({"momentum": 0.3})
    p = tmp_path / "mine.toml"
    p.write_text('base = "eoq"\nname = "mine"\na = 6\ne = "float"\n')
    s = get_scheme(str(p))
    assert (s.name, s.a, s.e, s.update, s.u) == ("mine", 6, None, 8, 16)
    p.write_text('base = "eoq"\nbogus = 3\n')
    with pytest.raises(ParameterError, match="unknown key 'bogus'"):
        get_scheme(str(p))


def test_unsupported_layers_are_named():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.ReLU(), nn.LSTM(4, 4)))
    with pytest.raises(ParameterError, match=r"layer 1\.1 \(LSTM\) cannot be quantized"):
        quantize_model(model, "wageubn")
    with pytest.raises(ParameterError, match=r"layer 0 \(Conv1d\)"):
        check_supported(nn.Sequential(nn.Conv1d(1, 2, 3)))
    # export: batch norm has no integer form; the message names the layer
    m = quantize_model(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)), "wageubn")
    m.train()(torch.rand(2, 1, 4, 4))
    with pytest.raises(ParameterError, match=r"layer 1 \(QBatchNorm2d\) has no integer form"):
        to_integer(m.eval(), torch.rand(1, 1, 4, 4))


def test_cq_range_decay_limits_gradient_integers():
    from neurosim.quant import set_cq_range

    torch.manual_seed(0)
    model = quantize_model(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)), "wageubn").train()
    x, y = torch.rand(8, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    set_cq_range(model, 2)
    nn.functional.cross_entropy(model(x), y).backward()
    n = model[2].weight.grad * 2.0**14
    assert torch.equal(n, n.round()) and set(n.unique().tolist()) <= {-1.0, 0.0, 1.0}
    with pytest.raises(ParameterError, match="CQ range 300"):
        set_cq_range(model, 300)


def test_requantizing_with_another_scheme_is_refused():
    model = quantize_model(nn.Sequential(nn.Conv2d(1, 2, 3)), "eoq")
    assert quantize_model(model, "eoq") is model  # same scheme: a no-op
    with pytest.raises(ParameterError, match="layer 0 is already quantized with scheme 'eoq'"):
        quantize_model(model, "wageubn")
