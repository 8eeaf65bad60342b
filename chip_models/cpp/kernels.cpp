// Integer kernels of chip_models: dense int8 MAC, event-driven spike accumulation, the integer
// LIF soma, the ANN output stage and the router's packet counting.
//
// Arithmetic: exactly neurosim/intmath.py + neurosim/intneuron.py (gemmlowp style):
// the constants and functions of cpp/include/neurosim/intmath.h (sat32, rshr_pos, leak, MEM_HI,
// MAX_FAN_IN = 2^16 with its justification):
//   * MAC: int8 x int8 products summed exactly in int32 (K <= MAX_FAN_IN per call, so no partial
//     sum can leave int32: 65536 * 128 * 128 = 2^30), bias added in int64, result saturated to int32.
//   * rounding_shift_right(a, s) for s >= 1 is round-half-up(a / 2^s), intmath::rshr_pos.
//   * leak floor(v * alpha / 256), intmath::leak_floor: int32-only for 28-bit membranes.
//
// Paths (chosen at run time, bit-identical results; only SCALAR is compiled without NEUROSIM_X86):
//   SCALAR      portable C++ (baseline code of the target; the only path on non-x86 builds).
//   AVX2        int8 sign-extended to int16 then vpmaddwd (16 exact MACs per instruction into
//               int32; nothing saturates, unlike vpmaddubsw). Other kernels: the same loop
//               bodies compiled for AVX2 (auto-vectorized on ymm registers).
//   AVX512VNNI  vpdpbusd: 64 u8 x s8 MACs into s32 per instruction; x is offset by +128 to be
//               unsigned and the result corrected by 128 * sum_k w[j, k] (row sums packed once).
//   AVXVNNI     the same with the 256-bit VEX encoding (Alder Lake and later, Zen 5).
#include "kernels.h"
#include "soma.h"

#include <neurosim/intmath.h>
#include <neurosim/simd.h>

#include <algorithm>
#include <cstring>
#include <limits>

#if NEUROSIM_X86
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

namespace chip {

namespace {


using neurosim::intmath::sat32;

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

constexpr int64_t VNNI_PANEL = 64;  // output columns of one dense_vnni512 tile (4 zmm of 16)
// Below 32 outputs the padded 64-column panels waste most of the tile kernel's work: the row
// kernel is faster there (measured 1024 x 2048 x M, M = 1, 4, 16: 0.67, 0.68, 0.86 of the tile
// kernel's time; M = 32: equal; M = 64: 1.68x slower).
constexpr int64_t VNNI_TILE_MIN_M = 32;

}  // namespace

// false for every x86 feature on a build without x86 paths (NEUROSIM_X86 0): only SCALAR runs.
bool cpu_has_avx2() { return NEUROSIM_CPU_SUPPORTS("avx2"); }
bool cpu_has_avx512vnni() {
    return NEUROSIM_CPU_SUPPORTS("avx512f") && NEUROSIM_CPU_SUPPORTS("avx512bw") &&
           NEUROSIM_CPU_SUPPORTS("avx512vnni");
}
bool cpu_has_avx512vbmi() { return cpu_has_avx512vnni() && NEUROSIM_CPU_SUPPORTS("avx512vbmi"); }
bool cpu_has_avxvnni() { return NEUROSIM_CPU_SUPPORTS("avx2") && NEUROSIM_CPU_SUPPORTS("avxvnni"); }
bool cpu_has_amx() {
#if NEUROSIM_X86 && defined(__linux__)
    static const bool ok = [] {
        unsigned a, b, c, d;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
        const bool tile = (d >> 24) & 1, int8 = (d >> 25) & 1;
        if (!tile || !int8 || !cpu_has_avx512vnni()) return false;
        constexpr long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
        return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }();
    return ok;
#else
    return false;
#endif
}

// =============================================================================== dense MAC

PackedWeights pack_weights(const int8_t* w, int64_t m, int64_t k, int path) {
    PackedWeights pw;
    pw.path = path;
    pw.m = m;
    pw.k = k;
    const int64_t mp = round_up(std::max<int64_t>(m, 1), 2);
    if (path == AVX2) {
        pw.kp = round_up(std::max<int64_t>(k, 1), 16);  // the int16 copies of x rows (dense_avx2)
        pw.kp8 = round_up(std::max<int64_t>(k, 1), 32);
        pw.w8u.assign(mp * pw.kp8, 0);
        for (int64_t j = 0; j < m; ++j)
            for (int64_t i = 0; i < k; ++i) pw.w8u[j * pw.kp8 + i] = w[j * k + i];
    } else if ((path == AVX512VNNI && m >= VNNI_TILE_MIN_M) || path == AMX) {
        pw.panels = true;
        // panels of VNNI_PANEL output columns, K in quads: w8[(panel * kq + q) * 4 * VNNI_PANEL +
        // 4 * col + e] = w[panel * VNNI_PANEL + col, 4 * q + e] (zero past m and k), so one k-quad
        // of a panel is 4 zmm loads, each 16 columns x 4 bytes (the dense_vnni512 tile).
        pw.kp = round_up(std::max<int64_t>(k, 1), path == AMX ? 64 : 4);  // AMX: whole 64-byte tile rows
        const int64_t kq = pw.kp / 4, mpan = round_up(std::max<int64_t>(m, 1), VNNI_PANEL);
        pw.w8.assign(mpan * pw.kp, 0);
        pw.rowsum.assign(mpan, 0);
        for (int64_t j = 0; j < m; ++j) {
            int8_t* dst = pw.w8.data() + (j / VNNI_PANEL) * kq * 4 * VNNI_PANEL + 4 * (j % VNNI_PANEL);
            int32_t s = 0;
            for (int64_t i = 0; i < k; ++i) {
                dst[(i / 4) * 4 * VNNI_PANEL + i % 4] = w[j * k + i];
                s += w[j * k + i];
            }
            pw.rowsum[j] = 128 * s;
        }
    } else if (path == AVX512VNNI || path == AVXVNNI) {  // rows (AVX512VNNI: M < VNNI_TILE_MIN_M)
        pw.kp = round_up(std::max<int64_t>(k, 1), 64);
        pw.w8.assign(mp * pw.kp, 0);
        pw.rowsum.assign(mp, 0);
        for (int64_t j = 0; j < m; ++j) {
            int32_t s = 0;
            for (int64_t i = 0; i < k; ++i) {
                pw.w8[j * pw.kp + i] = w[j * k + i];
                s += w[j * k + i];
            }
            pw.rowsum[j] = 128 * s;
        }
    } else {
        pw.path = SCALAR;
        pw.kp = k;
        pw.w8.assign(w, w + m * k);
    }
    return pw;
}

namespace {

// out = sat32(c - rowsum + bias) (int64): c (n x ldc) the kernels' int32 sums; rowsum (VNNI and
// AMX: 128 * sum_k w[j, k], the correction of their x + 128 offset) and bias may be null. One
// loop per case, so the loop over the outputs has no branch; always inlined, so that it is
// vectorized for the caller's instruction set (AVX-512: vpminsq / vpmaxsq on the int64 sums;
// measured ~1 ms of 4.3 on 1024 x 64 x 2048 against the baseline code).
template <bool Rowsum, bool Bias>
__attribute__((always_inline)) inline void finish_loop(const int32_t* c, int64_t ldc, int64_t n, int64_t m, const int32_t* rowsum, const int32_t* bias,
                 int32_t* out) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) {
            int64_t v = c[i * ldc + j];
            if constexpr (Rowsum) v -= rowsum[j];
            if constexpr (Bias) v += bias[j];
            out[i * m + j] = sat32(v);
        }
}

__attribute__((always_inline)) inline void finish(const int32_t* c, int64_t ldc, int64_t n, int64_t m,
                                                  const int32_t* rowsum, const int32_t* bias, int32_t* out) {
    if (rowsum) {
        if (bias) finish_loop<true, true>(c, ldc, n, m, rowsum, bias, out);
        else finish_loop<true, false>(c, ldc, n, m, rowsum, bias, out);
    } else {
        if (bias) finish_loop<false, true>(c, ldc, n, m, rowsum, bias, out);
        else finish_loop<false, false>(c, ldc, n, m, rowsum, bias, out);
    }
}

