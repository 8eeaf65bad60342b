// The plane mode for few outputs (run_plane_few, AVX2). Used by conv_layer.cpp and, step by
// step, by snn_chain.cpp.
#pragma once
#include <neurosim/simd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "conv_common.h"

namespace chip {
namespace {  // (internal linkage: each including .cpp gets its own copy)

// plane for few outputs (AVX2, 0/1 inputs with int16 accumulators, stride 1, M <= 4; e.g. a
// correlation head 16 -> 1): the input is widened once per step to int16 masks (0 / -1) in a
// zero-padded copy, and blocks of R = 8 output rows x 16 columns of one output channel stay in
// registers while every tap (c, dy, dx) adds (mask AND broadcast weight) of the 16 shifted
// inputs of each row: 3 vector instructions per tap and 16 outputs, no tables and no stores
// until the block is done (the lut mode needed kh*ceil(kw*C/8) scalar table adds per output
// when M = 1). Exact: every partial sum is a sum of some of the output's weights (int16 condition).
// Measured side by side (load ~3): snn_xcorr (16 -> 1, 3x3, 16x16) 0.068 (lut) -> 0.037 ms per frame.
inline bool plane_few_fits(const ConvLayerArgs& a, bool i16) { return i16 && a.stride == 1 && a.m <= 4; }

#if NEUROSIM_X86
template <int R>
__attribute__((target("avx2"))) inline void plane_few_block(const int16_t* xp, int64_t hpp, int64_t wpp,
                                                            const int8_t* w, int64_t c_n, int64_t kh, int64_t kw,
                                                            int16_t* out, int64_t ostride) {
    __m256i acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
    for (int64_t c = 0; c < c_n; ++c)
        for (int64_t dy = 0; dy < kh; ++dy)
            for (int64_t dx = 0; dx < kw; ++dx) {
                const __m256i wv = _mm256_set1_epi16(w[(c * kh + dy) * kw + dx]);
                const int16_t* src = xp + (c * hpp + dy) * wpp + dx;
                for (int r = 0; r < R; ++r)
                    acc[r] = _mm256_add_epi16(acc[r], _mm256_and_si256(
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + r * wpp)), wv));
            }
    for (int r = 0; r < R; ++r) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * ostride), acc[r]);
}

#endif  // NEUROSIM_X86

// The padded int16 mask copy of a step's input (0 / -1 per channel plane) and the accumulators.
struct PlaneFewPlan {
    int64_t wo16, wpp, hpp;
    std::vector<int16_t> xpad, acc;
    explicit PlaneFewPlan(const ConvLayerArgs& a) {
        wo16 = (a.wo + 15) / 16 * 16;
        wpp = std::max(a.w + 2 * a.pad, wo16 + a.kw - 1) + 16;
        hpp = std::max(a.h + 2 * a.pad, a.ho + a.kh - 1) + 8;  // + 8: the last row block's rows
        xpad.assign(a.c * hpp * wpp + 16, 0);  // (the padding stays zero; the interior is rewritten each step)
        acc.assign(a.m * (a.ho + 8) * wo16, 0);
    }
    // input (c, y, x) of the step at xpad[(c * hpp + y + pad) * wpp + pad + x]
    int16_t* at(const ConvLayerArgs& a, int64_t c, int64_t y) { return xpad.data() + (c * hpp + y + a.pad) * wpp + a.pad; }
};

#if NEUROSIM_X86
// One step from pf.xpad: the accumulation of every output channel and its soma into wk.spk (M, P),
// for the output rows [r0, r1) (all by default; the last row block may compute up to 7 rows past
// r1 into the accumulators' spare rows, which nothing reads).
__attribute__((target("avx2"))) inline void plane_few_step(const ConvLayerArgs& a, PlaneFewPlan& pf, Work& wk,
                                                           int64_t r0 = 0, int64_t r1 = -1) {
    if (r1 < 0) r1 = a.ho;
    const int64_t p_out = a.ho * a.wo, fan_in = a.c * a.kh * a.kw, wo16 = pf.wo16;
    for (int64_t j = 0; j < a.m; ++j) {
        int16_t* aj = pf.acc.data() + j * (a.ho + 8) * wo16;
        for (int64_t oy = r0; oy < r1; oy += 8)
            for (int64_t cb = 0; cb < wo16; cb += 16)
                plane_few_block<8>(pf.xpad.data() + oy * pf.wpp + cb, pf.hpp, pf.wpp, a.weight + j * fan_in, a.c, a.kh,
                                   a.kw, aj + oy * wo16 + cb, wo16);
        for (int64_t oy = r0; oy < r1; ++oy)  // (M, P) rows: the soma on the valid columns
            soma_step<int16_t, true>(a, aj + oy * wo16, a.wo, false, wk, j * p_out + oy * a.wo);
    }
}

__attribute__((target("avx2"))) void run_plane_few(const ConvLayerArgs& a, Work& wk) {
    const int64_t hw = a.h * a.w;
    PlaneFewPlan pf(a);
    for (int64_t t = 0; t < a.steps; ++t) {
        const int8_t* xt = a.x + t * a.c * hw;
        for (int64_t c = 0; c < a.c; ++c)
            for (int64_t y = 0; y < a.h; ++y) {
                int16_t* __restrict d = pf.at(a, c, y);
                const int8_t* __restrict src = xt + (c * a.h + y) * a.w;
                for (int64_t xx = 0; xx < a.w; ++xx) d[xx] = static_cast<int16_t>(-src[xx]);  // 0/1 -> 0/-1
            }
        wk.count_inputs(xt, a.in_count);
        plane_few_step(a, pf, wk);
        write_step(a, t, false, wk.spk.data(), wk);
    }
}

#endif  // NEUROSIM_X86

}  // namespace
}  // namespace chip
