// The lut mode (spike-pattern tables, run_lut). Used by conv_layer.cpp and, step by step on
// bit images, by snn_chain.cpp.
#pragma once
#include <neurosim/simd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "conv_common.h"

namespace chip {
namespace {  // (internal linkage: each including .cpp gets its own copy)

// lut: output-stationary accumulation through tables of spike patterns (0/1 inputs, int16
// accumulators). Each step the input becomes a zero-padded bit image, row by row, with the C
// channel bits of a pixel adjacent: bit ((y + pad) * Wpp + x + pad) * C + c of the image. Kernel row
// dy of output (oy, ox) then reads the kw*C consecutive bits of image row oy*s + dy that start at
// bit ox*s*C; they are cut into groups of 8 taps (c, dx), and each group's byte indexes a table of
// the weight sums of all 256 patterns of its taps (built once per call, one M-vector add per
// entry). One output position costs kh*ceil(kw*C/8) table adds of M int16 (18 for a 3x3 layer
// with 16 input channels, 14 for 7x7 with 2, against ~0.1-0.3 of its fan-in in scattered taps for
// events) and writes its accumulators once. Exact for the same reason as int16 events: every
// partial sum is a sum of some of the output's weights.
template <bool Vec>
__attribute__((always_inline)) inline void lut_sum(const int16_t* lut, const int32_t* offs, int64_t ntab, int64_t m,
                                                   int16_t* out);

template <>
__attribute__((always_inline)) inline void lut_sum<false>(const int16_t* lut, const int32_t* offs, int64_t ntab,
                                                          int64_t m, int16_t* out) {
    for (int64_t j = 0; j < m; ++j) {
        int16_t s = 0;
        for (int64_t k = 0; k < ntab; ++k) s = static_cast<int16_t>(s + lut[offs[k] + j]);
        out[j] = s;
    }
}

#if NEUROSIM_X86
template <>
__attribute__((target("avx2"))) inline void lut_sum<true>(const int16_t* lut, const int32_t* offs, int64_t ntab,
                                                          int64_t m, int16_t* out) {
    int64_t j = 0;
    for (; j + 16 <= m; j += 16) {
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        int64_t k = 0;
        for (; k + 2 <= ntab; k += 2) {
            s0 = _mm256_add_epi16(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + offs[k] + j)));
            s1 = _mm256_add_epi16(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + offs[k + 1] + j)));
        }
        if (k < ntab) s0 = _mm256_add_epi16(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + offs[k] + j)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), _mm256_add_epi16(s0, s1));
    }
    for (; j + 8 <= m; j += 8) {
        __m128i s0 = _mm_setzero_si128(), s1 = s0;
        int64_t k = 0;
        for (; k + 2 <= ntab; k += 2) {
            s0 = _mm_add_epi16(s0, _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + offs[k] + j)));
            s1 = _mm_add_epi16(s1, _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + offs[k + 1] + j)));
        }
        if (k < ntab) s0 = _mm_add_epi16(s0, _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut + offs[k] + j)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm_add_epi16(s0, s1));
    }
    for (; j < m; ++j) {
        int16_t s = 0;
        for (int64_t k = 0; k < ntab; ++k) s = static_cast<int16_t>(s + lut[offs[k] + j]);
        out[j] = s;
    }
}

// C % 8 == 0: the table adds read the pattern bytes of the kh image rows directly (no offset
// array); M a multiple of 16 (one ymm per 16 outputs) or M == 1 (scalar).
__attribute__((target("avx2"))) inline void lut_sum_bytes(const int16_t* lut, const uint8_t* r, int64_t rb,
                                                           int64_t kh, int64_t ng, int64_t m, int16_t* out) {
    if (m == 1) {
        int32_t s = 0;  // the int16 sum is exact, int32 just avoids wrapping the partial sums
        const int16_t* tab = lut;
        for (int64_t dy = 0; dy < kh; ++dy, r += rb)
            for (int64_t g = 0; g < ng; ++g, tab += 256) s += tab[r[g]];
        out[0] = static_cast<int16_t>(s);
        return;
    }
    for (int64_t mb = 0; mb < m; mb += 16) {
        __m256i s0 = _mm256_setzero_si256(), s1 = s0;
        const int16_t* tab = lut + mb;
        const uint8_t* rr = r;
        for (int64_t dy = 0; dy < kh; ++dy, rr += rb) {
            int64_t g = 0;
            for (; g + 2 <= ng; g += 2, tab += 2 * 256 * m) {
                s0 = _mm256_add_epi16(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tab + rr[g] * m)));
                s1 = _mm256_add_epi16(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tab + (256 + rr[g + 1]) * m)));
            }
            if (g < ng) {
                s0 = _mm256_add_epi16(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tab + rr[g] * m)));
                tab += 256 * m;
            }
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + mb), _mm256_add_epi16(s0, s1));
    }
}

