// Building blocks shared by the conv layer kernels (conv_layer.cpp) and the SNN chain
// (snn_chain.cpp): axis taps, event lists, the per-call work buffers, the fused soma step and
// the output writer. See conv_layer.cpp for the arithmetic.
#pragma once
#include <neurosim/intmath.h>
#include <neurosim/simd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"
#include "soma.h"

namespace chip {
namespace {  // (internal linkage: each including .cpp gets its own copy)

struct Tap {
    int32_t acc_off;  // offset into the step's accumulators (in Acc elements)
    int32_t w_off;    // offset into the widened weights (in Acc elements)
};

// Taps of every input coordinate along one axis: input u reaches output o through tap d when
// o * stride - pad + d == u (0 <= o < n_out, 0 <= d < k).
void axis_taps(int64_t n_in, int64_t n_out, int64_t k, int64_t stride, int64_t pad, int64_t acc_scale,
               int64_t w_scale, std::vector<int32_t>& ptr, std::vector<Tap>& taps) {
    ptr.assign(n_in + 1, 0);
    taps.clear();
    for (int64_t u = 0; u < n_in; ++u) {
        for (int64_t d = 0; d < k; ++d) {
            const int64_t num = u + pad - d;
            if (num < 0 || num % stride) continue;
            const int64_t o = num / stride;
            if (o >= n_out) continue;
            taps.push_back({static_cast<int32_t>(o * acc_scale), static_cast<int32_t>(d * w_scale)});
        }
        ptr[u + 1] = static_cast<int32_t>(taps.size());
    }
}

// a[0:n] += v * w[0:n] (v == 1 for spikes) on a small fixed-size block: copied to registers so
// the compiler vectorizes it (a and w never overlap, but it cannot prove that).
template <typename Acc, bool Bin, int N>
__attribute__((always_inline)) inline void add_block(Acc* a, const Acc* w, Acc v) {
    Acc ra[N], rw[N];
    std::memcpy(ra, a, sizeof ra);
    std::memcpy(rw, w, sizeof rw);
    for (int j = 0; j < N; ++j) ra[j] = static_cast<Acc>(ra[j] + (Bin ? rw[j] : static_cast<Acc>(v * rw[j])));
    std::memcpy(a, ra, sizeof ra);
}

template <typename Acc, bool Bin, int MS>
__attribute__((always_inline)) inline void add_tap(Acc* a, const Acc* w, int64_t m, Acc v) {
    if constexpr (MS > 0) {
        add_block<Acc, Bin, MS>(a, w, v);
    } else {
        int64_t j = 0;
        for (; j + 8 <= m; j += 8) add_block<Acc, Bin, 8>(a + j, w + j, v);
        for (; j < m; ++j) a[j] = static_cast<Acc>(a[j] + (Bin ? w[j] : static_cast<Acc>(v * w[j])));
    }
}

#if NEUROSIM_X86
// The same on AVX2 registers: 8 int32 accumulators per instruction.
template <typename Acc, bool Bin, int MS>
__attribute__((target("avx2"))) inline void add_tap_avx2(Acc* a, const Acc* w, int64_t m, Acc v) {
    const int64_t n = MS > 0 ? MS : m;
    int64_t j = 0;
    static_assert(sizeof(Acc) == 4, "int16 accumulators go through run_span / run_lut");
    const __m256i vv = _mm256_set1_epi32(v);
    for (; j + 8 <= n; j += 8) {
        __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j));
        if constexpr (!Bin) wv = _mm256_mullo_epi32(wv, vv);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(a + j),
                            _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j)), wv));
    }
    for (; j < n; ++j) a[j] = static_cast<Acc>(a[j] + (Bin ? w[j] : static_cast<Acc>(v * w[j])));
}

__attribute__((target("avx2"))) inline uint32_t nonzero_mask32(const int8_t* p) {
    const __m256i blk = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return ~static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(blk, _mm256_setzero_si256())));
}
#endif  // NEUROSIM_X86

// The set bits of every byte value as int32 positions (padded with zeros to 8): branch-free
// index lists, 8 mask bits per table entry.
struct BitPositions {
    alignas(32) int32_t t[256][8];
    constexpr BitPositions() : t() {
        for (int v = 0; v < 256; ++v) {
            int k = 0;
            for (int b = 0; b < 8; ++b)
                if ((v >> b) & 1) t[v][k++] = b;
        }
    }
};
inline constexpr BitPositions BIT_POSITIONS{};