void dense_scalar(const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out) {
    const int64_t m = pw.m, k = pw.k;
    for (int64_t i = 0; i < n; ++i) {
        const int8_t* xr = x + i * k;
        for (int64_t j = 0; j < m; ++j) {
            const int8_t* wr = pw.w8.data() + j * k;
            int32_t s = 0;  // |s| <= 65536 * 2^14 = 2^30
            for (int64_t t = 0; t < k; ++t) s += static_cast<int32_t>(xr[t]) * wr[t];
            out[i * m + j] = sat32(static_cast<int64_t>(s) + (bias ? bias[j] : 0));
        }
    }
}

#if NEUROSIM_X86
// ---- AVX2: int16 operands, vpmaddwd, 4 x-rows by 2 w-rows register tile. x rows are widened to
// int16 once (they stay in L1 across the w rows of a block); w rows stay int8 in memory and are
// widened in registers (vpmovsxbw), which halves the bytes streamed from L2 for every x block:
// measured side by side at load ~2.8, 51-57 vs 47-52 GMAC/s with int16 w rows (1024x2048x2048).
__attribute__((target("avx2"))) inline __m128i hsum4x2(__m256i a0, __m256i a1, __m256i b0, __m256i b1) {
    // -> [sum a0, sum a1, sum b0, sum b1]
    __m256i t0 = _mm256_hadd_epi32(a0, a1);
    __m256i t1 = _mm256_hadd_epi32(b0, b1);
    __m256i u = _mm256_hadd_epi32(t0, t1);
    return _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
}

// ---- The row kernels: one driver, four micro-kernels (ruy's kernel / driver split). A
// micro-kernel's dot4x2 computes the 4 x 2 dot products of 4 prepared x rows and 2 weight rows
// over kc elements (a multiple of its STEP) into r[2 * row + column]; rows_driver blocks K in
// chunks of Kernel::KC (the 4 x rows' chunks stay in L1 across a block of MB weight rows), then
// MB = 64 weight rows, 4 x rows, pairs of weight rows, and adds the dots into c (np x mp).
// Kernel::prepare makes the x rows (np x ldx, zero / offset-zero padded), Kernel::OFFSET says
// whether the sums carry the VNNI x + 128 offset (corrected by the packed row sums in finish).
template <class Kernel>
__attribute__((always_inline)) inline void rows_driver(const typename Kernel::X* xs, int64_t ldx, const int8_t* w, int64_t ldw, int64_t np, int64_t mp,
                 int32_t* c) {
    constexpr int64_t MB = 64;
    for (int64_t k0 = 0; k0 < ldx; k0 += Kernel::KC) {
        const int64_t kc = std::min(Kernel::KC, ldx - k0);
        for (int64_t j0 = 0; j0 < mp; j0 += MB) {
            const int64_t j1 = std::min(mp, j0 + MB);
            for (int64_t i = 0; i < np; i += 4)
                for (int64_t j = j0; j < j1; j += 2) {
                    alignas(16) int32_t r[8];
                    Kernel::dot4x2(xs + i * ldx + k0, ldx, w + j * ldw + k0, ldw, kc, r);
                    int32_t* cr = c + i * mp + j;
                    for (int q = 0; q < 4; ++q) {
                        cr[q * mp] += r[2 * q];
                        cr[q * mp + 1] += r[2 * q + 1];
                    }
                }
        }
    }
}

// (always_inline: each kernel's entry point below, compiled for its instruction set, gets the
// driver and its micro-kernel inlined, as hand-written copies would be)
template <class Kernel>
__attribute__((always_inline)) inline void dense_rows(const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out) {
    const int64_t np = round_up(std::max<int64_t>(n, 1), 4), mp = round_up(std::max<int64_t>(pw.m, 1), 2);
    const int64_t ldx = Kernel::ldx(pw);
    std::vector<typename Kernel::X> xs(np * ldx);
    Kernel::prepare(x, n, pw.k, np, ldx, xs.data());
    std::vector<int32_t> c(np * mp, 0);
    rows_driver<Kernel>(xs.data(), ldx, Kernel::weights(pw), Kernel::ldw(pw), np, mp, c.data());
    finish(c.data(), mp, n, pw.m, Kernel::OFFSET ? pw.rowsum.data() : nullptr, bias, out);
}

__attribute__((target("avx2"))) inline void hsum4x2_store(__m256i a0, __m256i a1, __m256i b0, __m256i b1, int32_t* r) {
    // r[0..3] = [sum a0, sum a1, sum b0, sum b1]
    __m256i t0 = _mm256_hadd_epi32(a0, a1);
    __m256i t1 = _mm256_hadd_epi32(b0, b1);
    __m256i u = _mm256_hadd_epi32(t0, t1);
    _mm_store_si128(reinterpret_cast<__m128i*>(r), _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)));
}

// a value kept in a register: one load of each x row per step (GCC 12 otherwise folds the load
// into both multiplies that use it, 8 x loads instead of 4 per step: measured 13 % slower)
#define NEUROSIM_IN_REG(v) __asm__("" : "+x"(v))

// AVX2, signed x: int16 operands, vpmaddwd (16 exact MACs into int32 per instruction). x rows are
// widened to int16 once (they stay in L1 across the w rows of a block); w rows stay int8 in memory
// and are widened in registers (vpmovsxbw), which halves the bytes streamed from L2 for every x
// block: measured side by side at load ~2.8, 51-57 vs 47-52 GMAC/s with int16 w rows (1024x2048x2048).
struct Avx2Int16 {
    using X = int16_t;
    static constexpr int64_t KC = 2048;
    static constexpr bool OFFSET = false;
    static int64_t ldx(const PackedWeights& pw) { return pw.kp; }
    static int64_t ldw(const PackedWeights& pw) { return pw.kp8; }
    static const int8_t* weights(const PackedWeights& pw) { return pw.w8u.data(); }
    __attribute__((target("avx2"))) static void prepare(const int8_t* x, int64_t n, int64_t k, int64_t np, int64_t ldx,
                                                        int16_t* xs) {
        std::fill(xs, xs + np * ldx, int16_t{0});
        for (int64_t i = 0; i < n; ++i) {
            int64_t t = 0;
            for (; t + 16 <= k; t += 16) {
                __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i * k + t));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs + i * ldx + t), _mm256_cvtepi8_epi16(b));
            }
            for (; t < k; ++t) xs[i * ldx + t] = x[i * k + t];
        }
    }
    __attribute__((target("avx2"))) static void dot4x2(const int16_t* x0, int64_t ldx, const int8_t* w0, int64_t ldw,
                                                       int64_t kc, int32_t* r) {
        const int16_t *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
        const int8_t* w1 = w0 + ldw;
        __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
        __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
        for (int64_t t = 0; t < kc; t += 16) {
            __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + t)));
            __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w1 + t)));
            __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + t));
            NEUROSIM_IN_REG(a);
            c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(a, b0));
            c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(a, b1));
            a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + t));
            NEUROSIM_IN_REG(a);
            c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(a, b0));
            c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(a, b1));
            a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x2 + t));
            NEUROSIM_IN_REG(a);
            c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(a, b0));
            c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(a, b1));
            a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x3 + t));
            NEUROSIM_IN_REG(a);
            c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(a, b0));
            c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(a, b1));
            // keep each accumulator in one register (GCC 12 otherwise adds 8 vmovdqa per iteration)
            __asm__("" : "+x"(c00), "+x"(c01), "+x"(c10), "+x"(c11), "+x"(c20), "+x"(c21), "+x"(c30), "+x"(c31));
        }
        hsum4x2_store(c00, c01, c10, c11, r);
        hsum4x2_store(c20, c21, c30, c31, r + 4);
    }
};

