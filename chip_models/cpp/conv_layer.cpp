// A whole conv layer over all T steps in one call: accumulate, bias, requantize, soma, output.
//
// Arithmetic (the same as neurosim.intnet.run_reference, bit for bit):
//   acc[t, m, p]  = sat32(bias[m] + sum_{c, dy, dx} x[t, c, y, x] * w[m, c, dy, dx])
//   ANN (soma 0-2): out = act(sat8(rounding_shift_right(acc, shift)))
//   SNN (soma 3):   out = spikes of the integer LIF driven by sat32(rounding_shift_right(acc, shift)),
//                   state (v, refractory counter) from zero, carried across the T steps.
// The fan-in C*kh*kw is at most 65536, so every partial sum fits int32 (|sum| <= 2^30). When the
// input holds only 0/1 (spikes), every partial sum of output m is a sum of some of its weights,
// so |sum| <= sum_k |w[m, k]|; when that is at most 32767 for every m (always for a fan-in up to
// 255, usually far beyond), int16 accumulators are exact and twice as many fit a register.
//
// Four ways to accumulate one step (same bits), chosen per layer from the input and the measured
// activity (the cheapest by a count of vector operations; tests force each one):
//   events  only the active inputs: input (c, y, x) != 0 adds v * w[:, c, dy, dx] to the
//           accumulators of every output (oy, ox) it reaches (oy*s - pad + dy = y, same for x);
//           accumulators are position-major (P, M) so one tap is one contiguous M-vector add.
//           With int16 accumulators (run_span) one add per kernel row covers all the outputs of
//           the row the input reaches (L = ceil(kw/s) outputs × M, weights stored per residue).
//   plane   dense direct convolution: for every (m, c, dy, dx) the shifted input plane times
//           the weight is added to output plane m (channel-major (M, P), vectorized along ox;
//           on AVX2 with 0/1 inputs, int16 sums, stride 1 and M <= 4, run_plane_few: blocks of
//           8 rows x 16 outputs in registers, one mask AND + add per tap).
//   lut     0/1 inputs, output-stationary: the spikes of 8 taps (channels × columns of a kernel
//           row) form a byte that indexes a table of the sums of their weights (run_lut; on
//           AVX2 with C % 8 == 0 table-major: lut_pass16 for M == 16, up to three tables per
//           pass over the positions, lut_pass_bytes for other multiples of 16, or a separate
//           loop for M == 1, lut_step_m1).
//   gemm    int8 activations: im2col of the step (8-byte row moves) + the dense int8 MAC; on
//           AVX2 with M % 8 == 0 and M <= 32, run_gemm_pairs: int16 patch pairs broadcast
//           against weight pairs (vpmaddwd), the position's M accumulators in registers; for
//           inputs in 0..127 int8 quads (vpmaddubsw, exact there; one vpdpbusd per quad on the
//           avx512vnni and amx paths) read in place without im2col (run_gemm_quads_hwc for
//           C % 4 == 0, run_gemm_quads_rows otherwise).
// The soma then runs on the step's accumulators in one fused AVX2 pass (soma.h; scalar bodies
// otherwise; a shorter LIF pass when its clamps provably cannot act), and the spikes or
// activations are written channel-major (T, M, Ho, Wo).
// Per-input and per-output nonzero counts over the T steps feed the timing model (active inputs
// per core, packets per route).
// Threads (conv_layer_threads): the plan (mode, int16, 0/1) is made once from the whole input;
// then blocks of output rows (or, in lut mode with M % 16B == 0, blocks of 16k output channels)
// run as ordinary layer calls on a persistent pool (cpp/include/neurosim/thread_pool.h), each writing disjoint
// outputs and counts: the same bits as one thread.
#include <neurosim/simd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "conv_common.h"
#include "conv_lut.h"
#include "conv_plane_few.h"
#include "conv_span.h"
#include "kernels.h"
#include "soma.h"
#include <neurosim/thread_pool.h>