#if NEUROSIM_X86
__attribute__((target("avx2"))) inline int64_t positions32(uint32_t nz, int32_t i, int32_t* idx, int64_t k) {
    for (int q = 0; q < 4; ++q) {
        const uint32_t byte = (nz >> (8 * q)) & 0xffu;
        const __m256i pos = _mm256_add_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(BIT_POSITIONS.t[byte])),
                                             _mm256_set1_epi32(i + 8 * q));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + k), pos);
        k += __builtin_popcount(byte);
    }
    return k;
}
#endif  // NEUROSIM_X86

// Positions of the nonzero bytes of row[0:n], in order, into idx (which has room for n + 32
// entries); returns their number. AVX2: each byte of a block's nonzero mask stores its 8
// table positions (+ offset) at once and advances by its popcount, with no branch per event
// (the loop over set bits mispredicted its exit once per 32-byte block).
template <bool Vec>
__attribute__((always_inline)) inline int64_t gather_nonzero(const int8_t* row, int64_t n, int32_t* idx) {
    int64_t i = 0, k = 0;
#if NEUROSIM_X86
    if constexpr (Vec) {
        for (; i + 32 <= n; i += 32) {
            const uint32_t nz = nonzero_mask32(row + i);
            k = positions32(nz, static_cast<int32_t>(i), idx, k);
        }
        if (i + 16 <= n) {
            const __m128i blk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i));
            uint32_t nz = ~static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(blk, _mm_setzero_si128()))) & 0xffffu;
            while (nz) {
                idx[k++] = static_cast<int32_t>(i + __builtin_ctz(nz));
                nz &= nz - 1;
            }
            i += 16;
        }
    } else
#endif
    {
        for (; i + 8 <= n; i += 8) {
            uint64_t word;
            std::memcpy(&word, row + i, 8);
            if (!word) continue;
            for (int b = 0; b < 8; ++b) {
                idx[k] = static_cast<int32_t>(i + b);
                k += row[i + b] != 0;
            }
        }
    }
    for (; i < n; ++i) {
        idx[k] = static_cast<int32_t>(i);
        k += row[i] != 0;
    }
    return k;
}

struct Work {
    std::vector<int32_t> cur;      // the step's currents / requantized values, accumulator layout
    std::vector<int32_t> v, cnt;   // LIF state, accumulator layout
    std::vector<int8_t> spk;       // the step's outputs, accumulator layout
    std::vector<int32_t> bias_pm, bias_cm;  // the bias of every accumulator, both layouts (0 without)
    bool small_bias = true;                 // every |bias| < 2^30: acc + bias cannot overflow int32
    bool bias_28 = true;                    // every |bias| <= 2^28 (lif_fused_avx2's Fast)
    // the chain's int16 membrane (lif16_bounds, soma::lif16_avx512): state, and bias + rounding
    // half for 32 neurons (the bias repeats every M neurons, M dividing 32)
    bool lif16 = false;
    std::vector<int16_t> v16;
    int16_t bias_half16[32] = {};
    std::vector<uint8_t> ocnt;  // output nonzero counts of the last < 255 steps (32 per vector add)
    int ocnt_steps = 0;
    std::vector<uint8_t> icnt;  // the same for the inputs (dense passes of lut and gemm)
    int icnt_steps = 0;

    // in_count += the input nonzeros of step x (C*H*W bytes), through the byte counters
    void count_inputs(const int8_t* x, int32_t* in_count) {
        if (!in_count) return;
        if (icnt.empty()) icnt.assign(in_size, 0);
        // raw pointers: a store through uint8_t* may alias anything, so with icnt[i] / icnt.size()
        // the vector's pointer and size are reloaded every iteration and nothing vectorizes
        uint8_t* __restrict c = icnt.data();
        const int8_t* __restrict xv = x;
        const size_t n = icnt.size();
        for (size_t i = 0; i < n; ++i) c[i] = static_cast<uint8_t>(c[i] + (xv[i] != 0));
        if (++icnt_steps == 255) flush_inputs(in_count);
    }
    void flush_inputs(int32_t* in_count) {
        if (!in_count || icnt_steps == 0) return;
        const uint8_t* c = icnt.data();
        const size_t n = icnt.size();
        for (size_t i = 0; i < n; ++i) in_count[i] += c[i];
        std::fill(icnt.begin(), icnt.end(), uint8_t(0));
        icnt_steps = 0;
    }
    size_t in_size = 0;