// AVX2, non-negative x (ReLU outputs, spikes, frames 0..127): vpmaddubsw multiplies u8 x by s8 w
// and adds pairs into int16; with 0 <= x <= 127 a pair is at most 2*127*128 = 32512 in magnitude,
// so nothing saturates and the result is exact. vpmaddwd by ones widens to int32.
struct Avx2Uint8 {
    using X = int8_t;
    static constexpr int64_t KC = 4096;
    static constexpr bool OFFSET = false;
    static int64_t ldx(const PackedWeights& pw) { return pw.kp8; }
    static int64_t ldw(const PackedWeights& pw) { return pw.kp8; }
    static const int8_t* weights(const PackedWeights& pw) { return pw.w8u.data(); }
    static void prepare(const int8_t* x, int64_t n, int64_t k, int64_t np, int64_t ldx, int8_t* xs) {
        std::fill(xs, xs + np * ldx, int8_t{0});
        for (int64_t i = 0; i < n; ++i) std::memcpy(xs + i * ldx, x + i * k, k);
    }
    __attribute__((target("avx2"))) static void dot4x2(const int8_t* x0, int64_t ldx, const int8_t* w0, int64_t ldw,
                                                       int64_t kc, int32_t* r) {
        const int8_t *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
        const int8_t* w1 = w0 + ldw;
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
        __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
        for (int64_t t = 0; t < kc; t += 32) {
            const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + t));
            const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + t));
            __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + t));
            NEUROSIM_IN_REG(a);
            c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b0), ones));
            c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b1), ones));
            a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x1 + t));
            NEUROSIM_IN_REG(a);
            c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b0), ones));
            c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b1), ones));
            a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x2 + t));
            NEUROSIM_IN_REG(a);
            c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b0), ones));
            c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b1), ones));
            a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x3 + t));
            NEUROSIM_IN_REG(a);
            c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b0), ones));
            c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b1), ones));
            __asm__("" : "+x"(c00), "+x"(c01), "+x"(c10), "+x"(c11), "+x"(c20), "+x"(c21), "+x"(c30), "+x"(c31));
        }
        hsum4x2_store(c00, c01, c10, c11, r);
        hsum4x2_store(c20, c21, c30, c31, r + 4);
    }
};

bool all_non_negative(const int8_t* x, int64_t n) {
    uint64_t any = 0;  // OR of all bytes, 8 at a time: a negative int8 has its top bit set
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        std::memcpy(&word, x + i, 8);
        any |= word;
    }
    for (; i < n; ++i) any |= static_cast<uint8_t>(x[i]);
    return (any & 0x8080808080808080ull) == 0;
}

// ---- VNNI: u8 (x + 128) times s8 w, vpdpbusd, corrected by the packed row sums.
void offset_x(const int8_t* x, int64_t n, int64_t k, int64_t np, int64_t kp, uint8_t* xs) {
    std::fill(xs, xs + np * kp, uint8_t{0x80});  // padding: x = 0
    for (int64_t i = 0; i < n; ++i)
        for (int64_t t = 0; t < k; ++t) xs[i * kp + t] = static_cast<uint8_t>(x[i * k + t]) ^ 0x80u;
}

std::vector<uint8_t> offset_x(const int8_t* x, int64_t n, int64_t k, int64_t np, int64_t kp) {
    std::vector<uint8_t> xs(np * kp);
    offset_x(x, n, k, np, kp, xs.data());
    return xs;
}

// The VNNI-512 micro-kernel: an R x 64 output tile (R x-rows, one panel of 64 columns) in 4R zmm
// accumulators. Per k-quad: 4 zmm loads of the panel (16 columns x 4 weights each), R 4-byte
// broadcasts of x (vpbroadcastd from memory: a load, no shuffle port), 4R vpdpbusd. R = 6: 24
// accumulators (24 independent chains cover vpdpbusd's latency x 2 ports), 10 loads per 24
// vpdpbusd. The accumulators start at c (zero before the first K chunk).
// acc += u8 a x s8 b (vpdpbusd) as inline asm: with the intrinsic GCC 12 copied every accumulator
// through a spare register and stored it to the stack on each iteration.
#define NEUROSIM_DPBUSD(acc, a, b) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))

// the 4 bytes at p in every 32-bit lane (vpbroadcastd from memory)
__attribute__((target("avx512f"))) inline __m512i bcast4(const uint8_t* p) {
    int32_t quad;
    std::memcpy(&quad, p, 4);
    return _mm512_set1_epi32(quad);
}

// The output stage of one tile after the last K chunk: out[i, j] = sat32(sum[i, j] + corr[j]) for
// its rows and the columns before m (`valid` of its 64), with corr[j] = bias[j] - 128 * sum_k w[j, k]
// (int64). The sums are widened to int64 and vpmovsqd narrows them with signed saturation:
// exactly intmath's sat32.
__attribute__((target("avx512f"))) inline void finish_tile(const int32_t* sums, int64_t rows, const int64_t* corr,
                                                          int32_t* out, int64_t ldo, int64_t valid) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < VNNI_PANEL && j < valid; j += 16) {
            const __m512i sum = _mm512_loadu_si512(sums + r * VNNI_PANEL + j);
            const __m512i lo = _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(sum)),
                                                _mm512_loadu_si512(corr + j));
            const __m512i hi = _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(sum, 1)),
                                                _mm512_loadu_si512(corr + j + 8));
            const __m512i narrowed = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtsepi64_epi32(lo)),
                                                        _mm512_cvtsepi64_epi32(hi), 1);
            const int64_t left = valid - j;
            const __mmask16 keep = left >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
            _mm512_mask_storeu_epi32(out + r * ldo + j, keep, narrowed);
        }
}