namespace chip {

namespace {

template <typename Acc, bool Bin, int MS, bool Vec>
__attribute__((always_inline)) inline void run_events(const ConvLayerArgs& a, Work& wk) {
    const int64_t m = a.m, p_out = a.ho * a.wo, n = m * p_out, hw = a.h * a.w;
    // widened weights (C, kh, kw, M): the fan-out of one input through one tap is contiguous
    std::vector<Acc> wt(a.c * a.kh * a.kw * m);
    for (int64_t j = 0; j < m; ++j)
        for (int64_t e = 0; e < a.c * a.kh * a.kw; ++e) wt[e * m + j] = a.weight[j * a.c * a.kh * a.kw + e];
    std::vector<int32_t> yptr, xptr;
    std::vector<Tap> ytaps, xtaps;
    axis_taps(a.h, a.ho, a.kh, a.stride, a.pad, a.wo * m, a.kw * m, yptr, ytaps);
    axis_taps(a.w, a.wo, a.kw, a.stride, a.pad, m, m, xptr, xtaps);
    std::vector<Acc> acc(n);
    std::vector<int32_t> events(a.w + 32);
    for (int64_t t = 0; t < a.steps; ++t) {
        std::fill(acc.begin(), acc.end(), Acc(0));
        for (int64_t c = 0; c < a.c; ++c) {
            const int8_t* xc = a.x + (t * a.c + c) * hw;
            const Acc* wc = wt.data() + c * a.kh * a.kw * m;
            int32_t* cnt = a.in_count ? a.in_count + c * hw : nullptr;
            for (int64_t y = 0; y < a.h; ++y) {
                const Tap* ty0 = ytaps.data() + yptr[y];
                const Tap* ty1 = ytaps.data() + yptr[y + 1];
                const int8_t* row = xc + y * a.w;
                const int64_t ne = gather_nonzero<Vec>(row, a.w, events.data());
                for (int64_t e = 0; e < ne; ++e) {
                    const int64_t xx = events[e];
                    if (cnt) ++cnt[y * a.w + xx];
                    const Acc v = static_cast<Acc>(row[xx]);
                    const Tap* tx0 = xtaps.data() + xptr[xx];
                    const Tap* tx1 = xtaps.data() + xptr[xx + 1];
                    for (const Tap* ty = ty0; ty < ty1; ++ty) {
                        Acc* ar = acc.data() + ty->acc_off;
                        const Acc* wr = wc + ty->w_off;
                        for (const Tap* tx = tx0; tx < tx1; ++tx) {
#if NEUROSIM_X86
                            if constexpr (Vec) add_tap_avx2<Acc, Bin, MS>(ar + tx->acc_off, wr + tx->w_off, m, v);
                            else
#endif
                                add_tap<Acc, Bin, MS>(ar + tx->acc_off, wr + tx->w_off, m, v);
                        }
                    }
                }
            }
        }
        soma_step<Acc, Vec>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

template <typename Acc, bool Vec>
__attribute__((always_inline)) inline void run_plane(const ConvLayerArgs& a, Work& wk) {
    const int64_t m = a.m, p_out = a.ho * a.wo, n = m * p_out, hw = a.h * a.w, s = a.stride;
    const int64_t hp = a.h + 2 * a.pad, wp = std::max<int64_t>(a.w + 2 * a.pad, (a.wo - 1) * s + a.kw);
    const int64_t hpp = std::max<int64_t>(hp, (a.ho - 1) * s + a.kh);
    std::vector<Acc> xpad(a.c * hpp * wp, 0);
    std::vector<Acc> acc(n);
    std::vector<Acc> xs(a.wo);
    for (int64_t t = 0; t < a.steps; ++t) {
        for (int64_t c = 0; c < a.c; ++c) {  // zero-padded, widened copy of the step's input
            const int8_t* xc = a.x + (t * a.c + c) * hw;
            for (int64_t y = 0; y < a.h; ++y) {
                Acc* dst = xpad.data() + (c * hpp + y + a.pad) * wp + a.pad;
                for (int64_t xx = 0; xx < a.w; ++xx) dst[xx] = xc[y * a.w + xx];
            }
            if (a.in_count)
                for (int64_t i = 0; i < hw; ++i) a.in_count[c * hw + i] += xc[i] != 0;
        }
        std::fill(acc.begin(), acc.end(), Acc(0));
        for (int64_t j = 0; j < m; ++j) {
            Acc* aj = acc.data() + j * p_out;
            for (int64_t c = 0; c < a.c; ++c)
                for (int64_t dy = 0; dy < a.kh; ++dy)
                    for (int64_t dx = 0; dx < a.kw; ++dx) {
                        const Acc wv = a.weight[((j * a.c + c) * a.kh + dy) * a.kw + dx];
                        if (wv == 0) continue;
                        for (int64_t oy = 0; oy < a.ho; ++oy) {
                            Acc* __restrict ar = aj + oy * a.wo;
                            const Acc* __restrict xr = xpad.data() + (c * hpp + oy * s + dy) * wp + dx;
                            if (s == 1) {
                                for (int64_t ox = 0; ox < a.wo; ++ox) ar[ox] = static_cast<Acc>(ar[ox] + wv * xr[ox]);
                            } else {
                                for (int64_t ox = 0; ox < a.wo; ++ox) ar[ox] = static_cast<Acc>(ar[ox] + wv * xr[ox * s]);
                            }
                        }
                    }
        }
        soma_step<Acc, Vec>(a, acc.data(), n, false, wk);
        write_step(a, t, false, wk.spk.data(), wk);
    }
}

#if NEUROSIM_X86
// gemm with few output channels (AVX2, M % 8 == 0, M <= 32): the blocked dense MAC spends
// most of its time on horizontal sums when K is a conv's small fan-in (49..576), so here each
// output position's accumulators (M int32 = M/8 registers) stay in registers while its patch is
// read in pairs of int16: acc[j] += x[k] * w[j, k] + x[k+1] * w[j, k+1] for all j at once is one
// vpmaddwd of the broadcast pair (x[k], x[k+1]) with the weight pairs (w[:, k], w[:, k+1]).
// int8 values widened to int16 multiply exactly and a pair sum is at most 2^15 in magnitude, so
// nothing saturates; |sum| <= K * 2^14 <= 2^30 keeps every partial sum inside int32: the same
// sums as the dense MAC. PT positions at a time (independent accumulators, shared weight loads).
// Measured (reference network, load ~2.5): ann_conv1 / 2 / 3 0.038 / 0.021 / 0.037 -> 0.020 /
// 0.014 / 0.026 ms per frame.
template <int MV, int PT>
__attribute__((target("avx2"))) inline void pairs_mac_block(const int16_t* cols, int64_t p0, int64_t k2,
                                                             const int16_t* wq, int32_t* acc) {
    constexpr int64_t m = MV * 8;
    __m256i s[PT][MV];
    for (int r = 0; r < PT; ++r)
        for (int v = 0; v < MV; ++v) s[r][v] = _mm256_setzero_si256();
    const int16_t* x0 = cols + p0 * k2;
    for (int64_t q = 0; q < k2; q += 2, wq += 2 * m) {
        __m256i w[MV];
        for (int v = 0; v < MV; ++v) w[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + 16 * v));
        for (int r = 0; r < PT; ++r) {
            int32_t pair;
            std::memcpy(&pair, x0 + r * k2 + q, 4);
            const __m256i b = _mm256_set1_epi32(pair);
            for (int v = 0; v < MV; ++v) s[r][v] = _mm256_add_epi32(s[r][v], _mm256_madd_epi16(b, w[v]));
        }
    }
    for (int r = 0; r < PT; ++r)
        for (int v = 0; v < MV; ++v)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + (p0 + r) * m + 8 * v), s[r][v]);
}

template <int MV, int PT>
__attribute__((target("avx2"))) __attribute__((noinline)) void pairs_mac(const int16_t* cols, int64_t p_n,
                                                                        int64_t k2, const int16_t* wq,
                                                                        int32_t* acc) {
    int64_t p = 0;
    for (; p + PT <= p_n; p += PT) pairs_mac_block<MV, PT>(cols, p, k2, wq, acc);
    for (; p < p_n; ++p) pairs_mac_block<MV, 1>(cols, p, k2, wq, acc);
}

__attribute__((target("avx2"))) void run_gemm_pairs(const ConvLayerArgs& a, Work& wk) {
    const int64_t m = a.m, p_out = a.ho * a.wo, n = m * p_out, hw = a.h * a.w, s = a.stride;
    const int64_t k = a.c * a.kh * a.kw, k2 = (k + 1) / 2 * 2;
    const int64_t hp = std::max(a.h + 2 * a.pad, (a.ho - 1) * s + a.kh);
    const int64_t wpd = std::max(a.w + 2 * a.pad, (a.wo - 1) * s + a.kw);
    const int64_t rows = a.c * a.kh;
    std::vector<int32_t> idx(p_out * rows);  // start of every kernel row in the padded input
    for (int64_t oy = 0; oy < a.ho; ++oy)
        for (int64_t ox = 0; ox < a.wo; ++ox) {
            int32_t* r = idx.data() + (oy * a.wo + ox) * rows;
            for (int64_t ci = 0; ci < a.c; ++ci)
                for (int64_t i = 0; i < a.kh; ++i) *r++ = static_cast<int32_t>((ci * hp + oy * s + i) * wpd + ox * s);
        }
    // weight pairs wq[(q/2 * M + j) * 2 + e] = w[j, q + e] (0 past k)
    std::vector<int16_t> wq(k2 * m, 0);
    for (int64_t q = 0; q < k; ++q)
        for (int64_t j = 0; j < m; ++j) wq[(q / 2 * m + j) * 2 + q % 2] = a.weight[j * k + q];
    std::vector<int16_t> xpad(a.c * hp * wpd + 8, 0), cols(p_out * k2 + 8, 0);  // + 8: fixed 16-byte row copies
    std::vector<int32_t> acc(n);
    for (int64_t t = 0; t < a.steps; ++t) {
        const int8_t* xt = a.x + t * a.c * hw;
        for (int64_t ci = 0; ci < a.c; ++ci)
            for (int64_t y = 0; y < a.h; ++y) {
                int16_t* d = xpad.data() + (ci * hp + y + a.pad) * wpd + a.pad;
                const int8_t* src = xt + (ci * a.h + y) * a.w;
                int64_t xx = 0;
                for (; xx + 16 <= a.w; xx += 16)
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + xx),
                                        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + xx))));
                for (; xx < a.w; ++xx) d[xx] = src[xx];
            }
        wk.count_inputs(xt, a.in_count);
        const int32_t* e = idx.data();
        for (int64_t p = 0; p < p_out; ++p) {
            int16_t* dst = cols.data() + p * k2;
            if (a.kw <= 8) {  // one 16-byte move per kernel row; the values past kw are overwritten next
                for (int64_t r = 0; r < rows; ++r, ++e, dst += a.kw)
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(xpad.data() + *e)));
            } else {
                for (int64_t r = 0; r < rows; ++r, ++e, dst += a.kw) std::memcpy(dst, xpad.data() + *e, a.kw * 2);
            }
            if (k2 != k) cols[p * k2 + k] = 0;  // the odd fan-in's pad pairs with a zero weight
        }
        if (m == 8) pairs_mac<1, 4>(cols.data(), p_out, k2, wq.data(), acc.data());
        else if (m == 16) pairs_mac<2, 4>(cols.data(), p_out, k2, wq.data(), acc.data());
        else if (m == 24) pairs_mac<3, 2>(cols.data(), p_out, k2, wq.data(), acc.data());
        else pairs_mac<4, 2>(cols.data(), p_out, k2, wq.data(), acc.data());
        soma_step<int32_t, true>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