    // buffers for a layer call: state from zero, the bias of every accumulator in both layouts
    void init(const ConvLayerArgs& a) {
        const int64_t n = a.m * a.ho * a.wo;
        cur.resize(n);
        v.assign(n, 0);
        cnt.assign(n, 0);
        spk.resize(n);
        if (a.out_count) ocnt.assign(n, 0);
        in_size = static_cast<size_t>(a.c * a.h * a.w);
        if (!a.bias) {
            bias_pm.assign(n, 0);
            bias_cm.assign(n, 0);
        } else {
            const int64_t p_n = a.ho * a.wo;
            bias_pm.resize(n);
            bias_cm.resize(n);
            std::memcpy(bias_pm.data(), a.bias, a.m * sizeof(int32_t));  // position 0, then doubling copies
            for (int64_t done = a.m; done < n; done *= 2)
                std::memcpy(&bias_pm[done], bias_pm.data(), std::min(done, n - done) * sizeof(int32_t));
            for (int64_t j = 0; j < a.m; ++j) std::fill_n(&bias_cm[j * p_n], p_n, a.bias[j]);
            for (int64_t j = 0; j < a.m; ++j) small_bias &= a.bias[j] >= -(1 << 30) && a.bias[j] < (1 << 30);
            for (int64_t j = 0; j < a.m; ++j) bias_28 &= a.bias[j] >= -(1 << 28) && a.bias[j] <= (1 << 28);
        }
    }

    // out_count += the byte counts, which are then cleared
    void flush_counts(int32_t* out_count) {
        if (!out_count || ocnt_steps == 0) return;
        const uint8_t* c = ocnt.data();
        const size_t n = ocnt.size();
        for (size_t i = 0; i < n; ++i) out_count[i] += c[i];
        std::fill(ocnt.begin(), ocnt.end(), uint8_t(0));
        ocnt_steps = 0;
    }
};