// An R x 64 tile over kq k-quads: from the partial sums c (ldc) of the chunks before, or from 0
// where c is null (the first chunk), into sums (lds).
template <int R>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void vnni512_tile(
    const uint8_t* x, int64_t ldx, const int8_t* wp, int64_t kq, const int32_t* c, int64_t ldc, int32_t* sums,
    int64_t lds) {
    static_assert(R >= 1 && R <= 6, "tiles of 1..6 rows");
    // named accumulators: GCC kept an array of them on the stack, stored every iteration
    __m512i c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
    // the first chunk reads a row of zeros for every row (a branch between zeroing and loading
    // made GCC keep the accumulators on the stack through the loop)
    alignas(64) static const int32_t zero_row[VNNI_PANEL] = {};
    if (!c) c = zero_row, ldc = 0;
    if constexpr (R > 0) {
        const int32_t* cr = c + 0 * ldc;
        c00 = _mm512_loadu_si512(cr); c01 = _mm512_loadu_si512(cr + 16);
        c02 = _mm512_loadu_si512(cr + 32); c03 = _mm512_loadu_si512(cr + 48);
    }
    if constexpr (R > 1) {
        const int32_t* cr = c + 1 * ldc;
        c10 = _mm512_loadu_si512(cr); c11 = _mm512_loadu_si512(cr + 16);
        c12 = _mm512_loadu_si512(cr + 32); c13 = _mm512_loadu_si512(cr + 48);
    }
    if constexpr (R > 2) {
        const int32_t* cr = c + 2 * ldc;
        c20 = _mm512_loadu_si512(cr); c21 = _mm512_loadu_si512(cr + 16);
        c22 = _mm512_loadu_si512(cr + 32); c23 = _mm512_loadu_si512(cr + 48);
    }
    if constexpr (R > 3) {
        const int32_t* cr = c + 3 * ldc;
        c30 = _mm512_loadu_si512(cr); c31 = _mm512_loadu_si512(cr + 16);
        c32 = _mm512_loadu_si512(cr + 32); c33 = _mm512_loadu_si512(cr + 48);
    }
    if constexpr (R > 4) {
        const int32_t* cr = c + 4 * ldc;
        c40 = _mm512_loadu_si512(cr); c41 = _mm512_loadu_si512(cr + 16);
        c42 = _mm512_loadu_si512(cr + 32); c43 = _mm512_loadu_si512(cr + 48);
    }
    if constexpr (R > 5) {
        const int32_t* cr = c + 5 * ldc;
        c50 = _mm512_loadu_si512(cr); c51 = _mm512_loadu_si512(cr + 16);
        c52 = _mm512_loadu_si512(cr + 32); c53 = _mm512_loadu_si512(cr + 48);
    }
    for (int64_t q = 0; q < kq; ++q, wp += 4 * VNNI_PANEL) {
        const __m512i w0 = _mm512_loadu_si512(wp), w1 = _mm512_loadu_si512(wp + 64);
        const __m512i w2 = _mm512_loadu_si512(wp + 128), w3 = _mm512_loadu_si512(wp + 192);
        if constexpr (R > 0) {
            const __m512i a = bcast4(x + 0 * ldx + 4 * q);
            NEUROSIM_DPBUSD(c00, a, w0); NEUROSIM_DPBUSD(c01, a, w1);
            NEUROSIM_DPBUSD(c02, a, w2); NEUROSIM_DPBUSD(c03, a, w3);
        }
        if constexpr (R > 1) {
            const __m512i a = bcast4(x + 1 * ldx + 4 * q);
            NEUROSIM_DPBUSD(c10, a, w0); NEUROSIM_DPBUSD(c11, a, w1);
            NEUROSIM_DPBUSD(c12, a, w2); NEUROSIM_DPBUSD(c13, a, w3);
        }
        if constexpr (R > 2) {
            const __m512i a = bcast4(x + 2 * ldx + 4 * q);
            NEUROSIM_DPBUSD(c20, a, w0); NEUROSIM_DPBUSD(c21, a, w1);
            NEUROSIM_DPBUSD(c22, a, w2); NEUROSIM_DPBUSD(c23, a, w3);
        }
        if constexpr (R > 3) {
            const __m512i a = bcast4(x + 3 * ldx + 4 * q);
            NEUROSIM_DPBUSD(c30, a, w0); NEUROSIM_DPBUSD(c31, a, w1);
            NEUROSIM_DPBUSD(c32, a, w2); NEUROSIM_DPBUSD(c33, a, w3);
        }
        if constexpr (R > 4) {
            const __m512i a = bcast4(x + 4 * ldx + 4 * q);
            NEUROSIM_DPBUSD(c40, a, w0); NEUROSIM_DPBUSD(c41, a, w1);
            NEUROSIM_DPBUSD(c42, a, w2); NEUROSIM_DPBUSD(c43, a, w3);
        }
        if constexpr (R > 5) {
            const __m512i a = bcast4(x + 5 * ldx + 4 * q);
            NEUROSIM_DPBUSD(c50, a, w0); NEUROSIM_DPBUSD(c51, a, w1);
            NEUROSIM_DPBUSD(c52, a, w2); NEUROSIM_DPBUSD(c53, a, w3);
        }
    }
    if constexpr (R > 0) {
        int32_t* cr = sums + 0 * lds;
        _mm512_storeu_si512(cr, c00); _mm512_storeu_si512(cr + 16, c01);
        _mm512_storeu_si512(cr + 32, c02); _mm512_storeu_si512(cr + 48, c03);
    }
    if constexpr (R > 1) {
        int32_t* cr = sums + 1 * lds;
        _mm512_storeu_si512(cr, c10); _mm512_storeu_si512(cr + 16, c11);
        _mm512_storeu_si512(cr + 32, c12); _mm512_storeu_si512(cr + 48, c13);
    }
    if constexpr (R > 2) {
        int32_t* cr = sums + 2 * lds;
        _mm512_storeu_si512(cr, c20); _mm512_storeu_si512(cr + 16, c21);
        _mm512_storeu_si512(cr + 32, c22); _mm512_storeu_si512(cr + 48, c23);
    }
    if constexpr (R > 3) {
        int32_t* cr = sums + 3 * lds;
        _mm512_storeu_si512(cr, c30); _mm512_storeu_si512(cr + 16, c31);
        _mm512_storeu_si512(cr + 32, c32); _mm512_storeu_si512(cr + 48, c33);
    }
    if constexpr (R > 4) {
        int32_t* cr = sums + 4 * lds;
        _mm512_storeu_si512(cr, c40); _mm512_storeu_si512(cr + 16, c41);
        _mm512_storeu_si512(cr + 32, c42); _mm512_storeu_si512(cr + 48, c43);
    }
    if constexpr (R > 5) {
        int32_t* cr = sums + 5 * lds;
        _mm512_storeu_si512(cr, c50); _mm512_storeu_si512(cr + 16, c51);
        _mm512_storeu_si512(cr + 32, c52); _mm512_storeu_si512(cr + 48, c53);
    }
}

// One K chunk of the tile of R x-rows from row i of a panel: from the partial sums in c (ldc) when
// `resume`, back into them unless `last`, where the tile's sums go through the output stage into
// out (row i, the panel's first column; ldo = m) instead.
template <int R>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void vnni512_tile_chunk(
    const uint8_t* xq, int64_t kp, const int8_t* wp, int64_t kq, int32_t* c, int64_t ldc, bool resume, bool last,
    const int64_t* corr, int32_t* out, int64_t ldo, int64_t valid, int64_t i) {
    const int32_t* in = resume ? c + i * ldc : nullptr;
    if (!last) {
        vnni512_tile<R>(xq + i * kp, kp, wp, kq, in, ldc, c + i * ldc, ldc);
        return;
    }
    alignas(64) int32_t sums[R * VNNI_PANEL];
    vnni512_tile<R>(xq + i * kp, kp, wp, kq, in, ldc, sums, VNNI_PANEL);
    finish_tile(sums, R, corr, out + i * ldo, ldo, valid);
}

// Driver: blocks of MC = 12 x-rows (12 x kp bytes, in L1 / L2 while the block's tiles pass every
// panel), panels of 64 columns, 6-row tiles (a shorter tile for the last rows), K in chunks of
// at most KQC = 1024 quads (a panel's chunk, 64 x 4 KB, stays in L2 while the block's two tiles
// pass it). With K <= 4096 (one chunk) every tile starts at 0 and its sums go through the output
// stage (finish_tile) straight into out: no n x m int32 buffer, no pass over it. A longer K keeps
// partial sums in c (n x mp) between its chunks. Partial sums are exact in int32 (K <=
// MAX_FAN_IN), so the blocking changes no result. Measured side by side with torch's fbgemm
// (1024 x 2048 x 2048, one thread, AMD Zen 4 with 32 KB L1d and 1 MB L2, 2026-12-06): the
// earlier driver (blocks of 96 rows, 128-quad chunks sized for a 48 KB L1, an int32 buffer and
// a separate finish) 381 / 394 GOPS against fbgemm's 390 (0.98x / 1.01x, signed / non-negative
// inputs); this one 428-444 GOPS against 367-414 (1.07-1.20x).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void dense_vnni512(
    const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out) {
    constexpr int64_t KQC = 1024, MC = 12;
    const int64_t m = pw.m, k = pw.k, kp = pw.kp, kq_n = kp / 4;
    const int64_t mp = round_up(std::max<int64_t>(m, 1), VNNI_PANEL), panels = mp / VNNI_PANEL;
    const std::vector<uint8_t> xs = offset_x(x, n, k, n, kp);
    std::vector<int32_t> c(kq_n > KQC ? n * mp : 0);
    std::vector<int64_t> corr(mp, 0);  // bias - 128 * sum_k w per column (0 past m)
    for (int64_t j = 0; j < m; ++j) corr[j] = int64_t{bias ? bias[j] : 0} - pw.rowsum[j];
    const int8_t* W = pw.w8.data();
    for (int64_t i0 = 0; i0 < n; i0 += MC) {
        const int64_t i1 = std::min(n, i0 + MC);
        for (int64_t q0 = 0; q0 < kq_n; q0 += KQC) {
            const int64_t kq = std::min(KQC, kq_n - q0);
            const bool last = q0 + kq >= kq_n;
            for (int64_t jp = 0; jp < panels; ++jp) {
                const int8_t* wp = W + (jp * kq_n + q0) * 4 * VNNI_PANEL;
                const uint8_t* xq = xs.data() + 4 * q0;
                const int64_t col = jp * VNNI_PANEL;
                int32_t* cp = c.empty() ? nullptr : c.data() + col;
                const int64_t* cc = corr.data() + col;
                int64_t i = i0;
                for (; i + 6 <= i1; i += 6) vnni512_tile_chunk<6>(xq, kp, wp, kq, cp, mp, q0 > 0, last, cc, out + col, m, m - col, i);
                switch (i1 - i) {
                    case 5: vnni512_tile_chunk<5>(xq, kp, wp, kq, cp, mp, q0 > 0, last, cc, out + col, m, m - col, i); break;
                    case 4: vnni512_tile_chunk<4>(xq, kp, wp, kq, cp, mp, q0 > 0, last, cc, out + col, m, m - col, i); break;
                    case 3: vnni512_tile_chunk<3>(xq, kp, wp, kq, cp, mp, q0 > 0, last, cc, out + col, m, m - col, i); break;
                    case 2: vnni512_tile_chunk<2>(xq, kp, wp, kq, cp, mp, q0 > 0, last, cc, out + col, m, m - col, i); break;
                    case 1: vnni512_tile_chunk<1>(xq, kp, wp, kq, cp, mp, q0 > 0, last, cc, out + col, m, m - col, i); break;
                    default: break;
                }
            }
        }
    }
}