// gemm_pairs for inputs in 0..127 (frames, ReLU outputs) reads the patch in quads of int8:
// acc[j] += sum_{e<4} x[k+e] * w[j, k+e] for all j at once is one vpmaddubsw of the broadcast
// quad (unsigned) with the weight quads (signed) -> two int16 pair sums per j, then one vpmaddwd
// by ones -> int32. Exact: x <= 127 and |w| <= 128 bound a pair sum by 2 * 127 * 128 = 32512, so
// vpmaddubsw never saturates; the int32 sums are the dense MAC's (an exact sum in another order).
// Half the instructions per MAC of gemm_pairs, and no im2col: the quads are read in place.
// Measured side by side (reference network, load ~3; two A/Bs: quads with an im2col vs pairs,
// then in place vs with the im2col): ann_conv1 / 2 / 3 ~0.65 / 0.63 / 0.54 of gemm_pairs' time.
// C % 4 == 0: the quads straight from a channel-last copy of the input. With the channels of a pixel
// adjacent, the patch of position (oy, ox) is, for each tap (i, j), C/4 whole quads at pixel
// (oy*s + i, ox*s + j) of the padded copy, so no im2col is built; the weights are reordered to
// (i, j, c) quads. Same products and int32 sums as the im2col order (an exact sum in another order).
template <int MV, int PT>
__attribute__((target("avx2"))) inline void quads_hwc_block(const int8_t* px0, int64_t pstep, const int32_t* taps,
                                                            int64_t ntap, int64_t cq, const int8_t* wq, int32_t* acc) {
    constexpr int64_t m = MV * 8;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s[PT][MV];
    for (int r = 0; r < PT; ++r)
        for (int v = 0; v < MV; ++v) s[r][v] = _mm256_setzero_si256();
    for (int64_t tp = 0; tp < ntap; ++tp) {
        const int8_t* xq = px0 + taps[tp];
        for (int64_t q = 0; q < cq; ++q, wq += 4 * m) {
            __m256i w[MV];
            for (int v = 0; v < MV; ++v) w[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + 32 * v));
            for (int r = 0; r < PT; ++r) {
                int32_t quad;
                std::memcpy(&quad, xq + r * pstep + 4 * q, 4);
                const __m256i b = _mm256_set1_epi32(quad);
                for (int v = 0; v < MV; ++v)
                    s[r][v] = _mm256_add_epi32(s[r][v], _mm256_madd_epi16(_mm256_maddubs_epi16(b, w[v]), ones));
            }
        }
    }
    for (int r = 0; r < PT; ++r)
        for (int v = 0; v < MV; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * m + 8 * v), s[r][v]);
}

template <int MV, int PT>
__attribute__((target("avx2"))) __attribute__((noinline)) void quads_hwc(const ConvLayerArgs& a, const int8_t* x0,
                                                                        int64_t row_step, int64_t pstep,
                                                                        const int32_t* taps, int64_t ntap, int64_t cq,
                                                                        const int8_t* wq, int32_t* acc) {
    // position (oy, ox) reads quad q of tap tp at x0 + oy * row_step + ox * pstep + taps[tp] + 4q
    constexpr int64_t m = MV * 8;
    for (int64_t oy = 0; oy < a.ho; ++oy) {
        const int8_t* row = x0 + oy * row_step;
        int32_t* ar = acc + oy * a.wo * m;
        int64_t ox = 0;
        for (; ox + PT <= a.wo; ox += PT) quads_hwc_block<MV, PT>(row + ox * pstep, pstep, taps, ntap, cq, wq, ar + ox * m);
        for (; ox < a.wo; ++ox) quads_hwc_block<MV, 1>(row + ox * pstep, pstep, taps, ntap, cq, wq, ar + ox * m);
    }
}

