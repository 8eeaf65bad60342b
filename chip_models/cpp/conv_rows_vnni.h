// The SNN chain's first stage as dense rows of VNNI dot products (AVX-512 VNNI + VBMI), for
// 0/1 inputs dense enough that the event-driven spans (conv_span.h) cost more.
//
// For output row oy, output column ox and channel j the accumulator is
//     acc[oy, ox, j] = sum_{c, dy, dx} w[j, c, dy, dx] * xp[c, oy*s + dy, ox*s + dx]
// over the zero-padded input xp (xp[c, y + pad, x + pad] = x[c, y, x]). The kernel row dx = 0 ..
// kw - 1 is cut into G = ceil(kw / 4) quads (dx = 4g .. 4g + 3, weights 0 past kw), so for 16
// consecutive columns ox0 .. ox0 + 15 one `vpdpbusd` adds, in int32 lane i,
//     sum_{e<4} xp[c, yp, (ox0 + i)*s + 4g + e] * w[j, c, dy, 4g + e]
// with the input quads ("Q", unsigned bytes, one `vpermb` of a 64-byte window of the padded row,
// built once per input row and step) and the four weights broadcast (signed bytes). Every
// output row costs C*kh*G*ceil(Wo/16)*M such instructions whatever the activity. Exact: the
// int32 sums are the span adds' sums in another order, and the chain's int16 condition
// (max_j sum |w[j]| <= 32767) bounds them, so they narrow to the int16 accumulators the soma
// reads, transposed to the position-major (Wo, M) rows of the span path.
// Conditions (rows_vnni_fits): M in {8, 16}, stride <= 4, kw <= 16, 0/1 inputs (the chain checks them).
#pragma once
#include <neurosim/simd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "conv_common.h"

namespace chip {
namespace {  // (internal linkage: each including .cpp gets its own copy)

inline bool rows_vnni_fits(const ConvLayerArgs& a) {
    return (a.m == 8 || a.m == 16) && a.stride >= 1 && a.stride <= 4 && a.kw <= 16;
}

// The fixed parts of one band's rows [r0, r1): weight quads, padded input rows, their quads,
// the int16 accumulators and byte counters of the input rows [c0, c1) the band counts.
struct RowsPlan {
    int64_t r0, r1, c0, c1;
    int64_t g_n, blocks, ny, xw, acc_row;
    std::vector<int32_t> wq;   // [(c * kh + dy) * G + g][j]: 4 weights as one int32
    std::vector<uint8_t> xpad; // [c][yl][xw]: padded input rows yp = r0*s + yl
    std::vector<uint8_t> q;    // [c][yl][g][block]: 64 bytes = 16 quads each
    std::vector<int16_t> acc;  // [(oy - r0)][blocks * 16][M]
    std::vector<uint8_t> cnt;  // [c][y - c0][w]: nonzero counts of the input since the last flush
    // rows of at most 64 pixels (one zmm) build their quads straight from the input row, with no
    // padded copy: quad window (g, b) = one masked vpermb of the row, byte 4i + e <- pixel
    // gather[(g * blocks + b) * 64 + 4i + e] where bit 4i + e of keep[g * blocks + b] is set
    // (simulate, reference network, one thread: 0.189 -> 0.183 ms per frame against the copy,
    // medians of six alternating runs, AMD Zen 4, 2026-12-06)
    bool direct;
    std::vector<uint8_t> gather;
    std::vector<uint64_t> keep;

    RowsPlan(const ConvLayerArgs& a, int64_t band_r0, int64_t band_r1, int64_t count_c0, int64_t count_c1)
        : r0(band_r0), r1(band_r1), c0(count_c0), c1(count_c1) {
        const int64_t s = a.stride, m = a.m;
        g_n = (a.kw + 3) / 4;
        blocks = (a.wo + 15) / 16;
        ny = r1 > r0 ? (r1 - 1 - r0) * s + a.kh : 0;
        // the window of the last block's last quad group starts at s*16*(blocks-1) + 4*(G-1)
        xw = std::max(a.pad + a.w, s * 16 * (blocks - 1) + 4 * (g_n - 1) + 64);
        acc_row = blocks * 16 * m;
        wq.assign(a.c * a.kh * g_n * m, 0);
        for (int64_t c = 0; c < a.c; ++c)
            for (int64_t dy = 0; dy < a.kh; ++dy)
                for (int64_t g = 0; g < g_n; ++g)
                    for (int64_t j = 0; j < m; ++j) {
                        uint32_t quad = 0;
                        for (int64_t e = 0; e < 4 && 4 * g + e < a.kw; ++e)
                            quad |= static_cast<uint32_t>(static_cast<uint8_t>(
                                        a.weight[((j * a.c + c) * a.kh + dy) * a.kw + 4 * g + e]))
                                    << (8 * e);
                        wq[((c * a.kh + dy) * g_n + g) * m + j] = static_cast<int32_t>(quad);
                    }
        direct = a.w <= 64;
        if (direct) {
            gather.assign(g_n * blocks * 64, 0);
            keep.assign(g_n * blocks, 0);
            for (int64_t g = 0; g < g_n; ++g)
                for (int64_t b = 0; b < blocks; ++b)
                    for (int64_t lane = 0; lane < 64; ++lane) {  // lane = 4i + e
                        const int64_t x = s * 16 * b + 4 * g + s * (lane / 4) + lane % 4 - a.pad;
                        if (x < 0 || x >= a.w) continue;
                        gather[(g * blocks + b) * 64 + lane] = static_cast<uint8_t>(x);
                        keep[g * blocks + b] |= uint64_t{1} << lane;
                    }
        } else {
            xpad.assign(a.c * ny * xw, 0);  // (rows and columns outside the input stay zero)
        }
        q.assign(a.c * ny * g_n * blocks * 64, 0);
        acc.assign((r1 - r0) * acc_row, 0);
        cnt.assign(a.c * (c1 - c0) * a.w, 0);
    }
    // output row oy's accumulators (Wo x M valid, position-major)
    const int16_t* row(int64_t oy) const { return acc.data() + (oy - r0) * acc_row; }
    int16_t* row(int64_t oy) { return acc.data() + (oy - r0) * acc_row; }

