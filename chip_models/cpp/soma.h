// Soma bodies shared by kernels.cpp and conv_layer.cpp: the integer LIF of
// neurosim/intneuron.py, the requantization (rounding_shift_right + clamp) and the ANN activation
// of neurosim/intmath.py. Branch-free int32, written once and compiled into scalar and AVX2 callers.
#pragma once
#include <neurosim/intmath.h>
#include <neurosim/simd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace chip {
namespace soma {

using neurosim::intmath::MEM_HI;  // 28-bit membrane (MEMBRANE_BITS)
using neurosim::intmath::MEM_LO;
using neurosim::intmath::CURRENT_CLAMP;

// One neuron, one step: integrate (unless refractory), fire, reset, leak; returns the spike.
// Reset: the reset mode (0 value, 1 subtract, 2 constant) fixed at compile time; Refr = false
// when no neuron can be refractory (refractory_steps == 0 and every counter 0: counters stay 0).
template <int Reset, bool Refr>
__attribute__((always_inline)) inline int8_t lif_one(int32_t current, int32_t& v, int32_t& counter, const LIFParams& p) {
    const bool refractory = Refr && counter > 0;
    // |v| < 2^27: clamping the current to +-2^29 first keeps v + c in int32 and does not
    // change the 28-bit saturated sum.
    const int32_t c = std::clamp(current, -CURRENT_CLAMP, CURRENT_CLAMP);
    const int32_t vin = std::clamp(v + c, MEM_LO, MEM_HI);
    int32_t vi = refractory ? v : vin;
    const bool spike = (vi > p.v_th) && !refractory;
    const int32_t rv = Reset == 0 ? p.v_reset : (Reset == 1 ? vi - p.v_th : vi - p.reset_constant);
    vi = spike ? std::clamp(rv, MEM_LO, MEM_HI) : vi;
    v = neurosim::intmath::leak(vi, p.leak_alpha, p.leak_beta);
    if (Refr) counter = spike ? p.refractory_steps : std::max(counter - 1, 0);
    return spike ? 1 : 0;
}

template <int Reset, bool Refr>
__attribute__((always_inline)) inline void lif_loop(const int32_t* current, int32_t* v, int32_t* counter,
                                                     int8_t* spikes, int64_t n, const LIFParams& p) {
    for (int64_t i = 0; i < n; ++i) spikes[i] = lif_one<Reset, Refr>(current[i], v[i], counter[i], p);
}

// n neurons, one step; the loop is specialized on the reset mode and on refractoriness so the
// vectorized body has no loop-invariant selects or conditional stores.
__attribute__((always_inline)) inline void lif_body(const int32_t* current, int32_t* v, int32_t* counter,
                                                     int8_t* spikes, int64_t n, const LIFParams p) {
    bool refr = p.refractory_steps > 0;
    if (!refr) {
        int32_t any = 0;
        for (int64_t i = 0; i < n; ++i) any |= counter[i];
        refr = any != 0;
    }
    if (refr) {
        if (p.reset_mode == 0) lif_loop<0, true>(current, v, counter, spikes, n, p);
        else if (p.reset_mode == 1) lif_loop<1, true>(current, v, counter, spikes, n, p);
        else lif_loop<2, true>(current, v, counter, spikes, n, p);
    } else {
        if (p.reset_mode == 0) lif_loop<0, false>(current, v, counter, spikes, n, p);
        else if (p.reset_mode == 1) lif_loop<1, false>(current, v, counter, spikes, n, p);
        else lif_loop<2, false>(current, v, counter, spikes, n, p);
    }
}

// rounding_shift_right then clamp to [lo, hi]; int32 for shift >= 0, int64 for a left shift.
__attribute__((always_inline)) inline void requant_body(const int32_t* acc, int32_t* out, int64_t n, int shift,
                                                         int32_t lo, int32_t hi) {
    if (shift >= 32) {
        for (int64_t i = 0; i < n; ++i) out[i] = 0;  // |acc / 2^shift| < 1/2 rounds (half up) to 0
    } else if (shift > 0) {
        for (int64_t i = 0; i < n; ++i) out[i] = std::clamp(neurosim::intmath::rshr_pos(acc[i], shift), lo, hi);
    } else if (shift == 0) {
        for (int64_t i = 0; i < n; ++i) out[i] = std::clamp(acc[i], lo, hi);
    } else {
        const int l = -shift;  // the wrapper keeps l <= 24, so acc << l fits int64
        for (int64_t i = 0; i < n; ++i)
            out[i] = static_cast<int32_t>(std::clamp<int64_t>(static_cast<int64_t>(acc[i]) << l, lo, hi));
    }
}

__attribute__((always_inline)) inline void act_body(const int32_t* q, int8_t* out, int64_t n, int act,
                                                     const int8_t* lut) {
    if (act == 1) {
        for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(std::max(q[i], 0));
    } else if (act == 2) {
        for (int64_t i = 0; i < n; ++i) out[i] = lut[q[i] + 128];
    } else {
        for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(q[i]);
    }
}


// ---- One fused AVX2 pass: accumulator (+ bias) -> requantize -> soma -> 0/1 or int8 bytes.
// Eight neurons per instruction; the same operations as requant_body + lif_one<Reset, false> /
// act_body (the scalar code above is the definition; tests compare both paths with the Python
// reference). Used for shifts 0..31, a bias whose acc + bias cannot leave int32, and no
// refractory period; the caller runs the scalar bodies otherwise and on the n % 8 tail.

// Bytes 0/1 of the 8 bits of i, little-endian (spike bytes from a movemask).
struct MaskBytes {
    uint64_t t[256];
    constexpr MaskBytes() : t() {
        for (int i = 0; i < 256; ++i) {
            uint64_t v = 0;
            for (int b = 0; b < 8; ++b)
                if ((i >> b) & 1) v |= uint64_t(1) << (8 * b);
            t[i] = v;
        }
    }
};
inline constexpr MaskBytes MASK_BYTES{};

#if NEUROSIM_X86
template <typename Acc>
__attribute__((target("avx2"))) inline __m256i load8_i32(const Acc* p) {
    if constexpr (sizeof(Acc) == 2)
        return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    else
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// round-half-up shift right by s (0..31) of int32 lanes: (a >> s) + ((a >> (s - 1)) & 1).
__attribute__((target("avx2"))) inline __m256i rshr8(__m256i a, int s) {
    if (s == 0) return a;
    const __m128i c = _mm_cvtsi32_si128(s), c1 = _mm_cvtsi32_si128(s - 1);
    return _mm256_add_epi32(_mm256_sra_epi32(a, c),
                            _mm256_and_si256(_mm256_sra_epi32(a, c1), _mm256_set1_epi32(1)));
}

// Fast: the caller has checked that three clamps cannot act and the leak's low product fits 16
// bits, so they are left out (the same values): |acc + bias| < 2^29 (int16 accumulators, |bias|
// <= 2^28: the current clamp to +-2^29 is a no-op); reset to a value (pre-clamped) or subtract
// with v_th >= 0 (a spike has v > v_th >= 0, so 0 < v - v_th <= v stays inside the membrane
// range); 0 <= alpha <= 256 and beta == 0 (floor(v * alpha / 256) lies between 0 and v, and
// vl * alpha <= 255 * 256 fits a 16-bit lane: vpmullw instead of vpmulld).
template <typename Acc, int Reset, bool Fast = false>
__attribute__((target("avx2"))) inline int64_t lif_fused_avx2(const Acc* acc, const int32_t* bias, int64_t n,
                                                                int shift, const LIFParams& p, int32_t* v,
                                                                int8_t* spikes) {
    const __m256i clo = _mm256_set1_epi32(-CURRENT_CLAMP), chi = _mm256_set1_epi32(CURRENT_CLAMP);
    const __m256i lo = _mm256_set1_epi32(MEM_LO), hi = _mm256_set1_epi32(MEM_HI);
    const __m256i vth = _mm256_set1_epi32(p.v_th), alpha = _mm256_set1_epi32(p.leak_alpha);
    const __m256i beta = _mm256_set1_epi32(p.leak_beta), m255 = _mm256_set1_epi32(255);
    const int32_t rc = Reset == 0 ? (Fast ? std::clamp(p.v_reset, MEM_LO, MEM_HI) : p.v_reset)
                                  : (Reset == 1 ? p.v_th : p.reset_constant);
    const __m256i rconst = _mm256_set1_epi32(rc);
    // Fast: round half up as (x + 2^(s-1)) >> s, the same value as rshr8 when x + 2^(s-1) stays
    // inside int32: |acc| <= 2^15 (int16), |bias| <= 2^28 and 2^(s-1) <= 2^30 (s <= 31)
    const __m256i half = _mm256_set1_epi32(shift > 0 ? int32_t(1) << (shift - 1) : 0);
    const __m128i cnt = _mm_cvtsi32_si128(shift);
    // Fast with alpha < 256: the leak floor(v * alpha / 256) from v = a * 2^16 + b (a = v >> 16
    // signed, b = v & 0xffff): = ((a * alpha) << 8) + floor(b * alpha * 256 / 2^16). vpmaddwd of v's
    // int16 halves with (0, alpha) gives a * alpha (|a * alpha| < 2^23, so << 8 stays in int32);
    // vpmulhuw of v with (alpha * 256 <= 65280, 0) gives floor(b * alpha * 256 / 2^16) in the low
    // half and 0 in the high half. Exact for every int32 v.
    const bool alpha_lt256 = p.leak_alpha >= 0 && p.leak_alpha < 256;
    const __m256i alpha_hi16 = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(p.leak_alpha & 0xffff) << 16));
    const __m256i alpha_lo16 = _mm256_set1_epi32((p.leak_alpha & 0xff) << 8);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i cur = load8_i32(acc + i);
        if (bias) cur = _mm256_add_epi32(cur, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + i)));
        if constexpr (Fast) cur = _mm256_sra_epi32(_mm256_add_epi32(cur, half), cnt);  // (see above)
        else cur = rshr8(cur, shift);
        if constexpr (!Fast) cur = _mm256_min_epi32(_mm256_max_epi32(cur, clo), chi);
        __m256i vi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i));
        vi = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(vi, cur), lo), hi);
        const __m256i spike = _mm256_cmpgt_epi32(vi, vth);
        if constexpr (Fast && Reset == 1) {  // v - (spike ? v_th : 0): no blend (and + sub)
            vi = _mm256_sub_epi32(vi, _mm256_and_si256(spike, rconst));
        } else {
            __m256i rv = Reset == 0 ? rconst : _mm256_sub_epi32(vi, rconst);
            if constexpr (!Fast) rv = _mm256_min_epi32(_mm256_max_epi32(rv, lo), hi);
            vi = _mm256_blendv_epi8(vi, rv, spike);
        }
        const __m256i vh = _mm256_srai_epi32(vi, 8), vl = _mm256_and_si256(vi, m255);
        __m256i lk;
        if constexpr (Fast) {
            if (alpha_lt256) {  // no vpmulld (2 uops, 10 cycles): see lo16/hi16 above
                lk = _mm256_add_epi32(_mm256_slli_epi32(_mm256_madd_epi16(vi, alpha_hi16), 8),
                                      _mm256_mulhi_epu16(vi, alpha_lo16));
            } else {
                lk = _mm256_add_epi32(_mm256_mullo_epi32(vh, alpha), _mm256_srli_epi32(_mm256_mullo_epi16(vl, alpha), 8));
            }
        } else {
            lk = _mm256_add_epi32(_mm256_mullo_epi32(vh, alpha), _mm256_srai_epi32(_mm256_mullo_epi32(vl, alpha), 8));
            lk = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(lk, beta), lo), hi);
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(v + i), lk);
        const uint64_t bytes = MASK_BYTES.t[_mm256_movemask_ps(_mm256_castsi256_ps(spike))];
        std::memcpy(spikes + i, &bytes, 8);
    }
    return i;
}