// Table-major order for the same sums (C % 8 == 0, M a multiple of 16): one pass over the step's
// output positions per pair of tables of a kernel row, so the two 256-entry tables (2 x 8 KB for
// M = 16) and the step's accumulators (P x M int16, 8 KB for 16 x 16 x 16) stay in L1, instead
// of every position reading all kh*ng tables (73-147 KB, L2) in turn. Each position's sum is the
// same set of int16 table entries added in a different order: exact (every partial sum is a sum
// of some of its weights, inside int16 by the int16 condition) and so bit-identical.
__attribute__((target("avx2"))) inline void lut_pass_bytes(const int16_t* lut, const uint8_t* img, int64_t rb,
                                                            int64_t kh, int64_t ng, int64_t m, int64_t ho,
                                                            int64_t wo, int64_t row_step, int64_t col_step,
                                                            int16_t* acc) {
    const int64_t tab = 256 * m;
    std::memset(acc, 0, static_cast<size_t>(ho * wo * m) * sizeof(int16_t));
    for (int64_t dy = 0; dy < kh; ++dy)
        for (int64_t g = 0; g < ng; g += 2) {
            const int16_t* t0 = lut + (dy * ng + g) * tab;
            const bool two = g + 1 < ng;
            for (int64_t oy = 0; oy < ho; ++oy) {
                const uint8_t* r = img + oy * row_step + dy * rb + g;  // image row oy*s + dy, byte g
                int16_t* o = acc + oy * wo * m;
                const int64_t sx = col_step;  // image bytes per output column
                if (two) {
                    const int16_t* t1 = t0 + tab;
                    for (int64_t ox = 0; ox < wo; ++ox, r += sx, o += m)
                        for (int64_t mb = 0; mb < m; mb += 16) {
                            __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + mb));
                            v = _mm256_add_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t0 + r[0] * m + mb)));
                            v = _mm256_add_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t1 + r[1] * m + mb)));
                            _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + mb), v);
                        }
                } else {
                    for (int64_t ox = 0; ox < wo; ++ox, r += sx, o += m)
                        for (int64_t mb = 0; mb < m; mb += 16) {
                            __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(o + mb));
                            v = _mm256_add_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t0 + r[0] * m + mb)));
                            _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + mb), v);
                        }
                }
            }
        }
}

// The same for M == 16 (one ymm of accumulators per position), up to three tables per pass
// (3 x 8 KB of tables + 8 KB of accumulators for a 16 x 16 map) and the first pass storing
// instead of adding (no memset): a 3x3 layer on 8 channels (3 byte groups per kernel row) makes
// 3 passes instead of 6, on 16 channels 6 instead of 9. Same entries, exact int16 sums.
// Measured (reference network, load ~3): snn_conv2 / snn_conv3 0.052 / 0.083 -> 0.037 / 0.060 ms
// per frame.
template <int GN, bool FIRST>
__attribute__((target("avx2"))) inline void lut_row16(const int16_t* t0, const uint8_t* r, int64_t sx, int64_t wo,
                                                      int16_t* o) {
    constexpr int64_t tab = 256 * 16;
    for (int64_t ox = 0; ox < wo; ++ox, r += sx, o += 16) {
        __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t0 + r[0] * 16));
        if constexpr (GN > 1) v = _mm256_add_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t0 + tab + r[1] * 16)));
        if constexpr (GN > 2) v = _mm256_add_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t0 + 2 * tab + r[2] * 16)));
        if constexpr (!FIRST) v = _mm256_add_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(o)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), v);
    }
}

template <bool FIRST>
__attribute__((target("avx2"))) inline void lut_rows16(const int16_t* t0, int64_t gn, const uint8_t* img, int64_t ho,
                                                       int64_t wo, int64_t row_step, int64_t sx, int16_t* acc) {
    for (int64_t oy = 0; oy < ho; ++oy) {
        const uint8_t* r = img + oy * row_step;
        int16_t* o = acc + oy * wo * 16;
        if (gn == 3) lut_row16<3, FIRST>(t0, r, sx, wo, o);
        else if (gn == 2) lut_row16<2, FIRST>(t0, r, sx, wo, o);
        else lut_row16<1, FIRST>(t0, r, sx, wo, o);
    }
}