// acc (n) + bias → requantize → soma, in the accumulator layout; bias index i / bstride % m.
// Vec: one fused AVX2 pass (soma::lif_fused_avx2 / ann_fused_avx2) when it applies, the scalar
// bodies on the tail and otherwise.
template <typename Acc, bool Vec>
__attribute__((always_inline)) inline void soma_step(const ConvLayerArgs& a, const Acc* acc, int64_t n,
                                                     bool position_major, Work& wk, int64_t off = 0) {
    // neurons off .. off + n - 1 of the step (state, bias and outputs at those indices)
    const int64_t m = a.m, p_out = a.ho * a.wo;
    int64_t done = 0;
    int32_t* v = wk.v.data() + off;
    int8_t* spk = wk.spk.data() + off;
#if NEUROSIM_X86
    if constexpr (Vec) {
        const int32_t* b = a.bias ? (position_major ? wk.bias_pm.data() : wk.bias_cm.data()) + off : nullptr;
        if (a.shift >= 0 && a.shift < 32 && wk.small_bias) {
            if (a.soma == 3 && a.lif.refractory_steps == 0 && sizeof(Acc) == 2 && wk.bias_28 &&
                a.lif.leak_alpha >= 0 && a.lif.leak_alpha <= 256 && a.lif.leak_beta == 0 &&
                (a.lif.reset_mode == 0 || (a.lif.reset_mode == 1 && a.lif.v_th >= 0))) {  // see lif_fused_avx2
                if (a.lif.reset_mode == 0) done = soma::lif_fused_avx2<Acc, 0, true>(acc, b, n, a.shift, a.lif, v, spk);
                else done = soma::lif_fused_avx2<Acc, 1, true>(acc, b, n, a.shift, a.lif, v, spk);
            } else if (a.soma == 3 && a.lif.refractory_steps == 0) {
                if (a.lif.reset_mode == 0) done = soma::lif_fused_avx2<Acc, 0>(acc, b, n, a.shift, a.lif, v, spk);
                else if (a.lif.reset_mode == 1) done = soma::lif_fused_avx2<Acc, 1>(acc, b, n, a.shift, a.lif, v, spk);
                else done = soma::lif_fused_avx2<Acc, 2>(acc, b, n, a.shift, a.lif, v, spk);
            } else if (a.soma == 0 || a.soma == 1) {
                done = soma::ann_fused_avx2<Acc>(acc, b, n, a.shift, a.soma, spk);
            }
        }
    }
#endif
    if (done == n) return;
    acc += done;
    const int64_t rest = n - done, o = off + done;
    int32_t* cur = wk.cur.data() + o;
    if (!a.bias) {
        for (int64_t i = 0; i < rest; ++i) cur[i] = acc[i];
    } else if (wk.small_bias) {  // |acc| <= 2^30, so acc + bias stays inside int32
        const int32_t* b = (position_major ? wk.bias_pm.data() : wk.bias_cm.data()) + o;
        for (int64_t i = 0; i < rest; ++i) cur[i] = static_cast<int32_t>(acc[i]) + b[i];
    } else {
        for (int64_t i = 0; i < rest; ++i) {
            const int64_t j = position_major ? (i + o) % m : (i + o) / p_out;
            cur[i] = neurosim::intmath::sat32(static_cast<int64_t>(acc[i]) + a.bias[j]);
        }
    }
    if (a.soma == 3) {
        soma::requant_body(cur, cur, rest, a.shift, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
        soma::lif_body(cur, wk.v.data() + o, wk.cnt.data() + o, wk.spk.data() + o, rest, a.lif);
    } else {
        soma::requant_body(cur, cur, rest, a.shift, -128, 127);
        soma::act_body(cur, wk.spk.data() + o, rest, a.soma, a.lut);
    }
}

// out (m, p) = in (p, m) for int8: 8×8 blocks with SSE2 unpacks (baseline x86-64), the rest scalar.
// Row j of out starts at out + j * ostride (ostride = p_n when not given: a band of positions of a
// wider (m, P) plane passes P).
inline void transpose_bytes(const int8_t* in, int64_t p_n, int64_t m, int8_t* out, int64_t ostride = -1) {
    if (ostride < 0) ostride = p_n;
    if (m == 1) {  // (one channel: both layouts are the same bytes)
        std::memcpy(out, in, p_n);
        return;
    }
    const int64_t pb = NEUROSIM_X86 && m % 8 == 0 ? p_n / 8 * 8 : 0;  // (SSE2, baseline x86-64)
#if NEUROSIM_X86
    for (int64_t j0 = 0; j0 < (pb ? m : 0); j0 += 8)
        for (int64_t p = 0; p < pb; p += 8) {
            const int8_t* src = in + p * m + j0;
            __m128i r[8];
            for (int k = 0; k < 8; ++k) r[k] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + k * m));
            const __m128i s0 = _mm_unpacklo_epi8(r[0], r[1]), s1 = _mm_unpacklo_epi8(r[2], r[3]);
            const __m128i s2 = _mm_unpacklo_epi8(r[4], r[5]), s3 = _mm_unpacklo_epi8(r[6], r[7]);
            const __m128i u0 = _mm_unpacklo_epi16(s0, s1), u1 = _mm_unpackhi_epi16(s0, s1);
            const __m128i u2 = _mm_unpacklo_epi16(s2, s3), u3 = _mm_unpackhi_epi16(s2, s3);
            const __m128i v[4] = {_mm_unpacklo_epi32(u0, u2), _mm_unpackhi_epi32(u0, u2),
                                  _mm_unpacklo_epi32(u1, u3), _mm_unpackhi_epi32(u1, u3)};
            for (int k = 0; k < 4; ++k) {
                _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (j0 + 2 * k) * ostride + p), v[k]);
                _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (j0 + 2 * k + 1) * ostride + p),
                                 _mm_unpackhi_epi64(v[k], v[k]));
            }
        }
#endif
    for (int64_t j = 0; j < m; ++j)
        for (int64_t p = pb; p < p_n; ++p) out[j * ostride + p] = in[p * m + j];
}

// Outputs of step t: spk (accumulator layout) → out[t] (M, P), and the output nonzero counts
// (byte counters, flushed into out_count every 255 steps and at the end of the run).
__attribute__((always_inline)) inline void write_step(const ConvLayerArgs& a, int64_t t, bool position_major,
                                                      const int8_t* spk, Work& wk) {
    const int64_t m = a.m, p_out = a.ho * a.wo, n = m * p_out;
    int8_t* o = a.out + t * n;
    if (position_major) {
        transpose_bytes(spk, p_out, m, o);
    } else {
        std::memcpy(o, spk, n);
    }
    if (a.out_count) {
        uint8_t* __restrict c = wk.ocnt.data();
        const int8_t* __restrict ov = o;
        for (int64_t i = 0; i < n; ++i) c[i] = static_cast<uint8_t>(c[i] + (ov[i] != 0));
        if (++wk.ocnt_steps == 255) wk.flush_counts(a.out_count);
    }
}

}  // namespace
}  // namespace chip
