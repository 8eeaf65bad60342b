"""The C++ integer arithmetic (cpp/include/neurosim/intmath.h) is neurosim/intmath.py.

Every constant and limit the kernels compile in is compared with the Python module, the fan-in
limit is checked against its int32 bound by exact integer arithmetic, and the C++ rounding,
saturation and leak functions (exposed one value per call by ``chip_models._kernels``) are
property-tested against the Python definitions, saturation edges included.
"""

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chip_models import _kernels as _k
from neurosim import intmath

LIMITS = _k.limits()
I32_LO, I32_HI = intmath.int_range(32)
I32 = st.integers(I32_LO, I32_HI)
I64 = st.integers(-(2**62), 2**62)
MEM_LO, MEM_HI = intmath.int_range(intmath.MEMBRANE_BITS)
EDGES32 = [I32_LO, I32_LO + 1, -1, 0, 1, I32_HI - 1, I32_HI]
SETTINGS = settings(max_examples=300, deadline=None)


def _py(f, *args) -> int:
    return int(np.asarray(f(*args)).item())


def test_constants_match_python():
    assert LIMITS["ACC_BITS"] == intmath.ACC_BITS
    assert LIMITS["MEMBRANE_BITS"] == intmath.MEMBRANE_BITS
    assert (LIMITS["INT8_MIN"], LIMITS["INT8_MAX"]) == (intmath.INT8_MIN, intmath.INT8_MAX)
    assert (LIMITS["ACC_LO"], LIMITS["ACC_HI"]) == intmath.int_range(intmath.ACC_BITS)
    assert (LIMITS["MEM_LO"], LIMITS["MEM_HI"]) == intmath.int_range(intmath.MEMBRANE_BITS)
    assert LIMITS["MAX_FAN_IN"] == intmath.MAX_FAN_IN
    assert LIMITS["MIN_SHIFT"] == intmath.MIN_SHIFT


def test_fan_in_limit_keeps_every_path_exact():
    """MAX_FAN_IN extreme products fit int32 for signed int8 x int8 (the scalar/AVX2 sums) and for
    the VNNI paths' u8 (x + 128) x s8 partial sums; one more term than the signed bound does not."""
    k = intmath.MAX_FAN_IN
    most_positive = k * intmath.INT8_MIN * intmath.INT8_MIN  # all (-128)(-128)
    most_negative = k * intmath.INT8_MIN * intmath.INT8_MAX
    assert I32_LO <= most_negative and most_positive <= I32_HI
    assert k * 255 * intmath.INT8_MIN >= I32_LO and k * 255 * intmath.INT8_MAX <= I32_HI  # VNNI
    signed_bound = I32_HI // (intmath.INT8_MIN * intmath.INT8_MIN)  # 131071
    assert k <= signed_bound and (signed_bound + 1) * 128 * 128 > I32_HI
    # the kernels' chunking uses the same limit
    from chip_models import kernels

    assert kernels.K_CHUNK == k


def test_mac_at_the_fan_in_limit_is_exact():
    """All-extreme products at K = MAX_FAN_IN with int32-saturating biases: the int64 reference."""
    from chip_models import kernels

    k = intmath.MAX_FAN_IN
    x = np.full((1, k), -128, np.int8)
    w = np.full((2, k), -128, np.int8)
    w[1] = 127
    bias = np.array([I32_HI, I32_LO], np.int32)
    for path in kernels.available_paths():
        with kernels.use_path(path):
            np.testing.assert_array_equal(kernels.dense_mac(x, w, bias), intmath.mac(x, w, bias))


@SETTINGS
@given(x=I64 | st.sampled_from(EDGES32), bits=st.integers(1, 63))
def test_saturate(x, bits):
    assert _k.intmath_saturate(x, bits) == _py(intmath.saturate, x, bits)


@SETTINGS
@given(x=I64 | st.sampled_from(EDGES32) | st.integers(I32_LO - 5, I32_LO + 5) | st.integers(I32_HI - 5, I32_HI + 5))
def test_sat32(x):
    assert _k.intmath_sat32(x) == _py(intmath.saturate, x, 32)


@SETTINGS
@given(x=st.integers(-(2**40), 2**40) | st.sampled_from(EDGES32), s=st.integers(-20, 62))
@example(x=-3, s=1)  # -1.5 rounds half up to -1
@example(x=3, s=1)  # 1.5 -> 2
@example(x=I32_LO, s=31)
def test_rounding_shift_right(x, s):
    assert _k.intmath_rounding_shift_right(x, s) == _py(intmath.rounding_shift_right, x, s)


@SETTINGS
@given(x=I32 | st.sampled_from(EDGES32), s=st.integers(1, 31))
def test_rshr_pos_int32_only(x, s):
    """The int32-only form (x >> s) + ((x >> (s - 1)) & 1) used by the vector kernels."""
    assert _k.intmath_rshr_pos(x, s) == _py(intmath.rounding_shift_right, x, s)


@SETTINGS
@given(acc=I32 | st.sampled_from(EDGES32), shift=st.integers(intmath.MIN_SHIFT, 40),
       bits=st.sampled_from([8, 16, intmath.MEMBRANE_BITS, 32]))
@example(acc=I32_HI, shift=-24, bits=32)
@example(acc=I32_LO, shift=32, bits=8)
@example(acc=-(2**30), shift=31, bits=8)  # -0.5 rounds half up to 0
def test_requantize(acc, shift, bits):
    assert _k.intmath_requantize(acc, shift, bits) == _py(intmath.requantize, acc, shift, bits)


@SETTINGS
@given(v=st.integers(MEM_LO, MEM_HI) | st.sampled_from([MEM_LO, MEM_LO + 1, -1, 0, 255, 256, MEM_HI]),
       alpha=st.integers(0, 256), beta=st.integers(MEM_LO, MEM_HI) | st.integers(-300, 300))
def test_leak(v, alpha, beta):
    assert _k.intmath_leak(v, alpha, beta) == _py(intmath.leak, v, alpha, beta)
