// The events mode with int16 accumulators (run_span): one contiguous add per active input and
// kernel row. Used by conv_layer.cpp and, step by step, by snn_chain.cpp.
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

// events with int16 accumulators (0/1 inputs, the int16 condition): each active input adds, for
// every kernel row dy that reaches an output row, one contiguous span of L = ceil(kw / s)
// outputs × M accumulators. Input column u (padded) reaches outputs ox = u/s - i (i = 0..L-1)
// through taps dx = u % s + s*i, so with the weights of each residue r = u % s stored per window
// position (zero where dx >= kw) one fixed-length add of L*M int16 covers the whole row span.
// Accumulator rows carry L-1 spare outputs on the left and enough on the right for the last
// input column, so the add never needs clipping; the soma reads the valid part.
template <bool Vec>
__attribute__((always_inline)) inline void add_span(int16_t* acc, const int16_t* w, int64_t len);

template <>
__attribute__((always_inline)) inline void add_span<false>(int16_t* acc, const int16_t* w, int64_t len) {
    for (int64_t j = 0; j < len; ++j) acc[j] = static_cast<int16_t>(acc[j] + w[j]);
}

#if NEUROSIM_X86
template <>
__attribute__((target("avx2"))) inline void add_span<true>(int16_t* acc, const int16_t* w, int64_t len) {
    // (ymm adds that straddle two outputs' M-blocks, for M = 8, measured 15 % faster than one xmm
    // add per output: half the instructions outweigh the partly overlapping store forwarding)
    int64_t j = 0;
    for (; j + 16 <= len; j += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j),
                            _mm256_add_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j)),
                                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j))));
    for (; j + 8 <= len; j += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(acc + j),
                         _mm_add_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + j)),
                                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + j))));
    for (; j < len; ++j) acc[j] = static_cast<int16_t>(acc[j] + w[j]);
}

// The same with zmm adds (a span of 4 outputs x 8 channels is one add), the rest as add_span<true>.
// (Measured on the reference network's snn_conv1: one zmm add per span 0.078 ms per frame, two ymm
// 0.081, four xmm (no partly overlapping stores) 0.095.)
__attribute__((target("avx2,avx512f,avx512bw"))) inline void add_span512(int16_t* acc, const int16_t* w, int64_t len) {
    int64_t j = 0;
    for (; j + 32 <= len; j += 32)
        _mm512_storeu_si512(acc + j, _mm512_add_epi16(_mm512_loadu_si512(acc + j), _mm512_loadu_si512(w + j)));
    if (j < len) add_span<true>(acc + j, w + j, len - j);
}
#endif  // NEUROSIM_X86

template <bool Vec, bool W512>
__attribute__((always_inline)) inline void add_span_on(int16_t* acc, const int16_t* w, int64_t len) {
#if NEUROSIM_X86
    if constexpr (W512) return add_span512(acc, w, len);
#endif
    add_span<Vec>(acc, w, len);
}

// The fixed parts of a span layer: window weights, row taps, column offsets, accumulators.
// A band plan (r0, r1) keeps only the taps into output rows [r0, r1) and accumulators for those
// rows (local row oy - r0): the SNN chain runs bands of rows on different threads.
struct SpanPlan {
    int64_t L, span, row_len;
    std::vector<int16_t> wwin, accp;
    std::vector<int32_t> yptr, col_acc, col_w, events;
    std::vector<Tap> ytaps;  // per input row: (output row offset, dy * s * span)