__attribute__((target("avx2"))) inline void quads_dispatch(const ConvLayerArgs& a, const int8_t* x0, int64_t row_step,
                                                          int64_t pstep, const int32_t* taps, int64_t ntap, int64_t cq,
                                                          const int8_t* wq, int32_t* acc) {
    if (a.m == 8) quads_hwc<1, 4>(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
    else if (a.m == 16) quads_hwc<2, 4>(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
    else if (a.m == 24) quads_hwc<3, 2>(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
    else quads_hwc<4, 2>(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
}

// The same on the avx512vnni and amx paths: one vpdpbusd (u8 x s8, 4 products summed into each
// int32 lane, AVX512-VL on ymm) replaces vpmaddubsw + vpmaddwd + vpaddd; the same int32 sums.
// Measured on the reference network (AMD Zen 4, 1 thread, median of 300 calls, 2026-12-06):
// ann_conv1 / 2 / 3 9.0 / 6.6 / 10.4 -> 8.0 / 5.5 / 8.0 us per frame (the copies, soma and
// output writes around the MAC are unchanged).
#define NEUROSIM_QUADS_VNNI "avx2,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni"
template <int MV, int PT>
__attribute__((target(NEUROSIM_QUADS_VNNI))) inline void quads_hwc_block_vnni(const int8_t* px0, int64_t pstep,
                                                                             const int32_t* taps, int64_t ntap,
                                                                             int64_t cq, const int8_t* wq,
                                                                             int32_t* acc) {
    constexpr int64_t m = MV * 8;
    __m256i s[PT][MV];
    for (int r = 0; r < PT; ++r)
        for (int v = 0; v < MV; ++v) s[r][v] = _mm256_setzero_si256();
    for (int64_t tp = 0; tp < ntap; ++tp) {
        const int8_t* xq = px0 + taps[tp];
        for (int64_t q = 0; q < cq; ++q, wq += 4 * m) {
            __m256i w[MV];
            for (int v = 0; v < MV; ++v) w[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + 32 * v));
            for (int r = 0; r < PT; ++r) {
                int32_t quad;
                std::memcpy(&quad, xq + r * pstep + 4 * q, 4);
                const __m256i b = _mm256_set1_epi32(quad);
                for (int v = 0; v < MV; ++v) s[r][v] = _mm256_dpbusd_epi32(s[r][v], b, w[v]);
            }
        }
    }
    for (int r = 0; r < PT; ++r)
        for (int v = 0; v < MV; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * m + 8 * v), s[r][v]);
}

// (quads_hwc's loop again: the target attribute, which lets the block inline, cannot be a
// template parameter)
template <int MV, int PT>
__attribute__((target(NEUROSIM_QUADS_VNNI))) __attribute__((noinline)) void quads_hwc_vnni(
    const ConvLayerArgs& a, const int8_t* x0, int64_t row_step, int64_t pstep, const int32_t* taps, int64_t ntap,
    int64_t cq, const int8_t* wq, int32_t* acc) {
    constexpr int64_t m = MV * 8;
    for (int64_t oy = 0; oy < a.ho; ++oy) {
        const int8_t* row = x0 + oy * row_step;
        int32_t* ar = acc + oy * a.wo * m;
        int64_t ox = 0;
        for (; ox + PT <= a.wo; ox += PT)
            quads_hwc_block_vnni<MV, PT>(row + ox * pstep, pstep, taps, ntap, cq, wq, ar + ox * m);
        for (; ox < a.wo; ++ox) quads_hwc_block_vnni<MV, 1>(row + ox * pstep, pstep, taps, ntap, cq, wq, ar + ox * m);
    }
}

// the quads kernel of the call's path (a.mac_path): VNNI on avx512vnni / amx, else AVX2
__attribute__((target("avx2"))) inline void quads_on_path(const ConvLayerArgs& a, const int8_t* x0, int64_t row_step,
                                                         int64_t pstep, const int32_t* taps, int64_t ntap, int64_t cq,
                                                         const int8_t* wq, int32_t* acc) {
    if (a.mac_path != AVX512VNNI && a.mac_path != AMX) return quads_dispatch(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
    if (a.m == 8) quads_hwc_vnni<1, 4>(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
    else if (a.m == 16) quads_hwc_vnni<2, 4>(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
    else if (a.m == 24) quads_hwc_vnni<3, 2>(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
    else quads_hwc_vnni<4, 2>(a, x0, row_step, pstep, taps, ntap, cq, wq, acc);
}

// C % 4 != 0: the same from the channel-major padded copy, each kernel row (c, i) padded to
// ceil(kw/4) quads of consecutive input bytes (the bytes past kw meet zero weights; they are input
// values in 0..127 or padding, so the products are 0), again without an im2col.
__attribute__((target("avx2"))) void run_gemm_quads_rows(const ConvLayerArgs& a, Work& wk) {
    const int64_t m = a.m, c = a.c, n = m * a.ho * a.wo, hw = a.h * a.w, s = a.stride;
    const int64_t hp = std::max(a.h + 2 * a.pad, (a.ho - 1) * s + a.kh);
    const int64_t wpd = std::max(a.w + 2 * a.pad, (a.wo - 1) * s + a.kw);
    const int64_t cq = (a.kw + 3) / 4, ntap = c * a.kh;
    std::vector<int32_t> taps(ntap);  // start of kernel row (ci, i) from a position's first pixel
    for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t i = 0; i < a.kh; ++i) taps[ci * a.kh + i] = static_cast<int32_t>((ci * hp + i) * wpd);
    // wq[((tap * cq + q) * M + jm) * 4 + e] = w[jm, ci, i, 4q + e] (0 past kw)
    std::vector<int8_t> wq(ntap * cq * m * 4, 0);
    for (int64_t jm = 0; jm < m; ++jm)
        for (int64_t tp = 0; tp < ntap; ++tp)
            for (int64_t j = 0; j < a.kw; ++j)
                wq[((tp * cq + j / 4) * m + jm) * 4 + j % 4] = a.weight[(jm * ntap + tp) * a.kw + j];
    std::vector<int8_t> xpad(c * hp * wpd + 8, 0);  // + 8: the last row's quads past kw
    std::vector<int32_t> acc(n);
    for (int64_t t = 0; t < a.steps; ++t) {
        const int8_t* xt = a.x + t * c * hw;
        for (int64_t ci = 0; ci < c; ++ci)
            for (int64_t y = 0; y < a.h; ++y)
                std::memcpy(xpad.data() + (ci * hp + y + a.pad) * wpd + a.pad, xt + (ci * a.h + y) * a.w, a.w);
        wk.count_inputs(xt, a.in_count);
        quads_on_path(a, xpad.data(), s * wpd, s, taps.data(), ntap, cq, wq.data(), acc.data());
        soma_step<int32_t, true>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

// One input row of C channel planes (src + ci * plane) to channel-last d[x * C + ci], x < w.
// For C = 4, 8, 16 sixteen pixels at a time by byte, word and dword interleaves: the quad of
// channels 4q..4q+3 of each pixel first (unpack 8 then 16), then the quads of a pixel side by
// side (unpack 32, then 64 for C = 16); the rest byte by byte.
__attribute__((target("avx2"))) inline void row_to_channel_last(const int8_t* src, int64_t plane, int64_t c, int64_t w,
                                                              int8_t* __restrict d) {
    int64_t x = 0;
    if (c == 4 || c == 8 || c == 16) {
        for (; x + 16 <= w; x += 16) {
            __m128i quads[4][4];  // [q][k]: pixels x + 4k .. x + 4k + 3, channels 4q .. 4q + 3
            for (int64_t q = 0; q < c / 4; ++q) {
                __m128i r[4];
                for (int e = 0; e < 4; ++e)
                    r[e] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (4 * q + e) * plane + x));
                const __m128i lo01 = _mm_unpacklo_epi8(r[0], r[1]), hi01 = _mm_unpackhi_epi8(r[0], r[1]);
                const __m128i lo23 = _mm_unpacklo_epi8(r[2], r[3]), hi23 = _mm_unpackhi_epi8(r[2], r[3]);
                quads[q][0] = _mm_unpacklo_epi16(lo01, lo23);
                quads[q][1] = _mm_unpackhi_epi16(lo01, lo23);
                quads[q][2] = _mm_unpacklo_epi16(hi01, hi23);
                quads[q][3] = _mm_unpackhi_epi16(hi01, hi23);
            }
            int8_t* o = d + x * c;
            for (int k = 0; k < 4; ++k) {  // 4 pixels: 4 * C bytes
                if (c == 4) {
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16 * k), quads[0][k]);
                } else if (c == 8) {
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 32 * k), _mm_unpacklo_epi32(quads[0][k], quads[1][k]));
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 32 * k + 16), _mm_unpackhi_epi32(quads[0][k], quads[1][k]));
                } else {
                    const __m128i a0 = _mm_unpacklo_epi32(quads[0][k], quads[1][k]), a1 = _mm_unpackhi_epi32(quads[0][k], quads[1][k]);
                    const __m128i b0 = _mm_unpacklo_epi32(quads[2][k], quads[3][k]), b1 = _mm_unpackhi_epi32(quads[2][k], quads[3][k]);
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 64 * k), _mm_unpacklo_epi64(a0, b0));
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 64 * k + 16), _mm_unpackhi_epi64(a0, b0));
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 64 * k + 32), _mm_unpacklo_epi64(a1, b1));
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 64 * k + 48), _mm_unpackhi_epi64(a1, b1));
                }
            }
        }
    }
    for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t xx = x; xx < w; ++xx) d[xx * c + ci] = src[ci * plane + xx];
}