// ---- AMX-INT8: tdpbusd on tiles, the same u8 (x + 128) x s8 sums and the same weight panels
// (a B tile is 16 k-quads x 16 columns: 16 rows of 64 bytes at a stride of 256 in a panel).
// C blocks of 32 rows x 32 columns in four 16 x 16 int32 tiles (tmm0-3), A tiles of 16 x-rows x
// 64 bytes (tmm4-5), B tiles (tmm6-7); per 64 k: 4 tile loads and 4 tdpbusd of 16 x 16 x 64 MACs.
struct TileConfig {
    uint8_t palette = 1, start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vnni"))) void dense_amx(
    const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out) {
    const int64_t m = pw.m, k = pw.k, kp = pw.kp, kq_n = kp / 4;
    const int64_t mp = round_up(std::max<int64_t>(m, 1), VNNI_PANEL), panels = mp / VNNI_PANEL;
    const int64_t np = round_up(std::max<int64_t>(n, 1), 32);
    const std::vector<uint8_t> xs = offset_x(x, n, k, np, kp);  // padding rows: x = 0 (0x80)
    std::vector<int32_t> c(np * mp);
    TileConfig cfg;
    for (int t = 0; t < 8; ++t) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    const int8_t* W = pw.w8.data();
    const int64_t ldc = mp * 4, ldb = 4 * VNNI_PANEL;
    constexpr int64_t MC = 128;  // rows of x per block: 128 x K bytes stay in L2 while the panels pass
    for (int64_t i0 = 0; i0 < np; i0 += MC)
        for (int64_t jp = 0; jp < panels; ++jp)
            for (int64_t i = i0; i < std::min(np, i0 + MC); i += 32) {
                const uint8_t* a0 = xs.data() + i * kp;
                const uint8_t* a1 = a0 + 16 * kp;
                for (int64_t h = 0; h < 2; ++h) {  // the two 32-column halves of the panel
                    const int8_t* b = W + jp * kq_n * ldb + 2 * h * 64;
                    _tile_zero(0);
                    _tile_zero(1);
                    _tile_zero(2);
                    _tile_zero(3);
                    for (int64_t q = 0; q < kq_n; q += 16) {
                        _tile_loadd(4, a0 + 4 * q, kp);
                        _tile_loadd(5, a1 + 4 * q, kp);
                        _tile_loadd(6, b + q * ldb, ldb);
                        _tile_loadd(7, b + q * ldb + 64, ldb);
                        _tile_dpbusd(0, 4, 6);
                        _tile_dpbusd(1, 4, 7);
                        _tile_dpbusd(2, 5, 6);
                        _tile_dpbusd(3, 5, 7);
                    }
                    int32_t* cp = c.data() + i * mp + jp * VNNI_PANEL + 32 * h;
                    _tile_stored(0, cp, ldc);
                    _tile_stored(1, cp + 16, ldc);
                    _tile_stored(2, cp + 16 * mp, ldc);
                    _tile_stored(3, cp + 16 * mp + 16, ldc);
                }
            }
    _tile_release();
    finish(c.data(), mp, n, m, pw.rowsum.data(), bias, out);
}

// VNNI row kernels (x + 128 as u8, vpdpbusd, a horizontal sum per output and K chunk) on weights
// in rows of kp bytes: the AVX-512 one is dense_mac's AVX512VNNI path for M < VNNI_TILE_MIN_M (and
// the previous kernel for every M, timed beside the tile kernel by the benchmark); the 256-bit
// VEX one is the AVXVNNI path.
// What both VNNI row kernels share: x + 128 as u8 rows of kp bytes, weights in rows of kp bytes.
struct VnniU8Rows {
    using X = uint8_t;
    static constexpr int64_t KC = 4096;
    static constexpr bool OFFSET = true;
    static int64_t ldx(const PackedWeights& pw) { return pw.kp; }
    static int64_t ldw(const PackedWeights& pw) { return pw.kp; }
    static const int8_t* weights(const PackedWeights& pw) { return pw.w8.data(); }
    static void prepare(const int8_t* x, int64_t n, int64_t k, int64_t np, int64_t ldx, uint8_t* xs) {
        offset_x(x, n, k, np, ldx, xs);
    }
};

struct Vnni512Rows : VnniU8Rows {
    __attribute__((target("avx512f,avx512bw,avx512vnni"))) static void dot4x2(
        const uint8_t* x0, int64_t ldx, const int8_t* w0, int64_t ldw, int64_t kc, int32_t* r) {
        const int8_t* w1 = w0 + ldw;
        __m512i acc[4][2];
        for (int q = 0; q < 4; ++q) acc[q][0] = acc[q][1] = _mm512_setzero_si512();
        for (int64_t t = 0; t < kc; t += 64) {
            const __m512i b0 = _mm512_loadu_si512(w0 + t), b1 = _mm512_loadu_si512(w1 + t);
            for (int q = 0; q < 4; ++q) {
                const __m512i a = _mm512_loadu_si512(x0 + q * ldx + t);
                acc[q][0] = _mm512_dpbusd_epi32(acc[q][0], a, b0);
                acc[q][1] = _mm512_dpbusd_epi32(acc[q][1], a, b1);
            }
        }
        for (int q = 0; q < 4; ++q)
            for (int e = 0; e < 2; ++e) r[2 * q + e] = _mm512_reduce_add_epi32(acc[q][e]);
    }
};

struct AvxVnniRows : VnniU8Rows {
    __attribute__((target("avx2,avxvnni"))) static void dot4x2(const uint8_t* x0, int64_t ldx, const int8_t* w0,
                                                               int64_t ldw, int64_t kc, int32_t* r) {
        const int8_t* w1 = w0 + ldw;
        __m256i acc[4][2];
        for (int q = 0; q < 4; ++q) acc[q][0] = acc[q][1] = _mm256_setzero_si256();
        for (int64_t t = 0; t < kc; t += 32) {
            const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + t));
            const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + t));
            for (int q = 0; q < 4; ++q) {
                const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x0 + q * ldx + t));
                acc[q][0] = _mm256_dpbusd_avx_epi32(acc[q][0], a, b0);
                acc[q][1] = _mm256_dpbusd_avx_epi32(acc[q][1], a, b1);
            }
        }
        hsum4x2_store(acc[0][0], acc[0][1], acc[1][0], acc[1][1], r);
        hsum4x2_store(acc[2][0], acc[2][1], acc[3][0], acc[3][1], r + 4);
    }
};

// The entry points: the driver instantiated per micro-kernel, for its instruction set.
__attribute__((target("avx2"))) void dense_avx2_int16(const PackedWeights& pw, const int8_t* x, int64_t n,
                                                       const int32_t* bias, int32_t* out) {
    dense_rows<Avx2Int16>(pw, x, n, bias, out);
}
__attribute__((target("avx2"))) void dense_avx2_uint8(const PackedWeights& pw, const int8_t* x, int64_t n,
                                                       const int32_t* bias, int32_t* out) {
    dense_rows<Avx2Uint8>(pw, x, n, bias, out);
}
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void dense_vnni512_rows(
    const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out) {
    dense_rows<Vnni512Rows>(pw, x, n, bias, out);
}
__attribute__((target("avx2,avxvnni"))) void dense_avxvnni_rows(const PackedWeights& pw, const int8_t* x, int64_t n,
                                                                const int32_t* bias, int32_t* out) {
    dense_rows<AvxVnniRows>(pw, x, n, bias, out);
}

#endif  // NEUROSIM_X86

}  // namespace

void dense_mac_vnni512_rows(const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out) {
#if NEUROSIM_X86
    if (n > 0 && pw.m > 0 && pw.k > 0) dense_vnni512_rows(pw, x, n, bias, out);
#endif
}

