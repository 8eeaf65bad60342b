// The integer arithmetic of neurosim in C++: the one definition every kernel uses, written after
// neurosim/intmath.py (gemmlowp fixedpoint.h style: constants and small inline functions, no
// kernel). tests/test_intmath_cpp.py checks every constant against the Python module and
// property-tests the functions against the Python definitions (chip_models._kernels exposes them).
//
// Fan-in limit (MAX_FAN_IN = 2^16 inputs per neuron, per MAC kernel call):
//   * int8 products lie in [-128 * 127, 128 * 128] = [-16256, 16384], so a sum of K products is
//     exact in int32 for K <= floor((2^31 - 1) / 2^14) = 131071; K = 131072 all (-128)(-128)
//     reaches 2^31 and wraps.
//   * the VNNI paths multiply u8 (x + 128) by s8 w: products in [-32640, 32385], so their int32
//     partial sums are exact for K <= floor(2^31 / 32640) = 65793 (the 128 * sum_k w correction,
//     |.| <= 2^14 * K, is subtracted afterwards).
//   * the bias (any int32) is added in int64 and the sum saturated to int32 (sat32), so it puts no
//     bound on K; with K <= 2^16, |sum x * w| <= 2^30 and acc + bias stays inside int32 whenever
//     |bias| < 2^30 (the kernels' int32-only fast paths check that).
//   The power of two 2^16 <= 65793 keeps every path exact; larger fan-ins are cut into chunks of
//   MAX_FAN_IN by the callers (chip_models.kernels.dense_mac) or refused (conv layers).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

namespace neurosim {
namespace intmath {

constexpr int ACC_BITS = 32;       // accumulators
constexpr int MEMBRANE_BITS = 28;  // saturating membranes of the integer LIF
constexpr int32_t Q8_MIN = -128, Q8_MAX = 127;  // int8 operands (Python INT8_MIN, INT8_MAX)
constexpr int64_t MAX_FAN_IN = int64_t(1) << 16;

// Signed range [-2^(bits-1), 2^(bits-1) - 1] of a bits-bit integer (1 <= bits <= 63).
constexpr int64_t int_lo(int bits) { return -(int64_t(1) << (bits - 1)); }
constexpr int64_t int_hi(int bits) { return (int64_t(1) << (bits - 1)) - 1; }

constexpr int32_t ACC_LO = std::numeric_limits<int32_t>::min();
constexpr int32_t ACC_HI = std::numeric_limits<int32_t>::max();
constexpr int32_t MEM_LO = static_cast<int32_t>(int_lo(MEMBRANE_BITS));  // -2^27
constexpr int32_t MEM_HI = static_cast<int32_t>(int_hi(MEMBRANE_BITS));  // 2^27 - 1
// The LIF clamps its input current to +-2^29 first: with |v| < 2^27, v + current stays in int32
// and the 28-bit saturated sum is unchanged.
constexpr int32_t CURRENT_CLAMP = int32_t(1) << 29;
// A left shift (negative requantization shift) of an int32 accumulator by at most 24 fits int64.
constexpr int MIN_SHIFT = -24;

static_assert(MAX_FAN_IN * 128 * 128 <= ACC_HI / 2 + 1, "|sum x * w| <= 2^30");
static_assert(MAX_FAN_IN * 255 * 128 < -int64_t(ACC_LO), "VNNI u8 x s8 partial sums stay in int32");
static_assert(MEM_HI == (1 << 27) - 1 && MEM_LO == -(1 << 27), "28-bit membrane");

// saturate(x, bits): clamp to the signed bits-bit range.
constexpr int64_t saturate(int64_t x, int bits) { return std::clamp(x, int_lo(bits), int_hi(bits)); }
constexpr int32_t sat32(int64_t x) { return static_cast<int32_t>(std::clamp<int64_t>(x, ACC_LO, ACC_HI)); }
constexpr int32_t sat_mem(int32_t x) { return std::clamp(x, MEM_LO, MEM_HI); }

// rounding_shift_right(x, s): round_half_up(x / 2^s) for s > 0 (towards +inf on ties), x << -s
// for s < 0, x for s == 0. For s >= 1 it is computed without a wider type as
// (x >> s) + ((x >> (s - 1)) & 1): floor plus the first dropped bit (arithmetic shifts).
constexpr int32_t rshr_pos(int32_t x, int s) {  // 1 <= s <= 31
    return (x >> s) + ((x >> (s - 1)) & 1);
}
constexpr int64_t rounding_shift_right(int64_t x, int s) {  // -62 < s < 63, result in int64
    return s > 0 ? (x >> s) + ((x >> (s - 1)) & 1) : (s < 0 ? x * (int64_t(1) << -s) : x);
}
// Output stage: saturate(rounding_shift_right(acc, shift), bits) for an int32 accumulator.
constexpr int32_t requantize(int32_t acc, int shift, int32_t lo, int32_t hi) {
    if (shift >= 32) return std::clamp(0, lo, hi);  // |acc / 2^shift| < 1/2 rounds half up to 0
    if (shift > 0) return std::clamp(rshr_pos(acc, shift), lo, hi);
    if (shift == 0) return std::clamp(acc, lo, hi);
    return static_cast<int32_t>(std::clamp<int64_t>(static_cast<int64_t>(acc) << -shift, lo, hi));
}

// floor(v * alpha / 256) for a membrane |v| < 2^27 and 0 <= alpha <= 256, in int32 only:
// v = 256 * vh + vl (vh = v >> 8, vl = v & 255) gives vh * alpha + ((vl * alpha) >> 8).
constexpr int32_t leak_floor(int32_t v, int32_t alpha) { return (v >> 8) * alpha + (((v & 255) * alpha) >> 8); }
// Membrane leak of neurosim/intmath.py: sat_mem(floor(v * alpha / 256) + beta).
constexpr int32_t leak(int32_t v, int32_t alpha, int32_t beta) { return sat_mem(leak_floor(v, alpha) + beta); }

}  // namespace intmath
}  // namespace neurosim