__attribute__((target("avx2"))) void run_gemm_quads_hwc(const ConvLayerArgs& a, Work& wk) {
    const int64_t m = a.m, c = a.c, n = m * a.ho * a.wo, hw = a.h * a.w, s = a.stride;
    const int64_t hp = std::max(a.h + 2 * a.pad, (a.ho - 1) * s + a.kh);
    const int64_t wpd = std::max(a.w + 2 * a.pad, (a.wo - 1) * s + a.kw);
    std::vector<int32_t> taps(a.kh * a.kw);  // offset of tap (i, j) from a position's first pixel
    for (int64_t i = 0; i < a.kh; ++i)
        for (int64_t j = 0; j < a.kw; ++j) taps[i * a.kw + j] = static_cast<int32_t>((i * wpd + j) * c);
    // weight quads wq[((tap * C/4 + q) * M + jm) * 4 + e] = w[jm, 4q + e, i, j]
    std::vector<int8_t> wq(a.kh * a.kw * c * m);
    for (int64_t jm = 0; jm < m; ++jm)
        for (int64_t ci = 0; ci < c; ++ci)
            for (int64_t tp = 0; tp < a.kh * a.kw; ++tp)
                wq[((tp * (c / 4) + ci / 4) * m + jm) * 4 + ci % 4] = a.weight[(jm * c + ci) * a.kh * a.kw + tp];
    std::vector<int8_t> xh(hp * wpd * c + 4, 0);  // channel-last padded copy (the padding stays zero)
    std::vector<int32_t> acc(n);
    for (int64_t t = 0; t < a.steps; ++t) {
        const int8_t* xt = a.x + t * c * hw;
        for (int64_t y = 0; y < a.h; ++y) {
            row_to_channel_last(xt + y * a.w, hw, c, a.w, xh.data() + ((y + a.pad) * wpd + a.pad) * c);
        }
        wk.count_inputs(xt, a.in_count);
        quads_on_path(a, xh.data(), s * wpd * c, s * c, taps.data(), a.kh * a.kw, c / 4, wq.data(), acc.data());
        soma_step<int32_t, true>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

#endif  // NEUROSIM_X86

constexpr bool GEMM_PAIRS = true;

// gemm: dense inputs (int8 activations): per step the patches of a zero-padded copy of the input
// are copied kernel row by kernel row (start offsets computed once; intnet.im2col order),
// multiplied by the packed weights with the dense int8 MAC of kernels.cpp on the call's path
// (AVX2: its vpmaddubsw kernel when the inputs are >= 0; avx512vnni / avxvnni: vpdpbusd; amx:
// AMX-INT8 tiles), and the soma runs on the (P, M) int32 accumulators. Same sums as
// im2col + dense_mac.
template <bool Vec>
__attribute__((always_inline)) inline void run_gemm(const ConvLayerArgs& a, Work& wk, bool nonneg) {
#if NEUROSIM_X86
    if constexpr (Vec) {
        if (a.m % 8 == 0 && a.m <= 32 && GEMM_PAIRS && nonneg)
            return a.c % 4 == 0 ? run_gemm_quads_hwc(a, wk) : run_gemm_quads_rows(a, wk);
        if (a.m % 8 == 0 && a.m <= 32 && GEMM_PAIRS) return run_gemm_pairs(a, wk);
    }
#endif
    const int64_t m = a.m, p_out = a.ho * a.wo, n = m * p_out, hw = a.h * a.w, s = a.stride;
    const int64_t k = a.c * a.kh * a.kw;
    const int64_t hp = std::max(a.h + 2 * a.pad, (a.ho - 1) * s + a.kh);
    const int64_t wp = std::max(a.w + 2 * a.pad, (a.wo - 1) * s + a.kw);
    // start of every kernel row (position, ci, i) in the padded input; a row is kw contiguous bytes
    const int64_t rows = a.c * a.kh;
    std::vector<int32_t> idx(p_out * rows);
    for (int64_t oy = 0; oy < a.ho; ++oy)
        for (int64_t ox = 0; ox < a.wo; ++ox) {
            int32_t* r = idx.data() + (oy * a.wo + ox) * rows;
            for (int64_t ci = 0; ci < a.c; ++ci)
                for (int64_t i = 0; i < a.kh; ++i) *r++ = static_cast<int32_t>((ci * hp + oy * s + i) * wp + ox * s);
        }
    // the dense MAC of the call's path: AVX2, VNNI (u8 x s8 vpdpbusd) or AMX-INT8 tiles
    const PackedWeights pw = pack_weights(a.weight, m, k, Vec ? (a.mac_path == SCALAR ? AVX2 : a.mac_path) : SCALAR);
    std::vector<int8_t> xpad(a.c * hp * wp + 8, 0), cols(p_out * k + 8);  // + 8: fixed 8-byte row copies
    std::vector<int32_t> acc(n);
    for (int64_t t = 0; t < a.steps; ++t) {
        const int8_t* xt = a.x + t * a.c * hw;
        for (int64_t ci = 0; ci < a.c; ++ci)
            for (int64_t y = 0; y < a.h; ++y)
                std::memcpy(xpad.data() + (ci * hp + y + a.pad) * wp + a.pad, xt + (ci * a.h + y) * a.w, a.w);
        wk.count_inputs(xt, a.in_count);
        const int8_t* src = xpad.data();
        int8_t* dst = cols.data();
        const int64_t nrows = p_out * rows;
        if (a.kw <= 8) {  // one 8-byte move per kernel row; the bytes past kw are overwritten next
            for (int64_t e = 0; e < nrows; ++e, dst += a.kw) std::memcpy(dst, src + idx[e], 8);
        } else {
            for (int64_t e = 0; e < nrows; ++e, dst += a.kw) std::memcpy(dst, src + idx[e], a.kw);
        }
        dense_mac(pw, cols.data(), p_out, nullptr, acc.data());
        soma_step<int32_t, Vec>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

#if NEUROSIM_X86
// Nonzero count and unsigned maximum of x[0, n) in 32-byte blocks; i0 = the bytes done.
__attribute__((target("avx2"))) inline void scan_avx2(const int8_t* x, int64_t n, int64_t& nnz, uint8_t& umax,
                                                      int64_t& i0) {
    // all in vector registers: min(b, 1) is 1 for a nonzero byte, and vpsadbw sums those bytes
    // into four 64-bit lanes (no movemask + popcnt chain per block)
    __m256i mx = _mm256_setzero_si256(), cnt = mx;
    const __m256i one = _mm256_set1_epi8(1), zero = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
        mx = _mm256_max_epu8(mx, b);
        cnt = _mm256_add_epi64(cnt, _mm256_sad_epu8(_mm256_min_epu8(b, one), zero));
    }
    alignas(32) uint8_t lanes[32];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), mx);
    for (uint8_t v : lanes) umax = std::max(umax, v);
    alignas(32) int64_t sums[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums), cnt);
    nnz += sums[0] + sums[1] + sums[2] + sums[3];
    i0 = i;
}

#endif  // NEUROSIM_X86

// What a layer call runs: the accumulation mode, int16 accumulators, 0/1 inputs (from one
// scan of the whole input, so every row block of a threaded call runs the same way).
struct Plan {
    int mode;
    bool i16, binary;
    bool nonneg;  // every input in 0..127 (gemm: the exact vpmaddubsw quads)
};