    explicit SpanPlan(const ConvLayerArgs& a, int64_t r0 = 0, int64_t r1 = -1) {
        if (r1 < 0) r1 = a.ho;
        const int64_t m = a.m, s = a.stride;
        L = (a.kw + s - 1) / s;
        span = L * m;
        const int64_t right = std::max<int64_t>(0, (a.w - 1 + a.pad) / s - (a.wo - 1));
        row_len = (L - 1 + a.wo + right) * m;  // accumulators per output row, spare included
        // window weights: wwin[((c*kh + dy)*s + r)*span + q*m + j] = w[j, c, dy, r + s*(L-1-q)] (0 past kw)
        wwin.assign(a.c * a.kh * s * span, 0);
        for (int64_t c = 0; c < a.c; ++c)
            for (int64_t dy = 0; dy < a.kh; ++dy)
                for (int64_t r = 0; r < s; ++r)
                    for (int64_t q = 0; q < L; ++q) {
                        const int64_t dx = r + s * (L - 1 - q);
                        if (dx >= a.kw) continue;
                        int16_t* e = wwin.data() + ((c * a.kh + dy) * s + r) * span + q * m;
                        for (int64_t j = 0; j < m; ++j) e[j] = a.weight[((j * a.c + c) * a.kh + dy) * a.kw + dx];
                    }
        axis_taps(a.h, a.ho, a.kh, s, a.pad, row_len, s * span, yptr, ytaps);
        if (r0 > 0 || r1 < a.ho) {  // the band's taps, rebased to its first row
            std::vector<Tap> kept;
            std::vector<int32_t> ptr(a.h + 1, 0);
            for (int64_t y = 0; y < a.h; ++y) {
                for (int32_t e = yptr[y]; e < yptr[y + 1]; ++e) {
                    const int64_t o = ytaps[e].acc_off / row_len;
                    if (o >= r0 && o < r1) kept.push_back({static_cast<int32_t>(ytaps[e].acc_off - r0 * row_len), ytaps[e].w_off});
                }
                ptr[y + 1] = static_cast<int32_t>(kept.size());
            }
            ytaps.swap(kept);
            yptr.swap(ptr);
        }
        accp.assign((r1 - r0) * row_len + span, 0);
        // per input column u = x + pad: the window starts at output u/s - (L-1), i.e. at spare slot
        // u/s of the row, with the weights of residue u % s
        col_acc.resize(a.w);
        col_w.resize(a.w);
        for (int64_t xx = 0; xx < a.w; ++xx) {
            col_acc[xx] = static_cast<int32_t>((xx + a.pad) / s * m);
            col_w[xx] = static_cast<int32_t>((xx + a.pad) % s * span);
        }
        events.resize(a.w + 32);
    }
    // output row oy's valid accumulators (Wo x M, position-major; oy local to the band)
    const int16_t* row(int64_t oy) const { return accp.data() + oy * row_len + (L - 1) * (span / L); }
};

// One step: sp.accp = the spans of the active inputs of xt (C, H, W); in_count += them for the
// input rows [cy0, cy1) (a band plan counts only its share; rows it neither adds nor counts are skipped).
// W512: the spans added with zmm adds (add_span512; the caller is compiled for AVX-512).
template <bool Vec, int SPAN, bool W512 = false>
__attribute__((always_inline)) inline void span_accumulate(const ConvLayerArgs& a, SpanPlan& sp, const int8_t* xt,
                                                           int64_t cy0 = 0,
                                                           int64_t cy1 = std::numeric_limits<int64_t>::max()) {
    const int64_t hw = a.h * a.w, s = a.stride;
    const int64_t span = SPAN > 0 ? SPAN : sp.span;  // SPAN: known at compile time
    // raw pointers in locals: through sp they were reloaded for every event (the int32 count
    // store may alias, for the compiler, what the vectors hold)
    int16_t* __restrict accp = sp.accp.data();
    const int32_t* __restrict col_acc = sp.col_acc.data();
    const int32_t* __restrict col_w = sp.col_w.data();
    const int32_t* __restrict yptr = sp.yptr.data();
    const Tap* __restrict ytaps = sp.ytaps.data();
    int32_t* __restrict events = sp.events.data();
    const int64_t w = a.w, h = a.h, kh = a.kh;
    std::fill(sp.accp.begin(), sp.accp.end(), int16_t(0));
    for (int64_t c = 0; c < a.c; ++c) {
        const int8_t* xc = xt + c * hw;
        const int16_t* wc = sp.wwin.data() + c * kh * s * span;
        int32_t* cnt = a.in_count ? a.in_count + c * hw : nullptr;
        for (int64_t y = 0; y < h; ++y) {
            const Tap* ty0 = ytaps + yptr[y];
            const Tap* ty1 = ytaps + yptr[y + 1];
            int32_t* crow = (cnt && y >= cy0 && y < cy1) ? cnt + y * w : nullptr;
            if (ty0 == ty1 && !crow) continue;
            const int8_t* row = xc + y * w;
            const int64_t ne = gather_nonzero<Vec>(row, w, events);
            for (int64_t e = 0; e < ne; ++e) {
                const int64_t xx = events[e];
                if (crow) ++crow[xx];
                const int64_t a_off = col_acc[xx], w_off = col_w[xx];
                for (const Tap* ty = ty0; ty < ty1; ++ty)
                    add_span_on<Vec, W512>(accp + ty->acc_off + a_off, wc + ty->w_off + w_off, span);
            }
        }
    }
}

template <bool Vec, int SPAN>
__attribute__((always_inline)) inline void run_span(const ConvLayerArgs& a, Work& wk) {
    SpanPlan sp(a);
    for (int64_t t = 0; t < a.steps; ++t) {
        span_accumulate<Vec, SPAN>(a, sp, a.x + t * a.c * a.h * a.w);
        // the soma reads the valid outputs of each row in place: neurons oy*Wo*M .. of (P, M)
        // (one pass per row instead of copying the rows into a (P, M) block first)
        for (int64_t oy = 0; oy < a.ho; ++oy)
            soma_step<int16_t, Vec>(a, sp.row(oy), a.wo * a.m, true, wk, oy * a.wo * a.m);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

}  // namespace
}  // namespace chip
