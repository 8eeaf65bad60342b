// Soma bodies shared by kernels.cpp and conv_layer.cpp: the integer LIF of
// neurosim/intneuron.py, the requantization (rounding_shift_right + clamp) and the ANN activation
// of neurosim/intmath.py. Branch-free int32, written once and compiled into scalar and AVX2 callers.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels.h"

namespace chip {
namespace soma {

constexpr int32_t MEM_HI = (1 << 27) - 1;  // 28-bit membrane (MEMBRANE_BITS)
constexpr int32_t MEM_LO = -(1 << 27);

// One neuron, one step: integrate (unless refractory), fire, reset, leak; returns the spike.
// Reset: the reset mode (0 value, 1 subtract, 2 constant) fixed at compile time; Refr = false
// when no neuron can be refractory (refractory_steps == 0 and every counter 0: counters stay 0).
template <int Reset, bool Refr>
__attribute__((always_inline)) inline int8_t lif_one(int32_t current, int32_t& v, int32_t& counter, const LIFParams& p) {
    const bool refractory = Refr && counter > 0;
    // |v| < 2^27: clamping the current to +-2^29 first keeps v + c in int32 and does not
    // change the 28-bit saturated sum.
    const int32_t c = std::clamp(current, -(1 << 29), 1 << 29);
    const int32_t vin = std::clamp(v + c, MEM_LO, MEM_HI);
    int32_t vi = refractory ? v : vin;
    const bool spike = (vi > p.v_th) && !refractory;
    const int32_t rv = Reset == 0 ? p.v_reset : (Reset == 1 ? vi - p.v_th : vi - p.reset_constant);
    vi = spike ? std::clamp(rv, MEM_LO, MEM_HI) : vi;
    const int32_t vh = vi >> 8, vl = vi & 255;
    const int32_t lk = vh * p.leak_alpha + ((vl * p.leak_alpha) >> 8) + p.leak_beta;
    v = std::clamp(lk, MEM_LO, MEM_HI);
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
        const int s1 = shift - 1;
        for (int64_t i = 0; i < n; ++i)
            out[i] = std::clamp((acc[i] >> shift) + ((acc[i] >> s1) & 1), lo, hi);
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


}  // namespace soma
}  // namespace chip