template <bool Vec>
__attribute__((always_inline)) inline Plan plan_layer(const ConvLayerArgs& a) {
    const int64_t total = a.steps * a.c * a.h * a.w, fan_in = a.c * a.kh * a.kw;
    int64_t nnz = 0;
    uint8_t umax = 0;  // largest input byte as unsigned: <= 1 means 0/1 inputs
    int64_t i0 = 0;
#if NEUROSIM_X86
    if constexpr (Vec) scan_avx2(a.x, total, nnz, umax, i0);
#endif
    for (int64_t i = i0; i < total; ++i) {
        nnz += a.x[i] != 0;
        umax = std::max(umax, static_cast<uint8_t>(a.x[i]));
    }
    const bool binary = umax <= 1;
    // int16 accumulators are exact when no partial sum can leave int16: with 0/1 inputs every
    // partial sum of output m is bounded by sum_k |w[m, k]| (at most 128 * fan-in).
    int64_t l1_max = 0;
    for (int64_t j = 0; j < a.m; ++j) {
        int64_t l1 = 0;
        for (int64_t e = 0; e < fan_in; ++e) l1 += std::abs(static_cast<int32_t>(a.weight[j * fan_in + e]));
        l1_max = std::max(l1_max, l1);
    }
    const bool i16 = binary && l1_max <= 32767;
    const int64_t lanes = (Vec ? 32 : 16) / (i16 ? 2 : 4);
    int mode = a.mode;
    if (mode == 2 && !i16) mode = 0;  // the tables hold int16 sums of 0/1 patterns only
    if (mode < 0 && !binary) mode = 3;  // int8 activations: im2col + the dense MAC
    if (mode < 0) {  // operations of each way (vector adds), measured constants for the overheads
        const double taps = static_cast<double>(a.kh) * a.kw / static_cast<double>(a.stride * a.stride);
        double events = nnz * taps * ((a.m + lanes - 1) / lanes) * 3.0 + 0.5 * nnz;
        if (i16) {  // spans: per active input and kernel row, one add of L*M int16 (run_span)
            const int64_t span = (a.kw + a.stride - 1) / a.stride * a.m;
            events = nnz * (static_cast<double>(a.kh) / a.stride) * ((span + 15) / 16) * 3.0 + 0.5 * nnz;
        }
        double plane = static_cast<double>(a.steps) * a.m * fan_in * a.ho * ((a.wo + lanes - 1) / lanes) *
                             (a.stride == 1 ? 4.0 : 16.0 * a.stride);  // per-row overheads: measured ~4x an event tap
        if (Vec && plane_few_fits(a, i16))  // run_plane_few: 3 instructions per tap and 16 outputs
            plane = static_cast<double>(a.steps) * a.m * fan_in * ((a.ho + 7) / 8 * 8) * ((a.wo + 15) / 16) * 1.0;
        mode = events <= plane ? 0 : 1;
        if (i16) {
            const LutShape ls(a);
            // per position and table: the table adds (16 lanes, scalar below 8 outputs) and the
            // pattern's offset (1; 3.5 when the groups are not whole bytes, C % 8 != 0)
            const double lut = static_cast<double>(a.steps) * a.ho * a.wo * ls.ntab *
                               ((a.m % 8 ? a.m * 0.5 : (a.m + 15) / 16) + (a.c % 8 ? 3.5 : 1.0));
            if (lut < std::min(events, plane)) mode = 2;
        }
    }
    return Plan{mode, i16, binary, umax <= 127};
}

template <bool Vec>
__attribute__((always_inline)) inline void run_layer(const ConvLayerArgs& a, const Plan& pl) {
    const int mode = pl.mode;
    const bool i16 = pl.i16, binary = pl.binary;
    Work wk;
    wk.init(a);
    if (mode == 3) {
        run_gemm<Vec>(a, wk, pl.nonneg);
    } else if (mode == 2) {
        run_lut<Vec>(a, wk);
    } else if (mode == 1) {
#if NEUROSIM_X86
        if constexpr (Vec) {
            if (plane_few_fits(a, i16)) {
                run_plane_few(a, wk);
                wk.flush_counts(a.out_count);
                wk.flush_inputs(a.in_count);
                return;
            }
        }
#endif
        if (i16) run_plane<int16_t, Vec>(a, wk);
        else run_plane<int32_t, Vec>(a, wk);
    } else if (i16) {
        const int64_t span = (a.kw + a.stride - 1) / a.stride * a.m;
        if (span == 32) run_span<Vec, 32>(a, wk);  // 7x7 stride 2 with 8 outputs (L = 4)
        else if (span == 48) run_span<Vec, 48>(a, wk);  // 3x3 stride 1 with 16 outputs
        else run_span<Vec, 0>(a, wk);
    } else if (binary) {
        if (a.m == 8) run_events<int32_t, true, 8, Vec>(a, wk);
        else run_events<int32_t, true, 0, Vec>(a, wk);
    } else {
        run_events<int32_t, false, 0, Vec>(a, wk);
    }
    wk.flush_counts(a.out_count);
    wk.flush_inputs(a.in_count);
}

Plan plan_scalar(const ConvLayerArgs& a) { return plan_layer<false>(a); }
void run_scalar(const ConvLayerArgs& a, const Plan& pl) { run_layer<false>(a, pl); }
#if NEUROSIM_X86
__attribute__((target("avx2"))) Plan plan_avx2(const ConvLayerArgs& a) { return plan_layer<true>(a); }
__attribute__((target("avx2"))) void run_avx2(const ConvLayerArgs& a, const Plan& pl) { run_layer<true>(a, pl); }
#else  // no x86 paths: the vector entry points are the scalar ones (never chosen: cpu_has_avx2() is false)
Plan plan_avx2(const ConvLayerArgs& a) { return plan_scalar(a); }
void run_avx2(const ConvLayerArgs& a, const Plan& pl) { run_scalar(a, pl); }
#endif

__attribute__((always_inline)) inline void count_cols_body(const int8_t* values, int64_t steps, int64_t n,
                                                           int32_t* out) {
    for (int64_t t = 0; t < steps; ++t) {
        const int8_t* vt = values + t * n;
        for (int64_t j = 0; j < n; ++j) out[j] += vt[j] != 0;
    }
}
void count_cols_scalar(const int8_t* v, int64_t t, int64_t n, int32_t* o) { count_cols_body(v, t, n, o); }
#if NEUROSIM_X86
__attribute__((target("avx2"))) void count_cols_avx2(const int8_t* v, int64_t t, int64_t n, int32_t* o) {
    count_cols_body(v, t, n, o);
}
#else
void count_cols_avx2(const int8_t* v, int64_t t, int64_t n, int32_t* o) { count_cols_scalar(v, t, n, o); }
#endif

// in_count[c, y0:y1, :] += the number of steps x[t, c, y0:y1, :] is nonzero (rows of every plane).
template <bool Vec>
__attribute__((always_inline)) inline void count_rows_body(const ConvLayerArgs& a, int64_t y0, int64_t y1) {
    const int64_t hw = a.h * a.w, n = (y1 - y0) * a.w;
    for (int64_t t = 0; t < a.steps; ++t)
        for (int64_t c = 0; c < a.c; ++c) {
            const int8_t* x = a.x + (t * a.c + c) * hw + y0 * a.w;
            int32_t* o = a.in_count + c * hw + y0 * a.w;
            for (int64_t i = 0; i < n; ++i) o[i] += x[i] != 0;
        }
}
void count_rows_scalar(const ConvLayerArgs& a, int64_t y0, int64_t y1) { count_rows_body<false>(a, y0, y1); }
#if NEUROSIM_X86
__attribute__((target("avx2"))) void count_rows_avx2(const ConvLayerArgs& a, int64_t y0, int64_t y1) {
    count_rows_body<true>(a, y0, y1);
}
#else
void count_rows_avx2(const ConvLayerArgs& a, int64_t y0, int64_t y1) { count_rows_scalar(a, y0, y1); }
#endif

}  // namespace

int conv_layer(const ConvLayerArgs& args, int path) {
    ConvLayerArgs a = args;
    a.mac_path = path;
    const Plan pl = path == SCALAR ? plan_scalar(a) : plan_avx2(a);
    if (path == SCALAR) run_scalar(a, pl);
    else run_avx2(a, pl);
    return pl.mode | (pl.i16 ? 4 : 0);
}