__attribute__((target("avx2"))) __attribute__((noinline)) void lut_pass16(const int16_t* lut, const uint8_t* img,
                                                                          int64_t rb, int64_t kh, int64_t ng,
                                                                          int64_t ho, int64_t wo, int64_t row_step,
                                                                          int64_t col_step, int16_t* acc) {
    constexpr int64_t tab = 256 * 16;
    for (int64_t dy = 0; dy < kh; ++dy)
        for (int64_t g = 0; g < ng; g += 3) {
            const int16_t* t0 = lut + (dy * ng + g) * tab;
            const int64_t gn = std::min<int64_t>(3, ng - g);
            const uint8_t* r = img + dy * rb + g;  // image row oy*s + dy, byte g at r + oy * row_step
            if (dy == 0 && g == 0) lut_rows16<true>(t0, gn, r, ho, wo, row_step, col_step, acc);
            else lut_rows16<false>(t0, gn, r, ho, wo, row_step, col_step, acc);
        }
}

#endif  // NEUROSIM_X86

// M == 1, C % 8 == 0 (e.g. a correlation head): a whole step's table sums in a separate,
// non-inlined loop, so the loop bounds stay in registers, with two independent int32 sums per
// position (inlined into the big layer body the bounds were reloaded from the stack). The int16
// result equals the int16 sum: the int16 condition bounds every partial sum.
__attribute__((noinline)) void lut_step_m1(const int16_t* lut, const uint8_t* img, int64_t rb, int64_t kh, int64_t ng,
                                           int64_t ho, int64_t wo, int64_t row_step, int64_t col_step, int16_t* acc) {
    for (int64_t oy = 0; oy < ho; ++oy)
        for (int64_t ox = 0; ox < wo; ++ox) {
            const uint8_t* r = img + oy * row_step + ox * col_step;
            const int16_t* tab = lut;
            int32_t s0 = 0, s1 = 0;
            for (int64_t dy = 0; dy < kh; ++dy, r += rb) {
                int64_t g = 0;
                for (; g + 2 <= ng; g += 2, tab += 512) {
                    s0 += tab[r[g]];
                    s1 += tab[256 + r[g + 1]];
                }
                if (g < ng) {
                    s0 += tab[r[g]];
                    tab += 256;
                }
            }
            acc[oy * wo + ox] = static_cast<int16_t>(s0 + s1);
        }
}

// Shape of the lut mode's bit image and tables: groups of gb = 8 taps, 256-entry tables (4-tap
// groups, whose tables stay in L1, measured 1.5-1.8x slower: twice the table adds).
// lut_pass_bytes (table-major) rather than the position-major lut_sum_bytes for C % 8 == 0 and
// M % 16 == 0 on AVX2. Measured (CPU time, load ~1.1-1.5, same inputs): reference network
// snn_conv2/3 0.057/0.082 vs 0.061/0.089 ms per frame; 4x wider variant (M = 64, 2 x 32 KB
// tables, past L1) 0.41/0.72 vs 0.50/1.03 ms per frame.
constexpr bool LUT_TABLE_MAJOR = true;

struct LutShape {
    int64_t wpp, hpp, row_bytes, row_bits, gb, ng, ntab;
    explicit LutShape(const ConvLayerArgs& a) {
        wpp = std::max(a.w + 2 * a.pad, (a.wo - 1) * a.stride + a.kw);
        hpp = std::max(a.h + 2 * a.pad, (a.ho - 1) * a.stride + a.kh);
        row_bytes = (wpp * a.c + 7) / 8 + 8;  // + slack for the 4- and 8-byte group loads
        row_bits = a.kw * a.c;
        gb = 8;
        ng = (row_bits + gb - 1) / gb;
        ntab = a.kh * ng;
    }
};

// The tables of a lut layer: entry p of table (dy, g) = sum of w[:, c, dy, dx] over the set bits
// b of p, with (dx, c) = divmod(gb*g + b, C); bits past the kernel row add nothing.
struct LutTables {
    LutShape ls;
    std::unique_ptr<int16_t[]> lut;  // [table][entry][M] (not zero-filled: every entry is written below)
    mutable std::vector<int32_t> offs;  // scratch of callers that pass none
    explicit LutTables(const ConvLayerArgs& a) : ls(a) {
        const int64_t m = a.m, ng = ls.ng, gb = ls.gb, ne_tab = int64_t(1) << gb, cc = a.c;
        lut.reset(new int16_t[ls.ntab * ne_tab * m]);
        offs.resize(ls.ntab);
        std::vector<int16_t> wbit(gb * m);
        for (int64_t dy = 0; dy < a.kh; ++dy)
            for (int64_t g = 0; g < ng; ++g) {
                for (int64_t b = 0; b < gb; ++b)  // the weight vector of each bit of the group
                    for (int64_t j = 0; j < m; ++j) {
                        const int64_t bit = gb * g + b;
                        wbit[b * m + j] = bit < ls.row_bits ? a.weight[((j * cc + bit % cc) * a.kh + dy) * a.kw + bit / cc] : 0;
                    }
                int16_t* tab = lut.get() + (dy * ng + g) * ne_tab * m;
                std::fill_n(tab, m, int16_t{0});
                for (int64_t p = 1; p < ne_tab; ++p) {
                    const int16_t* __restrict prev = tab + (p & (p - 1)) * m;
                    const int16_t* __restrict wb = wbit.data() + __builtin_ctzll(p) * m;
                    int16_t* __restrict e = tab + p * m;
                    for (int64_t j = 0; j < m; ++j) e[j] = static_cast<int16_t>(prev[j] + wb[j]);
                }
            }
    }
};