void dense_mac(const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out) {
    if (n <= 0 || pw.m <= 0) return;
    if (pw.k == 0) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < pw.m; ++j) out[i * pw.m + j] = bias ? bias[j] : 0;
        return;
    }
    switch (pw.path) {
#if NEUROSIM_X86
        case AVX2:
            if (all_non_negative(x, n * pw.k)) dense_avx2_uint8(pw, x, n, bias, out);
            else dense_avx2_int16(pw, x, n, bias, out);
            break;
        case AVX512VNNI:
            if (pw.panels) dense_vnni512(pw, x, n, bias, out);
            else dense_vnni512_rows(pw, x, n, bias, out);
            break;
        case AVXVNNI: dense_avxvnni_rows(pw, x, n, bias, out); break;
        case AMX: dense_amx(pw, x, n, bias, out); break;
#endif
        default: dense_scalar(pw, x, n, bias, out);
    }
}

// ===================================================================== spike accumulation

namespace {

// Active inputs of one row: indices and values of the nonzero x[k].
int64_t gather_active(const int8_t* x, int64_t k, int32_t* idx, int8_t* val) {
    int64_t na = 0;
    for (int64_t t = 0; t < k; ++t) {
        idx[na] = static_cast<int32_t>(t);
        val[na] = x[t];
        na += x[t] != 0;
    }
    return na;
}

void spike_row_scalar(const int32_t* idx, const int8_t* val, int64_t na, const int8_t* wt, int64_t m,
                      int32_t* acc) {
    for (int64_t a = 0; a < na; ++a) {
        const int8_t* row = wt + static_cast<int64_t>(idx[a]) * m;
        const int32_t v = val[a];
        for (int64_t j = 0; j < m; ++j) acc[j] += v * row[j];
    }
}

#if NEUROSIM_X86
__attribute__((target("avx2"))) inline __m256i load8(const int8_t* p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

__attribute__((target("avx2"))) void spike_row_avx2(const int32_t* idx, const int8_t* val, int64_t na,
                                                    const int8_t* wt, int64_t m, int32_t* acc) {
    int64_t j = 0;
    for (; j + 64 <= m; j += 64) {  // 64 outputs in 8 registers, the active rows streamed through
        __m256i a[8];
        for (int q = 0; q < 8; ++q) a[q] = _mm256_setzero_si256();
        for (int64_t e = 0; e < na; ++e) {
            const int8_t* row = wt + static_cast<int64_t>(idx[e]) * m + j;
            if (val[e] == 1) {
                for (int q = 0; q < 8; ++q) a[q] = _mm256_add_epi32(a[q], load8(row + 8 * q));
            } else {
                const __m256i v = _mm256_set1_epi32(val[e]);
                for (int q = 0; q < 8; ++q) a[q] = _mm256_add_epi32(a[q], _mm256_mullo_epi32(v, load8(row + 8 * q)));
            }
        }
        for (int q = 0; q < 8; ++q)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j + 8 * q),
                                _mm256_add_epi32(a[q], _mm256_loadu_si256(reinterpret_cast<__m256i*>(acc + j + 8 * q))));
    }
    for (; j + 8 <= m; j += 8) {
        __m256i a = _mm256_setzero_si256();
        for (int64_t e = 0; e < na; ++e) {
            const int8_t* row = wt + static_cast<int64_t>(idx[e]) * m + j;
            a = _mm256_add_epi32(a, _mm256_mullo_epi32(_mm256_set1_epi32(val[e]), load8(row)));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j),
                            _mm256_add_epi32(a, _mm256_loadu_si256(reinterpret_cast<__m256i*>(acc + j))));
    }
    for (; j < m; ++j)
        for (int64_t e = 0; e < na; ++e) acc[j] += static_cast<int32_t>(val[e]) * wt[static_cast<int64_t>(idx[e]) * m + j];
}
#endif  // NEUROSIM_X86

}  // namespace

int64_t spike_accumulate(const int8_t* x, int64_t n, int64_t k, const int8_t* wt, int64_t m,
                         const int32_t* bias, int32_t* out, int path, int64_t* row_active) {
    std::vector<int32_t> idx(k > 0 ? k : 1), acc(m > 0 ? m : 1);
    std::vector<int8_t> val(k > 0 ? k : 1);
    int64_t active = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t na = gather_active(x + i * k, k, idx.data(), val.data());
        active += na;
        if (row_active) row_active[i] = na;
        std::fill(acc.begin(), acc.end(), 0);
#if NEUROSIM_X86
        if (path != SCALAR) spike_row_avx2(idx.data(), val.data(), na, wt, m, acc.data());
        else
#endif
            spike_row_scalar(idx.data(), val.data(), na, wt, m, acc.data());
        for (int64_t j = 0; j < m; ++j) out[i * m + j] = sat32(static_cast<int64_t>(acc[j]) + (bias ? bias[j] : 0));
    }
    return active;
}

// ======================================================== event-driven convolution
// For every active input x[t, c, y, x] != 0 and every kernel tap (dy, dx) that maps it onto an
// output position (oy, ox) = ((y + pad - dy) / stride, (x + pad - dx) / stride) (exact division,
// inside the output), add x * w[:, c, dy, dx] to out[t, oy*Wo + ox, :]. Same sums as im2col + MAC,
// but only the active inputs are touched; row_active[t, p] counts the active inputs seen by p.

namespace {

template <bool Vec>
inline void axpy_row(int32_t* acc, const int8_t* w, int64_t m, int32_t v);

template <>
inline void axpy_row<false>(int32_t* acc, const int8_t* w, int64_t m, int32_t v) {
    for (int64_t j = 0; j < m; ++j) acc[j] += v * w[j];
}

#if NEUROSIM_X86
template <>
__attribute__((target("avx2"))) inline void axpy_row<true>(int32_t* acc, const int8_t* w, int64_t m, int32_t v) {
    int64_t j = 0;
    if (v == 1) {
        for (; j + 8 <= m; j += 8) {
            __m256i a = _mm256_loadu_si256(reinterpret_cast<__m256i*>(acc + j));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j), _mm256_add_epi32(a, load8(w + j)));
        }
    } else {
        const __m256i vv = _mm256_set1_epi32(v);
        for (; j + 8 <= m; j += 8) {
            __m256i a = _mm256_loadu_si256(reinterpret_cast<__m256i*>(acc + j));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + j),
                                _mm256_add_epi32(a, _mm256_mullo_epi32(vv, load8(w + j))));
        }
    }
    for (; j < m; ++j) acc[j] += v * w[j];
}

__attribute__((target("avx2"))) inline uint32_t nonzero_mask32(const int8_t* p) {
    const __m256i blk = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return ~static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(blk, _mm256_setzero_si256())));
}
#endif  // NEUROSIM_X86