    // in_count[c, c0:c1, :] += the byte counters, which are then cleared
    void flush_counts(const ConvLayerArgs& a) {
        if (!a.in_count) return;
        const int64_t n = (c1 - c0) * a.w;
        for (int64_t c = 0; c < a.c; ++c) {
            int32_t* __restrict o = a.in_count + (c * a.h + c0) * a.w;
            const uint8_t* __restrict k = cnt.data() + c * n;
            for (int64_t i = 0; i < n; ++i) o[i] += k[i];
        }
        std::fill(cnt.begin(), cnt.end(), uint8_t(0));
    }
};

#if NEUROSIM_X86
#define NEUROSIM_ROWS_VNNI "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi"

// int32 sums of 16 columns × 8 channels (acc[k] = channel j0 + k) → int16, position-major:
// out[i * m + j0 + k] for column i (an 8 × 8 int16 transpose in each 128-bit half: columns 0-7
// in the low halves, 8-15 in the high ones).
__attribute__((target(NEUROSIM_ROWS_VNNI))) inline void store_transposed8(const __m512i* acc, int16_t* out,
                                                                         int64_t m) {
    __m256i r[8];
    for (int k = 0; k < 8; ++k) r[k] = _mm512_cvtepi32_epi16(acc[k]);
    const __m256i t0 = _mm256_unpacklo_epi16(r[0], r[1]), t1 = _mm256_unpackhi_epi16(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi16(r[2], r[3]), t3 = _mm256_unpackhi_epi16(r[2], r[3]);
    const __m256i t4 = _mm256_unpacklo_epi16(r[4], r[5]), t5 = _mm256_unpackhi_epi16(r[4], r[5]);
    const __m256i t6 = _mm256_unpacklo_epi16(r[6], r[7]), t7 = _mm256_unpackhi_epi16(r[6], r[7]);
    const __m256i u0 = _mm256_unpacklo_epi32(t0, t2), u1 = _mm256_unpackhi_epi32(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi32(t1, t3), u3 = _mm256_unpackhi_epi32(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi32(t4, t6), u5 = _mm256_unpackhi_epi32(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi32(t5, t7), u7 = _mm256_unpackhi_epi32(t5, t7);
    const __m256i v[8] = {_mm256_unpacklo_epi64(u0, u4), _mm256_unpackhi_epi64(u0, u4),
                          _mm256_unpacklo_epi64(u1, u5), _mm256_unpackhi_epi64(u1, u5),
                          _mm256_unpacklo_epi64(u2, u6), _mm256_unpackhi_epi64(u2, u6),
                          _mm256_unpacklo_epi64(u3, u7), _mm256_unpackhi_epi64(u3, u7)};
    for (int k = 0; k < 8; ++k) {  // v[k]: column k (low half), column 8 + k (high half)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k * m), _mm256_castsi256_si128(v[k]));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (8 + k) * m), _mm256_extracti128_si256(v[k], 1));
    }
}

// NB blocks of 16 columns from block b of output row oy, all M channels (NB * M = 16 int32
// accumulators in registers).
template <int M, int NB>
__attribute__((target(NEUROSIM_ROWS_VNNI))) inline void rows_block(const ConvLayerArgs& a, RowsPlan& rp, int64_t oy,
                                                                   int64_t b) {
    __m512i acc[NB][M];
    for (int nb = 0; nb < NB; ++nb)
        for (int j = 0; j < M; ++j) acc[nb][j] = _mm512_setzero_si512();
    const int64_t yl0 = (oy - rp.r0) * a.stride, gb = rp.g_n * rp.blocks;
    for (int64_t c = 0; c < a.c; ++c)
        for (int64_t dy = 0; dy < a.kh; ++dy) {
            const uint8_t* qrow = rp.q.data() + ((c * rp.ny + yl0 + dy) * gb + b) * 64;
            const int32_t* wrow = rp.wq.data() + (c * a.kh + dy) * rp.g_n * M;
            for (int64_t g = 0; g < rp.g_n; ++g) {
                __m512i qv[NB];
                for (int nb = 0; nb < NB; ++nb) qv[nb] = _mm512_loadu_si512(qrow + (g * rp.blocks + nb) * 64);
                for (int j = 0; j < M; ++j) {
                    const __m512i wv = _mm512_set1_epi32(wrow[g * M + j]);
                    for (int nb = 0; nb < NB; ++nb) acc[nb][j] = _mm512_dpbusd_epi32(acc[nb][j], qv[nb], wv);
                }
            }
        }
    int16_t* out = rp.row(oy) + b * 16 * M;
    for (int nb = 0; nb < NB; ++nb)
        for (int j0 = 0; j0 < M; j0 += 8) store_transposed8(acc[nb] + j0, out + nb * 16 * M + j0, M);
}

// One step of the band: rp's accumulators = the conv of the 0/1 input step xt (C, H, W) for its
// output rows, and its byte counters += the input rows it counts.
__attribute__((target(NEUROSIM_ROWS_VNNI))) __attribute__((noinline)) void rows_vnni_step(const ConvLayerArgs& a,
                                                                                         RowsPlan& rp,
                                                                                         const int8_t* xt) {
    const int64_t s = a.stride, hw = a.h * a.w, gb = rp.g_n * rp.blocks;
    if (rp.direct) {  // (padding rows: their quads stay zero)
        const __mmask64 pixels = a.w >= 64 ? ~__mmask64{0} : (__mmask64{1} << a.w) - 1;
        for (int64_t c = 0; c < a.c; ++c)
            for (int64_t yl = 0; yl < rp.ny; ++yl) {
                const int64_t y = rp.r0 * s + yl - a.pad;
                if (y < 0 || y >= a.h) continue;
                const __m512i row = _mm512_maskz_loadu_epi8(pixels, xt + c * hw + y * a.w);
                uint8_t* qrow = rp.q.data() + (c * rp.ny + yl) * gb * 64;
                for (int64_t k = 0; k < gb; ++k)
                    _mm512_storeu_si512(qrow + k * 64, _mm512_maskz_permutexvar_epi8(
                                                           rp.keep[k], _mm512_loadu_si512(rp.gather.data() + k * 64), row));
            }
    } else {
        // all padded rows first, then their quads: a quad window read right after its row's copy
        // overlaps the copy's stores misaligned, so store forwarding fails and the load waits for
        // them (58 % of this function's samples; simulate one thread 0.203 -> 0.194 ms per frame,
        // medians of six alternating runs, AMD Zen 4, 2026-12-06)
        alignas(64) uint8_t pattern[64];  // lane i, byte e reads window byte s*i + e
        for (int i = 0; i < 16; ++i)
            for (int e = 0; e < 4; ++e) pattern[4 * i + e] = static_cast<uint8_t>(s * i + e);
        const __m512i idx = _mm512_load_si512(pattern);
        for (int64_t c = 0; c < a.c; ++c)
            for (int64_t yl = 0; yl < rp.ny; ++yl) {
                const int64_t y = rp.r0 * s + yl - a.pad;
                if (y >= 0 && y < a.h)  // (a padding row stays zero, and so do its quads)
                    std::memcpy(rp.xpad.data() + (c * rp.ny + yl) * rp.xw + a.pad, xt + c * hw + y * a.w, a.w);
            }
        for (int64_t c = 0; c < a.c; ++c)
            for (int64_t yl = 0; yl < rp.ny; ++yl) {
                const int64_t y = rp.r0 * s + yl - a.pad;
                if (y < 0 || y >= a.h) continue;
                const uint8_t* xrow = rp.xpad.data() + (c * rp.ny + yl) * rp.xw;
                uint8_t* qrow = rp.q.data() + (c * rp.ny + yl) * gb * 64;
                for (int64_t g = 0; g < rp.g_n; ++g)
                    for (int64_t b = 0; b < rp.blocks; ++b)
                        _mm512_storeu_si512(qrow + (g * rp.blocks + b) * 64,
                                            _mm512_permutexvar_epi8(idx, _mm512_loadu_si512(xrow + s * 16 * b + 4 * g)));
            }
    }
    for (int64_t oy = rp.r0; oy < rp.r1; ++oy) {
        if (a.m == 8) {
            int64_t b = 0;
            for (; b + 2 <= rp.blocks; b += 2) rows_block<8, 2>(a, rp, oy, b);
            if (b < rp.blocks) rows_block<8, 1>(a, rp, oy, b);
        } else {
            for (int64_t b = 0; b < rp.blocks; ++b) rows_block<16, 1>(a, rp, oy, b);
        }
    }
    if (a.in_count) {
        const int64_t n = (rp.c1 - rp.c0) * a.w;
        for (int64_t c = 0; c < a.c; ++c) {
            uint8_t* __restrict k = rp.cnt.data() + c * n;
            const uint8_t* __restrict x = reinterpret_cast<const uint8_t*>(xt + c * hw + rp.c0 * a.w);
            for (int64_t i = 0; i < n; ++i) k[i] = static_cast<uint8_t>(k[i] + x[i]);  // (0/1 inputs)
        }
    }
}
#endif  // NEUROSIM_X86

}  // namespace
}  // namespace chip