// One step's accumulators acc (P, M) from the bit image img (ls.hpp rows of ls.row_bytes). offs:
// scratch for ls.ntab table offsets (lt.offs when not given; concurrent callers pass their own).
template <bool Vec>
__attribute__((always_inline)) inline void lut_accumulate(const ConvLayerArgs& a, const LutTables& lt, const uint8_t* img,
                                                          int16_t* acc, int32_t* offs = nullptr) {
    const int64_t m = a.m, s = a.stride, cc = a.c;
    const LutShape& ls = lt.ls;
    const int64_t ng = ls.ng, ntab = ls.ntab, rb = ls.row_bytes;
    const int64_t gb = ls.gb, ne_tab = int64_t(1) << gb;
    const uint32_t mask = static_cast<uint32_t>(ne_tab - 1);
    const bool byte_aligned = cc % 8 == 0, one_word = ls.row_bits + 7 <= 64;
    const int16_t* lut = lt.lut.get();
#if NEUROSIM_X86
    if constexpr (Vec) {
        if (byte_aligned && m == 1) return lut_step_m1(lut, img, rb, a.kh, ng, a.ho, a.wo, s * rb, s * cc / 8, acc);
        if (byte_aligned && m == 16 && LUT_TABLE_MAJOR)
            return lut_pass16(lut, img, rb, a.kh, ng, a.ho, a.wo, s * rb, s * cc / 8, acc);
        if (byte_aligned && m % 16 == 0 && LUT_TABLE_MAJOR)
            return lut_pass_bytes(lut, img, rb, a.kh, ng, m, a.ho, a.wo, s * rb, s * cc / 8, acc);
    }
#endif
    int32_t* offs0 = offs ? offs : lt.offs.data();  // (offs is mutable scratch)
    for (int64_t oy = 0; oy < a.ho; ++oy)
        for (int64_t ox = 0; ox < a.wo; ++ox) {
            const int64_t bit0 = ox * s * cc;
            const uint8_t* r = img + oy * s * rb + (bit0 >> 3);
            int32_t* o = offs0;
#if NEUROSIM_X86
            if constexpr (Vec) {
                if (byte_aligned && (m % 16 == 0 || m == 1)) {
                    lut_sum_bytes(lut, r, rb, a.kh, ng, m, acc + (oy * a.wo + ox) * m);
                    continue;
                }
            }
#endif
            if (byte_aligned) {  // C % 8 == 0: the groups are whole bytes of the image
                for (int64_t dy = 0; dy < a.kh; ++dy, r += rb)
                    for (int64_t g = 0; g < ng; ++g, ++o) *o = static_cast<int32_t>(((o - offs0) * 256 + r[g]) * m);
            } else if (one_word) {  // the kernel row's bits (+ the start offset) fit 64 bits
                const int sh = static_cast<int>(bit0 & 7);
                for (int64_t dy = 0; dy < a.kh; ++dy, r += rb) {
                    uint64_t word;
                    std::memcpy(&word, r, 8);
                    word >>= sh;
                    for (int64_t g = 0; g < ng; ++g, ++o, word >>= gb)
                        *o = static_cast<int32_t>(((o - offs0) * ne_tab + (word & mask)) * m);
                }
            } else {
                for (int64_t dy = 0; dy < a.kh; ++dy) {
                    const uint8_t* rr = img + (oy * s + dy) * rb;
                    for (int64_t g = 0; g < ng; ++g, ++o) {
                        const int64_t bit = bit0 + gb * g;
                        uint32_t word;
                        std::memcpy(&word, rr + (bit >> 3), 4);
                        *o = static_cast<int32_t>(((o - offs0) * ne_tab + ((word >> (bit & 7)) & mask)) * m);
                    }
                }
            }
            lut_sum<Vec>(lut, offs0, ntab, m, acc + (oy * a.wo + ox) * m);
        }
}