template <bool Vec>
__attribute__((always_inline)) inline int64_t conv_events_body(const ConvEventsArgs& a) {
    const int64_t hw = a.h * a.w, p_out = a.ho * a.wo;
    // First tap and output coordinate of every input row / column (no division in the loops):
    // taps d ≡ (y + pad) mod stride, output (y + pad - d) / stride, decreasing by 1 per tap.
    std::vector<int32_t> dy0(a.h), oy0(a.h), dx0(a.w), ox0v(a.w);
    for (int64_t y = 0; y < a.h; ++y) {
        dy0[y] = static_cast<int32_t>((y + a.pad) % a.stride);
        oy0[y] = static_cast<int32_t>((y + a.pad - dy0[y]) / a.stride);
    }
    for (int64_t x = 0; x < a.w; ++x) {
        dx0[x] = static_cast<int32_t>((x + a.pad) % a.stride);
        ox0v[x] = static_cast<int32_t>((x + a.pad - dx0[x]) / a.stride);
    }
    const int64_t m = a.m, kwm = a.kw * m;
    // wphase[c, dy, roff[r] + j] = w[c, dy, r + stride*(nr(r) - 1 - j)]: per residue r of dx,
    // the taps in reverse order.
    std::vector<int64_t> roff(a.stride + 1, 0);
    for (int64_t r = 0; r < a.stride; ++r)
        roff[r + 1] = roff[r] + std::max<int64_t>(0, (a.kw - r + a.stride - 1) / a.stride);
    std::vector<int8_t> wphase(a.c * a.kh * kwm);
    for (int64_t row = 0; row < a.c * a.kh; ++row)
        for (int64_t r = 0; r < std::min<int64_t>(a.stride, a.kw); ++r) {
            const int64_t nr = roff[r + 1] - roff[r];
            for (int64_t j = 0; j < nr; ++j)
                std::memcpy(&wphase[(row * a.kw + roff[r] + j) * m], a.wt + (row * a.kw + r + a.stride * (nr - 1 - j)) * m, m);
        }
    struct Event {
        int32_t ox_lo, n, woff, v;
    };
    std::vector<Event> events(a.w > 0 ? a.w : 1);
    int64_t active = 0;
    for (int64_t t = 0; t < a.steps; ++t) {
        int32_t* acc = a.out + t * p_out * m;
        std::fill(acc, acc + p_out * m, 0);
        int64_t* ra = a.row_active ? a.row_active + t * p_out : nullptr;
        if (ra) std::fill(ra, ra + p_out, 0);
        for (int64_t c = 0; c < a.c; ++c) {
            const int8_t* xc = a.x + (t * a.c + c) * hw;
            for (int64_t y = 0; y < a.h; ++y) {
                const int8_t* xrow = xc + y * a.w;
                // 1. the row's events, each with its output span: kernel row dy hits output row oy
                //    at ox = ox0 - i through taps dx = r + stride*i (r = dx0[xx]); the weights of
                //    residue r are stored reversed (wphase), so one contiguous axpy of n*m values
                //    covers the span.
                int64_t ne = 0;
                auto add_event = [&](int64_t xx, int32_t v) __attribute__((always_inline)) {
                    ++active;
                    const int64_t r = dx0[xx], nr = roff[r + 1] - roff[r];
                    const int64_t ox0 = ox0v[xx];
                    const int64_t i_lo = std::max<int64_t>(0, ox0 - a.wo + 1), i_hi = std::min<int64_t>(nr - 1, ox0);
                    if (i_hi < i_lo) return;
                    Event& e = events[ne++];
                    e.ox_lo = static_cast<int32_t>(ox0 - i_hi);
                    e.n = static_cast<int32_t>(i_hi - i_lo + 1);
                    e.woff = static_cast<int32_t>(roff[r] + nr - 1 - i_hi);
                    e.v = v;
                };
                int64_t xx = 0;
#if NEUROSIM_X86
                if constexpr (Vec) {  // skip 32 zero inputs at a time
                    for (; xx + 32 <= a.w; xx += 32) {
                        uint32_t nz = nonzero_mask32(xrow + xx);
                        while (nz) {
                            const int b = __builtin_ctz(nz);
                            nz &= nz - 1;
                            add_event(xx + b, xrow[xx + b]);
                        }
                    }
                }
#endif
                for (; xx < a.w; ++xx)
                    if (xrow[xx] != 0) add_event(xx, xrow[xx]);
                if (ne == 0) continue;
                // 2. every kernel row that reaches an output row, for all the row's events
                int64_t oy = oy0[y];
                for (int64_t dy = dy0[y]; dy < a.kh && oy >= 0; dy += a.stride, --oy) {
                    if (oy >= a.ho) continue;
                    const int8_t* wrow = wphase.data() + (c * a.kh + dy) * kwm;
                    int32_t* arow = acc + oy * a.wo * m;
                    for (int64_t q = 0; q < ne; ++q) {
                        const Event& e = events[q];
                        axpy_row<Vec>(arow + e.ox_lo * m, wrow + e.woff * m, e.n * m, e.v);
                    }
                    if (ra) {
                        int64_t* rrow = ra + oy * a.wo;
                        for (int64_t q = 0; q < ne; ++q)
                            for (int32_t u = 0; u < events[q].n; ++u) ++rrow[events[q].ox_lo + u];
                    }
                }
            }
        }
        if (a.bias) {  // |acc| <= MAX_FAN_IN * 2^14 = 2^30, so acc + bias needs int64 only for the clamp
            for (int64_t p = 0; p < p_out; ++p) {
                int32_t* ap = acc + p * m;
                for (int64_t j = 0; j < m; ++j) ap[j] = sat32(static_cast<int64_t>(ap[j]) + a.bias[j]);
            }
        }
    }
    return active;
}

int64_t conv_events_scalar(const ConvEventsArgs& a) { return conv_events_body<false>(a); }
#if NEUROSIM_X86
__attribute__((target("avx2"))) int64_t conv_events_avx2(const ConvEventsArgs& a) { return conv_events_body<true>(a); }
#endif

}  // namespace

int64_t conv_events(const ConvEventsArgs& a, int path) {
#if NEUROSIM_X86
    if (path != SCALAR) return conv_events_avx2(a);
#endif
    return conv_events_scalar(a);
}

// ================================================================================ im2col
// out[p, t, (c, i, j)] = x[t, c, oy*s - pad + i, ox*s - pad + j] (0 outside), p = oy*Wo + ox:
// the patches of intnet.im2col, position-major so a core's positions are contiguous rows.
// row_nonzero[p, t] (optional) counts the nonzero entries of each patch (the active inputs).
void im2col_pt(const int8_t* x, int64_t steps, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
               int64_t stride, int64_t pad, int8_t* out, int64_t* row_nonzero) {
    const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
    const int64_t k = c * kh * kw;
    const int8_t* out_end = out + ho * wo * steps * k;
    for (int64_t oy = 0; oy < ho; ++oy)
        for (int64_t ox = 0; ox < wo; ++ox) {
            const int64_t p = oy * wo + ox;
            const int64_t x0 = ox * stride - pad;
            const bool inside_x = x0 >= 0 && x0 + kw <= w;
            for (int64_t t = 0; t < steps; ++t) {
                int8_t* row = out + (p * steps + t) * k;
                for (int64_t ci = 0; ci < c; ++ci) {
                    const int8_t* xc = x + (t * c + ci) * h * w;
                    for (int64_t i = 0; i < kh; ++i) {
                        const int64_t y = oy * stride - pad + i;
                        int8_t* r = row + (ci * kh + i) * kw;
                        if (y < 0 || y >= h) {
                            std::memset(r, 0, kw);
                        } else if (inside_x && kw <= 8 && r + 8 <= out_end && x0 + 8 <= w) {
                            std::memcpy(r, xc + y * w + x0, 8);  // fixed size: one move; the spill is overwritten next
                        } else if (inside_x) {
                            std::memcpy(r, xc + y * w + x0, kw);
                        } else {
                            for (int64_t j = 0; j < kw; ++j) {
                                const int64_t xx = x0 + j;
                                r[j] = (xx >= 0 && xx < w) ? xc[y * w + xx] : 0;
                            }
                        }
                    }
                }
                if (row_nonzero) {
                    int64_t nz = 0;
                    for (int64_t e = 0; e < k; ++e) nz += row[e] != 0;
                    row_nonzero[p * steps + t] = nz;
                }
            }
        }
}

// ============================================================ soma: LIF and output stages
// The bodies are written once (branch-free int32) and compiled twice: baseline and AVX2.