// The Fast case of lif_fused_avx2 for int16 accumulators on AVX-512 (16 neurons per instruction,
// the spike test as a mask register: the reset is one masked instruction, the spike bytes one
// masked move). The same operations and conditions as lif_fused_avx2<int16_t, Reset, true>; the
// scalar code is the definition. Returns the number of neurons done (a multiple of 16).
#define NEUROSIM_AVX512 "avx2,avx512f,avx512bw,avx512vl,avx512dq"
template <int Reset>
__attribute__((target(NEUROSIM_AVX512))) inline int64_t lif_fast_avx512(const int16_t* acc, const int32_t* bias,
                                                                         int64_t n, int shift, const LIFParams& p,
                                                                         int32_t* v, int8_t* spikes,
                                                                         bool bias_period16 = false) {
    const __m512i lo = _mm512_set1_epi32(MEM_LO), hi = _mm512_set1_epi32(MEM_HI);
    const __m512i vth = _mm512_set1_epi32(p.v_th), alpha = _mm512_set1_epi32(p.leak_alpha);
    const __m512i m255 = _mm512_set1_epi32(255);
    const __m512i rconst = _mm512_set1_epi32(Reset == 0 ? std::clamp(p.v_reset, MEM_LO, MEM_HI) : p.v_th);
    const __m512i half = _mm512_set1_epi32(shift > 0 ? int32_t(1) << (shift - 1) : 0);
    const __m128i cnt = _mm_cvtsi32_si128(shift);
    const bool alpha_lt256 = p.leak_alpha >= 0 && p.leak_alpha < 256;
    const __m512i alpha_hi16 = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(p.leak_alpha & 0xffff) << 16));
    const __m512i alpha_lo16 = _mm512_set1_epi32((p.leak_alpha & 0xff) << 8);
    const __m128i one8 = _mm_set1_epi8(1);
    // bias + rounding half, one register when the bias repeats every 16 neurons (position-major
    // with M dividing 16: the caller says so with bias_period16)
    const __m512i bias_half = bias_period16 && bias ? _mm512_add_epi32(_mm512_loadu_si512(bias), half) : half;
    const bool bias_each = bias && !bias_period16;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i cur = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i)));
        if (bias_each) cur = _mm512_add_epi32(cur, _mm512_loadu_si512(bias + i));
        cur = _mm512_sra_epi32(_mm512_add_epi32(cur, bias_half), cnt);
        __m512i vi = _mm512_add_epi32(_mm512_loadu_si512(v + i), cur);
        vi = _mm512_min_epi32(_mm512_max_epi32(vi, lo), hi);
        const __mmask16 spike = _mm512_cmpgt_epi32_mask(vi, vth);
        vi = Reset == 0 ? _mm512_mask_mov_epi32(vi, spike, rconst) : _mm512_mask_sub_epi32(vi, spike, vi, rconst);
        __m512i lk;
        if (alpha_lt256) {
            lk = _mm512_add_epi32(_mm512_slli_epi32(_mm512_madd_epi16(vi, alpha_hi16), 8),
                                  _mm512_mulhi_epu16(vi, alpha_lo16));
        } else {
            const __m512i vh = _mm512_srai_epi32(vi, 8), vl = _mm512_and_si512(vi, m255);
            lk = _mm512_add_epi32(_mm512_mullo_epi32(vh, alpha), _mm512_srli_epi32(_mm512_mullo_epi16(vl, alpha), 8));
        }
        _mm512_storeu_si512(v + i, lk);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(spikes + i), _mm_maskz_mov_epi8(spike, one8));
    }
    return i;
}