template <bool Vec>
__attribute__((always_inline)) inline void run_lut(const ConvLayerArgs& a, Work& wk) {
    const int64_t n = a.m * a.ho * a.wo, hw = a.h * a.w, cc = a.c;
    LutTables lt(a);
    const LutShape& ls = lt.ls;
    const int64_t rb = ls.row_bytes;
    std::vector<uint8_t> img(ls.hpp * rb);
    std::vector<int32_t> events(a.w + 32);
    std::vector<int16_t> acc(n);
    const bool byte_aligned = cc % 8 == 0;
    std::vector<uint8_t> bits(byte_aligned ? cc / 8 * hw : 0);
    for (int64_t t = 0; t < a.steps; ++t) {
        // (byte_aligned rewrites every interior byte each step, and the padding stays zero)
        if (!byte_aligned || t == 0) std::fill(img.begin(), img.end(), uint8_t(0));
        if (byte_aligned) {  // 8 channels per image byte: Horner over the channel planes, then rows into the image
            const int64_t cb = cc / 8;
            // bits[cg*H*W + i] = sum_b x[t, 8cg + b, i] << b over whole planes (long loops that
            // vectorize; row by row they were W = 16 bytes each). Raw pointers: a uint8_t store
            // through the vector may alias the vector itself, and then nothing vectorizes.
            for (int64_t cg = 0; cg < cb; ++cg) {
                uint8_t* __restrict bp = bits.data() + cg * hw;
                const uint8_t* __restrict p7 = reinterpret_cast<const uint8_t*>(a.x + (t * cc + cg * 8 + 7) * hw);
                for (int64_t i = 0; i < hw; ++i) bp[i] = p7[i];
                for (int64_t b = 6; b >= 0; --b) {
                    const uint8_t* __restrict pb = reinterpret_cast<const uint8_t*>(a.x + (t * cc + cg * 8 + b) * hw);
                    for (int64_t i = 0; i < hw; ++i) bp[i] = static_cast<uint8_t>((bp[i] << 1) | pb[i]);
                }
            }
            for (int64_t y = 0; y < a.h; ++y) {  // image byte of (y, x, cg) = bits[cg, y, x]
                uint8_t* __restrict irow = img.data() + (y + a.pad) * rb + a.pad * cb;
                const uint8_t* __restrict g0 = bits.data() + y * a.w;
                if (cb == 1) {
                    std::memcpy(irow, g0, a.w);
                } else if (cb == 2) {  // interleave the two groups' bytes (SSE2 unpacks, baseline x86-64)
                    const uint8_t* __restrict g1 = g0 + hw;
                    int64_t xx = 0;
#if NEUROSIM_X86
                    for (; xx + 16 <= a.w; xx += 16) {
                        const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g0 + xx));
                        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g1 + xx));
                        _mm_storeu_si128(reinterpret_cast<__m128i*>(irow + 2 * xx), _mm_unpacklo_epi8(u, v));
                        _mm_storeu_si128(reinterpret_cast<__m128i*>(irow + 2 * xx + 16), _mm_unpackhi_epi8(u, v));
                    }
#endif
                    for (; xx < a.w; ++xx) {
                        irow[2 * xx] = g0[xx];
                        irow[2 * xx + 1] = g1[xx];
                    }
                } else {
                    for (int64_t cg = 0; cg < cb; ++cg)
                        for (int64_t xx = 0; xx < a.w; ++xx) irow[xx * cb + cg] = g0[cg * hw + xx];
                }
            }
            wk.count_inputs(a.x + t * cc * hw, a.in_count);
        } else for (int64_t c = 0; c < cc; ++c) {
            const int8_t* xc = a.x + (t * cc + c) * hw;
            int32_t* cnt = a.in_count ? a.in_count + c * hw : nullptr;
            for (int64_t y = 0; y < a.h; ++y) {
                const int8_t* row = xc + y * a.w;
                const int64_t ne = gather_nonzero<Vec>(row, a.w, events.data());
                uint8_t* irow = img.data() + (y + a.pad) * rb;
                for (int64_t e = 0; e < ne; ++e) {
                    const int64_t xx = events[e], bit = (xx + a.pad) * cc + c;
                    if (cnt) ++cnt[y * a.w + xx];
                    irow[bit >> 3] = static_cast<uint8_t>(irow[bit >> 3] | (1u << (bit & 7)));
                }
            }
        }
        lut_accumulate<Vec>(a, lt, img.data(), acc.data());
        soma_step<int16_t, Vec>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

}  // namespace
}  // namespace chip