// The lut mode with M a multiple of 16 per block: blocks of output channels instead of rows.
// Block b runs channels [m0, m1) on the whole input (no copy) with its own weights, bias and
// tables (half the tables' size each, and no table is built or read twice), writes those
// channels of every step through its own buffer and out_count[m0:m1] in place, and counts the
// input rows [H*b/B, H*(b+1)/B) into in_count.
int channel_blocks(const ConvLayerArgs& a, int path, int threads, int64_t blocks, const Plan& pl) {
    const int64_t p_out = a.ho * a.wo, fan_in = a.c * a.kh * a.kw;
    auto task = [&](int64_t b) {
        if (a.in_count) {
            if (path == SCALAR) count_rows_scalar(a, a.h * b / blocks, a.h * (b + 1) / blocks);
            else count_rows_avx2(a, a.h * b / blocks, a.h * (b + 1) / blocks);
        }
        const int64_t m0 = a.m * b / blocks, m1 = a.m * (b + 1) / blocks, mb = m1 - m0;
        thread_local std::vector<int8_t> os;
        if (os.size() < static_cast<size_t>(a.steps * mb * p_out)) os.resize(static_cast<size_t>(a.steps * mb * p_out));
        ConvLayerArgs sub = a;
        sub.m = mb;
        sub.weight = a.weight + m0 * fan_in;
        sub.bias = a.bias ? a.bias + m0 : nullptr;
        sub.out = os.data();
        sub.in_count = nullptr;
        sub.out_count = a.out_count ? a.out_count + m0 * p_out : nullptr;
        if (path == SCALAR) run_scalar(sub, pl);
        else run_avx2(sub, pl);
        for (int64_t t = 0; t < a.steps; ++t)
            std::memcpy(a.out + (t * a.m + m0) * p_out, &os[t * mb * p_out], mb * p_out);
    };
    neurosim::ThreadPool::instance().run(blocks, threads, task);
    return pl.mode | (pl.i16 ? 4 : 0);
}

// The layer split into blocks of output rows on the persistent thread pool (cpp/include/neurosim/thread_pool.h).
// Block b owns output rows [r0, r1) of every channel and step. Its input is the input rows
// [ya, yb) of every plane (one copy per plane), with ya = (r0 - e) * s, e = min(r0, ceil(pad / s)),
// and yb = min(H, (r1 - 1) * s - pad + kh): an ordinary layer call with the same padding whose
// output rows e .. e + rows - 1 read exactly the input rows that global rows r0 .. r1 - 1 read
// (the e rows above and any row below read the block's zero padding where the layer has data:
// they are computed and dropped). Each output neuron's accumulation and LIF state depend only
// on its own receptive field, the plan (mode, int16, 0/1) is made once from the whole input, and
// every mode gives the same bits, so the result equals the one-thread call bit for bit. Block b
// writes the disjoint output rows [r0, r1) of out and out_count, and counts the nonzeros of the
// input rows [H*b/B, H*(b+1)/B) into in_count.
int conv_layer_threads(const ConvLayerArgs& args, int path, int threads) {
    ConvLayerArgs a = args;
    a.mac_path = path;
    // the counts are the call's own: cleared here, then added to by the steps and blocks
    if (a.in_count) std::fill_n(a.in_count, a.c * a.h * a.w, 0);
    if (a.out_count) std::fill_n(a.out_count, a.m * a.ho * a.wo, 0);
    const int64_t blocks = std::min<int64_t>(threads, a.ho);
    if (blocks <= 1) return conv_layer(a, path);
    const Plan pl = path == SCALAR ? plan_scalar(a) : plan_avx2(a);
    const int64_t t_n = a.steps, c = a.c, h = a.h, w = a.w, s = a.stride, pad = a.pad;
    const int64_t m = a.m, ho = a.ho, wo = a.wo;
    if (pl.mode == 2 && m % (16 * blocks) == 0) return channel_blocks(a, path, threads, blocks, pl);
    if (pl.mode == 2 && m < 8) return conv_layer(a, path);  // (M = 1 tables: a row split measured slower)
    struct Rows {
        int64_t r0, r1, e, ya, hs, hos;
    };
    std::vector<Rows> geo(blocks);
    for (int64_t b = 0; b < blocks; ++b) {
        Rows& g = geo[b];
        g.r0 = ho * b / blocks; g.r1 = ho * (b + 1) / blocks;
        g.e = std::min<int64_t>(g.r0, (pad + s - 1) / s);
        g.ya = (g.r0 - g.e) * s;
        // a block whose rows only read the bottom padding (pad >= kh): run the layer in one call
        if (g.ya >= h) return conv_layer(a, path);
        g.hs = std::max(g.ya + 1, std::min(h, (g.r1 - 1) * s - pad + a.kh)) - g.ya;
        g.hos = (g.hs + 2 * pad - a.kh) / s + 1;
        if (g.hos < g.e + g.r1 - g.r0) return conv_layer(a, path);  // (cannot happen; kept as a guard)
    }
    auto task = [&](int64_t b) {
        if (a.in_count) {
            if (path == SCALAR) count_rows_scalar(a, h * b / blocks, h * (b + 1) / blocks);
            else count_rows_avx2(a, h * b / blocks, h * (b + 1) / blocks);
        }
        const Rows& g = geo[b];
        const int64_t r0 = g.r0, rows = g.r1 - g.r0, e = g.e, ya = g.ya, hs = g.hs, hos = g.hos;
        // per-thread scratch kept across calls: fresh buffers of this size would be new pages
        // (page faults) on every call
        thread_local std::vector<int8_t> xs, os;
        thread_local std::vector<int32_t> cs;
        if (xs.size() < static_cast<size_t>(t_n * c * hs * w)) xs.resize(static_cast<size_t>(t_n * c * hs * w));
        if (os.size() < static_cast<size_t>(t_n * m * hos * wo)) os.resize(static_cast<size_t>(t_n * m * hos * wo));
        if (a.out_count) cs.assign(static_cast<size_t>(m * hos * wo), 0);
        for (int64_t tc = 0; tc < t_n * c; ++tc) std::memcpy(&xs[tc * hs * w], a.x + (tc * h + ya) * w, hs * w);
        ConvLayerArgs sub = a;
        sub.x = xs.data();
        sub.h = hs; sub.ho = hos;
        sub.out = os.data();
        sub.in_count = nullptr;
        sub.out_count = a.out_count ? cs.data() : nullptr;
        if (path == SCALAR) run_scalar(sub, pl);
        else run_avx2(sub, pl);
        for (int64_t tj = 0; tj < t_n * m; ++tj)
            std::memcpy(a.out + (tj * ho + r0) * wo, &os[(tj * hos + e) * wo], rows * wo);
        if (a.out_count)
            for (int64_t j = 0; j < m; ++j) {
                int32_t* dst = a.out_count + (j * ho + r0) * wo;
                const int32_t* src = &cs[(j * hos + e) * wo];
                for (int64_t i = 0; i < rows * wo; ++i) dst[i] += src[i];
            }
    };
    neurosim::ThreadPool::instance().run(blocks, threads, task);
    return pl.mode | (pl.i16 ? 4 : 0);
}