// The Fast LIF of lif_fast_avx512 with an int16 membrane, 32 neurons per instruction, for a layer
// whose every membrane value, current and intermediate provably stays inside int16 (the chain
// checks it once per call: lif16_bounds in snn_chain.cpp), so the 28-bit clamps never act and
// every int16 operation below equals its int32 counterpart:
//   x = acc + (bias + half) (int16 by the bound), I = x >> shift (vpsraw: floor),
//   u = v + I, spike = u > v_th, reset (subtract v_th or set v_reset), v = floor(u * alpha / 256):
//   alpha <= 127: vpmulhw(u, alpha * 256); 128: u >> 1; >= 129: u + vpmulhw(-u, (256 - alpha) * 256)
//   (floor(u * alpha / 256) = u + floor(-u * (256 - alpha) / 256); |u| <= 32767 keeps -u in int16).
// The last n % 32 neurons go through masked loads and stores.
template <int Reset>
__attribute__((target(NEUROSIM_AVX512))) inline void lif16_avx512(const int16_t* acc, const int16_t* bias_half32,
                                                                  int64_t n, int shift, const LIFParams& p,
                                                                  int16_t* v, int8_t* spikes) {
    const __m512i bh = _mm512_loadu_si512(bias_half32);
    const __m512i vth = _mm512_set1_epi16(static_cast<int16_t>(p.v_th));
    const __m512i rconst = _mm512_set1_epi16(static_cast<int16_t>(Reset == 0 ? std::clamp(p.v_reset, MEM_LO, MEM_HI) : p.v_th));
    const int alpha = p.leak_alpha;
    const __m512i leak_c = _mm512_set1_epi16(static_cast<int16_t>(alpha <= 127 ? alpha * 256 : (256 - alpha) * 256));
    const __m128i cnt = _mm_cvtsi32_si128(shift);
    const __m256i one8 = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n; i += 32) {
        const __mmask32 live = n - i >= 32 ? ~__mmask32{0} : (__mmask32{1} << (n - i)) - 1;
        const __m512i cur = _mm512_sra_epi16(_mm512_add_epi16(_mm512_maskz_loadu_epi16(live, acc + i), bh), cnt);
        __m512i u = _mm512_add_epi16(_mm512_maskz_loadu_epi16(live, v + i), cur);
        const __mmask32 spike = _mm512_mask_cmpgt_epi16_mask(live, u, vth);
        u = Reset == 0 ? _mm512_mask_mov_epi16(u, spike, rconst) : _mm512_mask_sub_epi16(u, spike, u, rconst);
        __m512i lk;
        if (alpha <= 127) lk = _mm512_mulhi_epi16(u, leak_c);
        else if (alpha == 128) lk = _mm512_srai_epi16(u, 1);
        else lk = _mm512_add_epi16(u, _mm512_mulhi_epi16(_mm512_sub_epi16(_mm512_setzero_si512(), u), leak_c));
        _mm512_mask_storeu_epi16(v + i, live, lk);
        _mm256_mask_storeu_epi8(spikes + i, live, _mm256_maskz_mov_epi8(spike, one8));
    }
}

// ANN: act(sat8(rshr(acc + bias, shift))) for act 0 (none) and 1 (relu).
template <typename Acc>
__attribute__((target("avx2"))) inline int64_t ann_fused_avx2(const Acc* acc, const int32_t* bias, int64_t n,
                                                               int shift, int act, int8_t* out) {
    const __m256i lo = _mm256_set1_epi32(act == 1 ? 0 : -128), hi = _mm256_set1_epi32(127);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i q[2];
        for (int h = 0; h < 2; ++h) {
            __m256i cur = load8_i32(acc + i + 8 * h);
            if (bias) cur = _mm256_add_epi32(cur, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + i + 8 * h)));
            q[h] = _mm256_min_epi32(_mm256_max_epi32(rshr8(cur, shift), lo), hi);
        }
        // int32 -> int16 -> int8 (values already inside int8), undoing packs' lane interleave
        const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xd8);
        const __m128i b8 = _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), b8);
    }
    return i;
}
#endif  // NEUROSIM_X86

}  // namespace soma
}  // namespace chip