namespace {

using soma::lif_body;
using soma::requant_body;
using soma::act_body;

void lif_scalar(const int32_t* c, int32_t* v, int32_t* k, int8_t* s, int64_t n, const LIFParams& p) {
    lif_body(c, v, k, s, n, p);
}
#if NEUROSIM_X86
__attribute__((target("avx2"))) void lif_avx2(const int32_t* c, int32_t* v, int32_t* k, int8_t* s, int64_t n,
                                               const LIFParams& p) {
    // no refractory period and every counter 0 (they stay 0): the explicit AVX2 body (shift 0,
    // no bias), the compiled scalar body for the tail and otherwise
    int64_t done = 0;
    if (p.refractory_steps == 0) {
        int32_t any = 0;
        for (int64_t i = 0; i < n; ++i) any |= k[i];
        if (!any) {
            if (p.reset_mode == 0) done = soma::lif_fused_avx2<int32_t, 0>(c, nullptr, n, 0, p, v, s);
            else if (p.reset_mode == 1) done = soma::lif_fused_avx2<int32_t, 1>(c, nullptr, n, 0, p, v, s);
            else done = soma::lif_fused_avx2<int32_t, 2>(c, nullptr, n, 0, p, v, s);
        }
    }
    lif_body(c + done, v + done, k + done, s + done, n - done, p);
}
#endif  // NEUROSIM_X86


constexpr int64_t CHUNK = 1024;

void output_scalar(const int32_t* acc, int8_t* out, int64_t n, int shift, int act, const int8_t* lut) {
    int32_t q[CHUNK];
    for (int64_t i = 0; i < n; i += CHUNK) {
        const int64_t c = std::min(CHUNK, n - i);
        requant_body(acc + i, q, c, shift, -128, 127);
        act_body(q, out + i, c, act, lut);
    }
}
#if NEUROSIM_X86
__attribute__((target("avx2"))) void output_avx2(const int32_t* acc, int8_t* out, int64_t n, int shift, int act,
                                                  const int8_t* lut) {
    int32_t q[CHUNK];
    for (int64_t i = 0; i < n; i += CHUNK) {
        const int64_t c = std::min(CHUNK, n - i);
        requant_body(acc + i, q, c, shift, -128, 127);
        act_body(q, out + i, c, act, lut);
    }
}
#endif  // NEUROSIM_X86

constexpr int32_t I32_MIN = neurosim::intmath::ACC_LO, I32_MAX = neurosim::intmath::ACC_HI;
void current_scalar(const int32_t* acc, int32_t* out, int64_t n, int shift) {
    requant_body(acc, out, n, shift, I32_MIN, I32_MAX);
}
#if NEUROSIM_X86
__attribute__((target("avx2"))) void current_avx2(const int32_t* acc, int32_t* out, int64_t n, int shift) {
    requant_body(acc, out, n, shift, I32_MIN, I32_MAX);
}
#endif

__attribute__((always_inline)) inline void groups_body(const int8_t* values, int64_t steps, int64_t n,
                                                        const int64_t* ptr, const int32_t* idx, int64_t groups,
                                                        int64_t* out) {
    // Nonzero count of every neuron over the steps first (one pass), then the group sums.
    std::vector<int32_t> count(n > 0 ? n : 1, 0);
    for (int64_t t = 0; t < steps; ++t) {
        const int8_t* vt = values + t * n;
        for (int64_t j = 0; j < n; ++j) count[j] += vt[j] != 0;
    }
    for (int64_t g = 0; g < groups; ++g) {
        int64_t s = 0;
        for (int64_t e = ptr[g]; e < ptr[g + 1]; ++e) s += count[idx[e]];
        out[g] = s;
    }
}
void groups_scalar(const int8_t* v, int64_t t, int64_t n, const int64_t* p, const int32_t* i, int64_t g, int64_t* o) {
    groups_body(v, t, n, p, i, g, o);
}
#if NEUROSIM_X86
__attribute__((target("avx2"))) void groups_avx2(const int8_t* v, int64_t t, int64_t n, const int64_t* p,
                                                  const int32_t* i, int64_t g, int64_t* o) {
    groups_body(v, t, n, p, i, g, o);
}
#endif

}  // namespace

void lif_step(const int32_t* current, int32_t* v, int32_t* counter, int8_t* spikes, int64_t n, const LIFParams& p,
              int path) {
#if NEUROSIM_X86
    if (path != SCALAR) return lif_avx2(current, v, counter, spikes, n, p);
#endif
    lif_scalar(current, v, counter, spikes, n, p);
}

void output_stage(const int32_t* acc, int8_t* out, int64_t n, int shift, int act, const int8_t* lut, int path) {
#if NEUROSIM_X86
    if (path != SCALAR) return output_avx2(acc, out, n, shift, act, lut);
#endif
    output_scalar(acc, out, n, shift, act, lut);
}

void current_stage(const int32_t* acc, int32_t* out, int64_t n, int shift, int path) {
#if NEUROSIM_X86
    if (path != SCALAR) return current_avx2(acc, out, n, shift);
#endif
    current_scalar(acc, out, n, shift);
}

void count_nonzero_groups(const int8_t* values, int64_t steps, int64_t n, const int64_t* ptr, const int32_t* idx,
                          int64_t groups, int64_t* out, int path) {
#if NEUROSIM_X86
    if (path != SCALAR) return groups_avx2(values, steps, n, ptr, idx, groups, out);
#endif
    groups_scalar(values, steps, n, ptr, idx, groups, out);
}

void lif_run(const int32_t* current, int32_t* v, int32_t* counter, int8_t* spikes, int64_t steps, int64_t n,
             const LIFParams& p, int path) {
    for (int64_t t = 0; t < steps; ++t) lif_step(current + t * n, v, counter, spikes + t * n, n, p, path);
}

// Diagnostics: n rounds of 12 independent vpmaddwd (16 int8-range MACs each) on registers only,
// to measure the instruction's real throughput on this CPU (benchmarks divide by the time).
#if NEUROSIM_X86
__attribute__((target("avx2"))) int64_t madd_probe(int64_t n) {
    __m256i a0 = _mm256_set1_epi16(1), a1 = _mm256_set1_epi16(2), a2 = _mm256_set1_epi16(3), a3 = _mm256_set1_epi16(4);
    __m256i a4 = _mm256_set1_epi16(5), a5 = _mm256_set1_epi16(6), a6 = _mm256_set1_epi16(7), a7 = _mm256_set1_epi16(8);
    __m256i a8 = _mm256_set1_epi16(9), a9 = _mm256_set1_epi16(10), a10 = _mm256_set1_epi16(11), a11 = _mm256_set1_epi16(12);
    const __m256i b = _mm256_set1_epi16(3);
    for (int64_t i = 0; i < n; ++i) {
        a0 = _mm256_madd_epi16(a0, b); a1 = _mm256_madd_epi16(a1, b); a2 = _mm256_madd_epi16(a2, b);
        a3 = _mm256_madd_epi16(a3, b); a4 = _mm256_madd_epi16(a4, b); a5 = _mm256_madd_epi16(a5, b);
        a6 = _mm256_madd_epi16(a6, b); a7 = _mm256_madd_epi16(a7, b); a8 = _mm256_madd_epi16(a8, b);
        a9 = _mm256_madd_epi16(a9, b); a10 = _mm256_madd_epi16(a10, b); a11 = _mm256_madd_epi16(a11, b);
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7),
                         "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                 _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
    s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_add_epi32(a8, a9), _mm256_add_epi32(a10, a11)));
    return _mm256_extract_epi32(s, 0);
}

// n rounds of 12 independent zmm vpdpbusd (64 u8 x s8 MACs each) on registers only: the
// instruction's real throughput (Sapphire Rapids issues two per cycle, Zen 4 one: its 512-bit
// integer multiplies take both 256-bit halves of its pipes).
__attribute__((target("avx2,avx512f,avx512bw,avx512vnni"))) int64_t vnni512_probe(int64_t n) {
    // twelve named accumulators, not an array: GCC kept an array on the stack, a store per round
    __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2), a3 = _mm512_set1_epi32(3);
    __m512i a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5), a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7);
    __m512i a8 = _mm512_set1_epi32(8), a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
    const __m512i x = _mm512_set1_epi8(1), w = _mm512_set1_epi8(-1);
    for (int64_t i = 0; i < n; ++i) {
        // inline asm: the chains must not be folded (x . w is a constant)
        __asm__ volatile(
            "vpdpbusd %[w], %[x], %[a0]\n\tvpdpbusd %[w], %[x], %[a1]\n\tvpdpbusd %[w], %[x], %[a2]\n\t"
            "vpdpbusd %[w], %[x], %[a3]\n\tvpdpbusd %[w], %[x], %[a4]\n\tvpdpbusd %[w], %[x], %[a5]\n\t"
            "vpdpbusd %[w], %[x], %[a6]\n\tvpdpbusd %[w], %[x], %[a7]\n\tvpdpbusd %[w], %[x], %[a8]\n\t"
            "vpdpbusd %[w], %[x], %[a9]\n\tvpdpbusd %[w], %[x], %[a10]\n\tvpdpbusd %[w], %[x], %[a11]"
            : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5),
              [a6] "+v"(a6), [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
            : [x] "v"(x), [w] "v"(w));
    }
    const __m512i s = _mm512_add_epi32(
        _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                         _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7))),
        _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
    return _mm512_reduce_add_epi32(s);
}
#else
int64_t madd_probe(int64_t) { return 0; }  // never called: the module requires AVX2 first
int64_t vnni512_probe(int64_t) { return 0; }  // never called: the module checks for AVX-512 VNNI first
#endif

}  // namespace chip
