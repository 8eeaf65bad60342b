// The SNN chain's last stage as VNNI dot products straight from its input bit image, for a
// correlation head: one output channel (M = 1), C = 8 or 16 input channels, stride 1.
//
// The stage's input is the lut mode's zero-padded bit image (conv_lut.h): a pixel's C channel
// bits are C/8 adjacent bytes, channel c at bit c % 8 of byte c / 8. So the 8 bytes at padded
// pixel xp are the bits of the P = 64 / C pixels xp .. xp + P - 1, pixel-major; `vmovdqu8` under
// that 64-bit mask expands them to 0/1 bytes, and one `vpdpbusd` against the tap's C weights
// repeated P times adds, in int32 lane i, the products of channels 4(i % L) .. 4(i % L) + 3 of
// pixel i / L (L = C / 4 lanes per pixel). For the output pixels ox0 .. ox0 + 15 of row oy:
//     acc[oy, ox] = sum_{dy, dx} sum_c w[0, c, dy, dx] * bit[c, oy + dy, ox + dx]   (padded)
// is 16 / P accumulators over the kh * kw taps, then each pixel's L lanes summed. Exact: the
// int32 sums are the plane / lut sums in another order, and the chain's int16 condition
// (sum |w| <= 32767) bounds them, so they narrow to the int16 accumulators the soma reads.
// A group past the row's end reads up to 15 pixels of the next row (or the ring's slack) and
// stores only its pixels inside the row.
#pragma once
#include <neurosim/simd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "conv_common.h"

namespace chip {
namespace {  // (internal linkage: each including .cpp gets its own copy)

// bytes past a stage's last image that a group may read (15 pixels of 2 bytes and an 8-byte load)
constexpr int64_t BITS_VNNI_SLACK = 64;

inline bool bits_vnni_fits(const ConvLayerArgs& a) {
    return a.m == 1 && (a.c == 8 || a.c == 16) && a.stride == 1;
}

// The tap weights, each the C weights repeated over the 64 bytes of a zmm.
struct BitsVnniPlan {
    std::vector<int8_t> w;  // [dy * kw + dx][64]
    explicit BitsVnniPlan(const ConvLayerArgs& a) : w(a.kh * a.kw * 64) {
        for (int64_t tap = 0; tap < a.kh * a.kw; ++tap)
            for (int64_t j = 0; j < 64; ++j) w[tap * 64 + j] = a.weight[(j % a.c) * a.kh * a.kw + tap];
    }
};

#if NEUROSIM_X86
#define NEUROSIM_BITS_VNNI "avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"

// 16 int32 pixel sums from the accumulators of P = 64 / C pixels each (L = C / 4 lanes per pixel)
template <int C>
__attribute__((target(NEUROSIM_BITS_VNNI))) inline __m512i pixel_sums(const __m512i* acc) {
    if constexpr (C == 8) {  // 2 lanes per pixel: the even lanes after adding the odd ones
        const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i s0 = _mm512_add_epi32(acc[0], _mm512_shuffle_epi32(acc[0], _MM_PERM_CDAB));
        const __m512i s1 = _mm512_add_epi32(acc[1], _mm512_shuffle_epi32(acc[1], _MM_PERM_CDAB));
        return _mm512_permutex2var_epi32(s0, idx, s1);
    } else {  // 4 lanes per pixel (one 128-bit block): lane 4k after two adds
        const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
        __m512i s[4];
        for (int q = 0; q < 4; ++q) {
            s[q] = _mm512_add_epi32(acc[q], _mm512_shuffle_epi32(acc[q], _MM_PERM_CDAB));
            s[q] = _mm512_add_epi32(s[q], _mm512_shuffle_epi32(s[q], _MM_PERM_BADC));
        }
        const __m512i lo = _mm512_permutex2var_epi32(s[0], idx, s[1]), hi = _mm512_permutex2var_epi32(s[2], idx, s[3]);
        return _mm512_inserti64x4(lo, _mm512_castsi512_si256(hi), 1);
    }
}

// int16 accumulators acc[(oy - r0) * wo + ox] of output rows [r0, r1) from the padded bit image
// img (rows of rb bytes)
template <int C>
__attribute__((target(NEUROSIM_BITS_VNNI))) __attribute__((noinline)) void bits_vnni_rows(
    const ConvLayerArgs& a, const BitsVnniPlan& plan, const uint8_t* img, int64_t rb, int64_t r0, int64_t r1,
    int16_t* acc) {
    constexpr int P = 64 / C, G = 16 / P;  // pixels per accumulator, accumulators per 16 pixels
    const __m512i one = _mm512_set1_epi8(1);
    for (int64_t oy = r0; oy < r1; ++oy)
        for (int64_t ox0 = 0; ox0 < a.wo; ox0 += 16) {
            __m512i s[G];
            for (int q = 0; q < G; ++q) s[q] = _mm512_setzero_si512();
            for (int64_t dy = 0; dy < a.kh; ++dy) {
                const uint8_t* row = img + (oy + dy) * rb;
                for (int64_t dx = 0; dx < a.kw; ++dx) {
                    const __m512i w = _mm512_loadu_si512(plan.w.data() + (dy * a.kw + dx) * 64);
                    for (int q = 0; q < G; ++q) {
                        uint64_t bits;
                        std::memcpy(&bits, row + (ox0 + q * P + dx) * (C / 8), 8);
                        s[q] = _mm512_dpbusd_epi32(s[q], _mm512_maskz_mov_epi8(_cvtu64_mask64(bits), one), w);
                    }
                }
            }
            const int64_t n = std::min<int64_t>(16, a.wo - ox0);
            _mm256_mask_storeu_epi16(acc + (oy - r0) * a.wo + ox0, static_cast<__mmask16>((1u << n) - 1),
                                     _mm512_cvtepi32_epi16(pixel_sums<C>(s)));
        }
}

inline void bits_vnni_step(const ConvLayerArgs& a, const BitsVnniPlan& plan, const uint8_t* img, int64_t rb,
                           int64_t r0, int64_t r1, int16_t* acc) {
    if (a.c == 8) bits_vnni_rows<8>(a, plan, img, rb, r0, r1, acc);
    else bits_vnni_rows<16>(a, plan, img, rb, r0, r1, acc);
}
#endif  // NEUROSIM_X86

}  // namespace
}  // namespace chip