namespace {

// window_counts' integral image ii[y][x] = sum of the channels' plane[0:y, 0:x] ((h + 1) x (w + 1),
// row 0 and column 0 zero): the channel sum and the running column sums run across a row (they
// vectorize), the prefix along the row is the only serial sum
__attribute__((always_inline)) inline void integral_image(const int32_t* count, int64_t h, int64_t w, int64_t c0,
                                                          int64_t c1, int64_t* ii) {
    std::fill(ii, ii + w + 1, int64_t{0});
    std::vector<int64_t> col(w, 0);  // col[x] = sum of plane[0:y+1, x]
    for (int64_t y = 0; y < h; ++y) {
        for (int64_t ci = c0; ci < c1; ++ci) {
            const int32_t* src = count + (ci * h + y) * w;
            for (int64_t xx = 0; xx < w; ++xx) col[xx] += src[xx];
        }
        int64_t* row = ii + (y + 1) * (w + 1);
        int64_t run = 0;
        row[0] = 0;
        for (int64_t xx = 0; xx < w; ++xx) row[xx + 1] = run += col[xx];
    }
}

NEUROSIM_TARGET("avx2") void integral_image_avx2(const int32_t* count, int64_t h, int64_t w, int64_t c0, int64_t c1,
                                                 int64_t* ii) {
    integral_image(count, h, w, c0, c1, ii);
}

}  // namespace

void window_counts(const int32_t* count, int64_t c, int64_t h, int64_t w, int64_t c0, int64_t c1, int64_t kh,
                   int64_t kw, int64_t stride, int64_t pad, int64_t* out) {
    (void)c;
    const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
    // a window clipped to the plane is 4 lookups in the integral image (exact int64 sums, the
    // same as summing its taps)
    std::vector<int64_t> ii((h + 1) * (w + 1));
    if (NEUROSIM_CPU_SUPPORTS("avx2")) integral_image_avx2(count, h, w, c0, c1, ii.data());
    else integral_image(count, h, w, c0, c1, ii.data());
    for (int64_t oy = 0; oy < ho; ++oy) {
        const int64_t y0 = std::clamp<int64_t>(oy * stride - pad, 0, h), y1 = std::clamp<int64_t>(oy * stride - pad + kh, 0, h);
        for (int64_t ox = 0; ox < wo; ++ox) {
            const int64_t x0 = std::clamp<int64_t>(ox * stride - pad, 0, w), x1 = std::clamp<int64_t>(ox * stride - pad + kw, 0, w);
            out[oy * wo + ox] = ii[y1 * (w + 1) + x1] - ii[y0 * (w + 1) + x1] - ii[y1 * (w + 1) + x0] + ii[y0 * (w + 1) + x0];
        }
    }
}

namespace {

void max_pool_scalar(const int8_t* x, int64_t planes, int64_t h, int64_t w, int64_t k, int8_t* out, int64_t ox0) {
    const int64_t ho = h / k, wo = w / k;
    for (int64_t pl = 0; pl < planes; ++pl)
        for (int64_t oy = 0; oy < ho; ++oy)
            for (int64_t ox = ox0; ox < wo; ++ox) {
                int8_t mx = -128;
                for (int64_t i = 0; i < k; ++i)
                    for (int64_t j = 0; j < k; ++j) mx = std::max(mx, x[(pl * h + oy * k + i) * w + ox * k + j]);
                out[(pl * ho + oy) * wo + ox] = mx;
            }
}

#if NEUROSIM_X86
// 2 x 2 windows, 16 outputs per step: max of the two rows, then of each byte pair (the odd byte
// shifted onto the even one), the even bytes packed. Returns the outputs per row done.
__attribute__((target("avx2"))) int64_t max_pool2_avx2(const int8_t* x, int64_t planes, int64_t h, int64_t w,
                                                       int8_t* out) {
    const int64_t ho = h / 2, wo = w / 2, blocks = wo / 16;
    const __m256i lo_bytes = _mm256_set1_epi16(0x00ff);
    for (int64_t pl = 0; pl < planes; ++pl)
        for (int64_t oy = 0; oy < ho; ++oy) {
            const int8_t* r0 = x + (pl * h + 2 * oy) * w;
            int8_t* o = out + (pl * ho + oy) * wo;
            for (int64_t b = 0; b < blocks; ++b) {
                const __m256i m = _mm256_max_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + 32 * b)),
                                                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + w + 32 * b)));
                const __m256i pair = _mm256_and_si256(_mm256_max_epi8(m, _mm256_srli_epi16(m, 8)), lo_bytes);
                const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(pair, pair), 0x08);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16 * b), _mm256_castsi256_si128(packed));
            }
        }
    return blocks * 16;
}
#else
int64_t max_pool2_avx2(const int8_t*, int64_t, int64_t, int64_t, int8_t*) { return 0; }  // (never called)
#endif  // NEUROSIM_X86

}  // namespace

void group_sums(const int32_t* count, int64_t n, const int64_t* ptr, const int32_t* idx, int64_t groups, int64_t* out) {
    (void)n;  // idx entries are checked against n by the caller
    for (int64_t g = 0; g < groups; ++g) {
        int64_t s = 0;
        for (int64_t e = ptr[g]; e < ptr[g + 1]; ++e) s += count[idx[e]];
        out[g] = s;
    }
}

namespace {

void range_sums_scalar(const int32_t* count, const int64_t* ptr, const int64_t* starts, const int64_t* stops,
                       int64_t groups, int64_t* out) {
    for (int64_t g = 0; g < groups; ++g) {
        int64_t s = 0;
        for (int64_t r = ptr[g]; r < ptr[g + 1]; ++r)
            for (int64_t i = starts[r]; i < stops[r]; ++i) s += count[i];
        out[g] = s;
    }
}

#if NEUROSIM_X86
// each run's int32 counts widened to int64 8 at a time (two vpmovsxdq), its last < 8 scalar
__attribute__((target("avx2"))) void range_sums_avx2(const int32_t* count, const int64_t* ptr, const int64_t* starts,
                                                     const int64_t* stops, int64_t groups, int64_t* out) {
    for (int64_t g = 0; g < groups; ++g) {
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        int64_t s = 0;
        for (int64_t r = ptr[g]; r < ptr[g + 1]; ++r) {
            int64_t i = starts[r];
            for (; i + 8 <= stops[r]; i += 8) {
                a0 = _mm256_add_epi64(a0, _mm256_cvtepi32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(count + i))));
                a1 = _mm256_add_epi64(a1, _mm256_cvtepi32_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(count + i + 4))));
            }
            for (; i < stops[r]; ++i) s += count[i];
        }
        alignas(32) int64_t lanes[4];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(a0, a1));
        out[g] = s + lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
}
#else
void range_sums_avx2(const int32_t* count, const int64_t* ptr, const int64_t* starts, const int64_t* stops,
                     int64_t groups, int64_t* out) { range_sums_scalar(count, ptr, starts, stops, groups, out); }
#endif

}  // namespace

void range_sums(const int32_t* count, int64_t n, const int64_t* ptr, const int64_t* starts, const int64_t* stops,
                int64_t groups, int64_t* out) {
    (void)n;  // run bounds are checked against n by the caller
    if (NEUROSIM_CPU_SUPPORTS("avx2")) range_sums_avx2(count, ptr, starts, stops, groups, out);
    else range_sums_scalar(count, ptr, starts, stops, groups, out);
}

void max_pool(const int8_t* x, int64_t planes, int64_t h, int64_t w, int64_t k, int8_t* out, int path) {
    int64_t done = 0;
    if (path != SCALAR && k == 2) done = max_pool2_avx2(x, planes, h, w, out);
    if (done < w / k) max_pool_scalar(x, planes, h, w, k, out, done);
}

void count_nonzero_cols(const int8_t* values, int64_t steps, int64_t n, int32_t* out, int path) {
    if (path == SCALAR) count_cols_scalar(values, steps, n, out);
    else count_cols_avx2(values, steps, n, out);
}

}  // namespace chip
