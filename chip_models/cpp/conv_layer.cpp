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
//           against weight pairs (vpmaddwd), the position's M accumulators in registers.
// The soma then runs on the step's accumulators in one fused AVX2 pass (soma.h; scalar bodies
// otherwise; a shorter LIF pass when its clamps provably cannot act), and the spikes or
// activations are written channel-major (T, M, Ho, Wo).
// Per-input and per-output nonzero counts over the T steps feed the timing model (active inputs
// per core, packets per route).
// Threads (conv_layer_threads): the plan (mode, int16, 0/1) is made once from the whole input;
// then blocks of output rows (or, in lut mode with M % 16B == 0, blocks of 16k output channels)
// run as ordinary layer calls on a persistent pool (thread_pool.h), each writing disjoint
// outputs and counts: the same bits as one thread.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"
#include "soma.h"
#include "thread_pool.h"

namespace chip {

namespace {

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

// Positions of the nonzero bytes of row[0:n], in order, into idx (which has room for n + 32
// entries); returns their number. AVX2: each byte of a block's nonzero mask stores its 8
// table positions (+ offset) at once and advances by its popcount, with no branch per event
// (the loop over set bits mispredicted its exit once per 32-byte block).
template <bool Vec>
__attribute__((always_inline)) inline int64_t gather_nonzero(const int8_t* row, int64_t n, int32_t* idx) {
    int64_t i = 0, k = 0;
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
    } else {
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
            cur[i] = static_cast<int32_t>(std::clamp<int64_t>(static_cast<int64_t>(acc[i]) + a.bias[j],
                                                              std::numeric_limits<int32_t>::min(),
                                                              std::numeric_limits<int32_t>::max()));
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
inline void transpose_bytes(const int8_t* in, int64_t p_n, int64_t m, int8_t* out) {
    const int64_t pb = m % 8 == 0 ? p_n / 8 * 8 : 0;
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
                _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (j0 + 2 * k) * p_n + p), v[k]);
                _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (j0 + 2 * k + 1) * p_n + p),
                                 _mm_unpackhi_epi64(v[k], v[k]));
            }
        }
    for (int64_t j = 0; j < m; ++j)
        for (int64_t p = pb; p < p_n; ++p) out[j * p_n + p] = in[p * m + j];
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
                            if constexpr (Vec) add_tap_avx2<Acc, Bin, MS>(ar + tx->acc_off, wr + tx->w_off, m, v);
                            else add_tap<Acc, Bin, MS>(ar + tx->acc_off, wr + tx->w_off, m, v);
                        }
                    }
                }
            }
        }
        soma_step<Acc, Vec>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

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

template <bool Vec, int SPAN>
__attribute__((always_inline)) inline void run_span(const ConvLayerArgs& a, Work& wk) {
    const int64_t m = a.m, hw = a.h * a.w, s = a.stride;
    const int64_t L = (a.kw + s - 1) / s, span = SPAN > 0 ? SPAN : L * m;  // SPAN: known at compile time
    const int64_t right = std::max<int64_t>(0, (a.w - 1 + a.pad) / s - (a.wo - 1));
    const int64_t row_len = (L - 1 + a.wo + right) * m;  // accumulators per output row, spare included
    // window weights: wwin[((c*kh + dy)*s + r)*span + q*m + j] = w[j, c, dy, r + s*(L-1-q)] (0 past kw)
    std::vector<int16_t> wwin(a.c * a.kh * s * span, 0);
    for (int64_t c = 0; c < a.c; ++c)
        for (int64_t dy = 0; dy < a.kh; ++dy)
            for (int64_t r = 0; r < s; ++r)
                for (int64_t q = 0; q < L; ++q) {
                    const int64_t dx = r + s * (L - 1 - q);
                    if (dx >= a.kw) continue;
                    int16_t* e = wwin.data() + ((c * a.kh + dy) * s + r) * span + q * m;
                    for (int64_t j = 0; j < m; ++j) e[j] = a.weight[((j * a.c + c) * a.kh + dy) * a.kw + dx];
                }
    std::vector<int32_t> yptr;
    std::vector<Tap> ytaps;  // per input row: (output row offset, dy * s * span)
    axis_taps(a.h, a.ho, a.kh, s, a.pad, row_len, s * span, yptr, ytaps);
    std::vector<int16_t> accp(a.ho * row_len + span);
    // per input column u = x + pad: the window starts at output u/s - (L-1), i.e. at spare slot
    // u/s of the row, with the weights of residue u % s
    std::vector<int32_t> col_acc(a.w), col_w(a.w);
    for (int64_t xx = 0; xx < a.w; ++xx) {
        col_acc[xx] = static_cast<int32_t>((xx + a.pad) / s * m);
        col_w[xx] = static_cast<int32_t>((xx + a.pad) % s * span);
    }
    std::vector<int32_t> events(a.w + 32);
    for (int64_t t = 0; t < a.steps; ++t) {
        std::fill(accp.begin(), accp.end(), int16_t(0));
        for (int64_t c = 0; c < a.c; ++c) {
            const int8_t* xc = a.x + (t * a.c + c) * hw;
            const int16_t* wc = wwin.data() + c * a.kh * s * span;
            int32_t* cnt = a.in_count ? a.in_count + c * hw : nullptr;
            for (int64_t y = 0; y < a.h; ++y) {
                const Tap* ty0 = ytaps.data() + yptr[y];
                const Tap* ty1 = ytaps.data() + yptr[y + 1];
                const int8_t* row = xc + y * a.w;
                const int64_t ne = gather_nonzero<Vec>(row, a.w, events.data());
                for (int64_t e = 0; e < ne; ++e) {
                    const int64_t xx = events[e];
                    if (cnt) ++cnt[y * a.w + xx];
                    const int64_t a_off = col_acc[xx], w_off = col_w[xx];
                    for (const Tap* ty = ty0; ty < ty1; ++ty)
                        add_span<Vec>(accp.data() + ty->acc_off + a_off, wc + ty->w_off + w_off, span);
                }
            }
        }
        // the soma reads the valid outputs of each row in place: neurons oy*Wo*M .. of (P, M)
        // (one pass per row instead of copying the rows into a (P, M) block first)
        for (int64_t oy = 0; oy < a.ho; ++oy)
            soma_step<int16_t, Vec>(a, accp.data() + oy * row_len + (L - 1) * m, a.wo * m, true, wk, oy * a.wo * m);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

// plane for few outputs (AVX2, 0/1 inputs with int16 accumulators, stride 1, M <= 4; e.g. a
// correlation head 16 -> 1): the input is widened once per step to int16 masks (0 / -1) in a
// zero-padded copy, and blocks of R = 8 output rows x 16 columns of one output channel stay in
// registers while every tap (c, dy, dx) adds (mask AND broadcast weight) of the 16 shifted
// inputs of each row: 3 vector instructions per tap and 16 outputs, no tables and no stores
// until the block is done (the lut mode needed kh*ceil(kw*C/8) scalar table adds per output
// when M = 1). Exact: every partial sum is a sum of some of the output's weights (int16 condition).
// Measured side by side (load ~3): snn_xcorr (16 -> 1, 3x3, 16x16) 0.068 (lut) -> 0.037 ms per frame.
inline bool plane_few_fits(const ConvLayerArgs& a, bool i16) { return i16 && a.stride == 1 && a.m <= 4; }

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

__attribute__((target("avx2"))) void run_plane_few(const ConvLayerArgs& a, Work& wk) {
    const int64_t m = a.m, p_out = a.ho * a.wo, hw = a.h * a.w;
    const int64_t wo16 = (a.wo + 15) / 16 * 16;
    const int64_t wpp = std::max(a.w + 2 * a.pad, wo16 + a.kw - 1) + 16;
    const int64_t hpp = std::max(a.h + 2 * a.pad, a.ho + a.kh - 1) + 8;  // + 8: the last row block's rows
    const int64_t fan_in = a.c * a.kh * a.kw;
    std::vector<int16_t> xpad(a.c * hpp * wpp + 16, 0), acc(m * (a.ho + 8) * wo16);
    for (int64_t t = 0; t < a.steps; ++t) {
        const int8_t* xt = a.x + t * a.c * hw;
        for (int64_t c = 0; c < a.c; ++c)
            for (int64_t y = 0; y < a.h; ++y) {
                int16_t* __restrict d = xpad.data() + (c * hpp + y + a.pad) * wpp + a.pad;
                const int8_t* __restrict src = xt + (c * a.h + y) * a.w;
                for (int64_t xx = 0; xx < a.w; ++xx) d[xx] = static_cast<int16_t>(-src[xx]);  // 0/1 -> 0/-1
            }
        wk.count_inputs(xt, a.in_count);
        for (int64_t j = 0; j < m; ++j) {
            int16_t* aj = acc.data() + j * (a.ho + 8) * wo16;
            for (int64_t oy = 0; oy < a.ho; oy += 8)
                for (int64_t cb = 0; cb < wo16; cb += 16)
                    plane_few_block<8>(xpad.data() + oy * wpp + cb, hpp, wpp, a.weight + j * fan_in, a.c, a.kh, a.kw,
                                       aj + oy * wo16 + cb, wo16);
            for (int64_t oy = 0; oy < a.ho; ++oy)  // (M, P) rows: the soma on the valid columns
                soma_step<int16_t, true>(a, aj + oy * wo16, a.wo, false, wk, j * p_out + oy * a.wo);
        }
        write_step(a, t, false, wk.spk.data(), wk);
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

template <bool Vec>
__attribute__((always_inline)) inline void run_lut(const ConvLayerArgs& a, Work& wk) {
    const int64_t m = a.m, p_out = a.ho * a.wo, n = m * p_out, hw = a.h * a.w, s = a.stride, cc = a.c;
    const LutShape ls(a);
    const int64_t ng = ls.ng, ntab = ls.ntab, rb = ls.row_bytes;
    const int64_t gb = ls.gb, ne_tab = int64_t(1) << gb;
    const uint32_t mask = static_cast<uint32_t>(ne_tab - 1);
    // tables: entry p of table (dy, g) = sum of w[:, c, dy, dx] over the set bits b of p, with
    // (dx, c) = divmod(gb*g + b, C); bits past the kernel row add nothing.
    std::vector<int16_t> lut(ntab * ne_tab * m, 0), wbit(gb * m);
    for (int64_t dy = 0; dy < a.kh; ++dy)
        for (int64_t g = 0; g < ng; ++g) {
            for (int64_t b = 0; b < gb; ++b)  // the weight vector of each bit of the group
                for (int64_t j = 0; j < m; ++j) {
                    const int64_t bit = gb * g + b;
                    wbit[b * m + j] = bit < ls.row_bits ? a.weight[((j * cc + bit % cc) * a.kh + dy) * a.kw + bit / cc] : 0;
                }
            int16_t* tab = lut.data() + (dy * ng + g) * ne_tab * m;
            for (int64_t p = 1; p < ne_tab; ++p) {
                const int16_t* prev = tab + (p & (p - 1)) * m;
                const int16_t* wb = wbit.data() + __builtin_ctzll(p) * m;
                int16_t* e = tab + p * m;
                for (int64_t j = 0; j < m; ++j) e[j] = static_cast<int16_t>(prev[j] + wb[j]);
            }
        }
    std::vector<uint8_t> img(ls.hpp * rb);
    std::vector<int32_t> events(a.w + 32), offs(ntab);
    std::vector<int16_t> acc(n);
    const bool byte_aligned = cc % 8 == 0, one_word = ls.row_bits + 7 <= 64;
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
                    for (; xx + 16 <= a.w; xx += 16) {
                        const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g0 + xx));
                        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g1 + xx));
                        _mm_storeu_si128(reinterpret_cast<__m128i*>(irow + 2 * xx), _mm_unpacklo_epi8(u, v));
                        _mm_storeu_si128(reinterpret_cast<__m128i*>(irow + 2 * xx + 16), _mm_unpackhi_epi8(u, v));
                    }
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
        if constexpr (Vec) {
            if (byte_aligned && m == 1) {
                lut_step_m1(lut.data(), img.data(), rb, a.kh, ng, a.ho, a.wo, s * rb, s * cc / 8, acc.data());
                soma_step<int16_t, Vec>(a, acc.data(), n, true, wk);
                write_step(a, t, true, wk.spk.data(), wk);
                continue;
            }
            if (byte_aligned && m == 16 && LUT_TABLE_MAJOR) {
                lut_pass16(lut.data(), img.data(), rb, a.kh, ng, a.ho, a.wo, s * rb, s * cc / 8, acc.data());
                soma_step<int16_t, Vec>(a, acc.data(), n, true, wk);
                write_step(a, t, true, wk.spk.data(), wk);
                continue;
            }
            if (byte_aligned && m % 16 == 0 && LUT_TABLE_MAJOR) {
                lut_pass_bytes(lut.data(), img.data(), rb, a.kh, ng, m, a.ho, a.wo, s * rb, s * cc / 8, acc.data());
                soma_step<int16_t, Vec>(a, acc.data(), n, true, wk);
                write_step(a, t, true, wk.spk.data(), wk);
                continue;
            }
        }
        for (int64_t oy = 0; oy < a.ho; ++oy)
            for (int64_t ox = 0; ox < a.wo; ++ox) {
                const int64_t bit0 = ox * s * cc;
                const uint8_t* r = img.data() + oy * s * rb + (bit0 >> 3);
                int32_t* o = offs.data();
                if constexpr (Vec) {
                    if (byte_aligned && (m % 16 == 0 || m == 1)) {
                        lut_sum_bytes(lut.data(), r, rb, a.kh, ng, m, acc.data() + (oy * a.wo + ox) * m);
                        continue;
                    }
                }
                if (byte_aligned) {  // C % 8 == 0: the groups are whole bytes of the image
                    for (int64_t dy = 0; dy < a.kh; ++dy, r += rb)
                        for (int64_t g = 0; g < ng; ++g, ++o)
                            *o = static_cast<int32_t>(((o - offs.data()) * 256 + r[g]) * m);
                } else if (one_word) {  // the kernel row's bits (+ the start offset) fit 64 bits
                    const int sh = static_cast<int>(bit0 & 7);
                    for (int64_t dy = 0; dy < a.kh; ++dy, r += rb) {
                        uint64_t word;
                        std::memcpy(&word, r, 8);
                        word >>= sh;
                        for (int64_t g = 0; g < ng; ++g, ++o, word >>= gb)
                            *o = static_cast<int32_t>(((o - offs.data()) * ne_tab + (word & mask)) * m);
                    }
                } else {
                    for (int64_t dy = 0; dy < a.kh; ++dy) {
                        const uint8_t* rr = img.data() + (oy * s + dy) * rb;
                        for (int64_t g = 0; g < ng; ++g, ++o) {
                            const int64_t bit = bit0 + gb * g;
                            uint32_t word;
                            std::memcpy(&word, rr + (bit >> 3), 4);
                            *o = static_cast<int32_t>(((o - offs.data()) * ne_tab + ((word >> (bit & 7)) & mask)) * m);
                        }
                    }
                }
                lut_sum<Vec>(lut.data(), offs.data(), ntab, m, acc.data() + (oy * a.wo + ox) * m);
            }
        soma_step<int16_t, Vec>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data(), wk);
    }
}

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

constexpr bool GEMM_PAIRS = true;

// gemm: dense inputs (int8 activations): per step the patches of a zero-padded copy of the input
// are copied kernel row by kernel row (start offsets computed once; intnet.im2col order),
// multiplied by the packed weights with the dense int8 MAC of kernels.cpp (its vpmaddubsw path
// when the inputs are >= 0), and the soma runs on the (P, M) int32 accumulators. Same sums as
// im2col + dense_mac.
template <bool Vec>
__attribute__((always_inline)) inline void run_gemm(const ConvLayerArgs& a, Work& wk) {
    if constexpr (Vec) {
        if (a.m % 8 == 0 && a.m <= 32 && GEMM_PAIRS) return run_gemm_pairs(a, wk);
    }
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
    const PackedWeights pw = pack_weights(a.weight, m, k, Vec ? AVX2 : SCALAR);
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

// What a layer call runs: the accumulation mode, int16 accumulators, 0/1 inputs (from one
// scan of the whole input, so every row block of a threaded call runs the same way).
struct Plan {
    int mode;
    bool i16, binary;
};

template <bool Vec>
__attribute__((always_inline)) inline Plan plan_layer(const ConvLayerArgs& a) {
    const int64_t total = a.steps * a.c * a.h * a.w, fan_in = a.c * a.kh * a.kw;
    int64_t nnz = 0;
    uint8_t umax = 0;  // largest input byte as unsigned: <= 1 means 0/1 inputs
    int64_t i0 = 0;
    if constexpr (Vec) scan_avx2(a.x, total, nnz, umax, i0);
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
    return Plan{mode, i16, binary};
}

template <bool Vec>
__attribute__((always_inline)) inline void run_layer(const ConvLayerArgs& a, const Plan& pl) {
    const int mode = pl.mode;
    const bool i16 = pl.i16, binary = pl.binary;
    Work wk;
    const int64_t n = a.m * a.ho * a.wo;
    wk.cur.resize(n);
    wk.v.assign(n, 0);
    wk.cnt.assign(n, 0);
    wk.spk.resize(n);
    wk.bias_pm.assign(n, 0);
    wk.bias_cm.assign(n, 0);
    if (a.out_count) wk.ocnt.assign(n, 0);
    wk.in_size = static_cast<size_t>(a.c * a.h * a.w);
    if (a.bias) {
        for (int64_t p = 0; p < a.ho * a.wo; ++p)
            for (int64_t j = 0; j < a.m; ++j) {
                wk.bias_pm[p * a.m + j] = a.bias[j];
                wk.bias_cm[j * a.ho * a.wo + p] = a.bias[j];
            }
        for (int64_t j = 0; j < a.m; ++j) wk.small_bias &= a.bias[j] >= -(1 << 30) && a.bias[j] < (1 << 30);
        for (int64_t j = 0; j < a.m; ++j) wk.bias_28 &= a.bias[j] >= -(1 << 28) && a.bias[j] <= (1 << 28);
    }
    if (mode == 3) {
        run_gemm<Vec>(a, wk);
    } else if (mode == 2) {
        run_lut<Vec>(a, wk);
    } else if (mode == 1) {
        if constexpr (Vec) {
            if (plane_few_fits(a, i16)) {
                run_plane_few(a, wk);
                wk.flush_counts(a.out_count);
                wk.flush_inputs(a.in_count);
                return;
            }
        }
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
__attribute__((target("avx2"))) Plan plan_avx2(const ConvLayerArgs& a) { return plan_layer<true>(a); }
void run_scalar(const ConvLayerArgs& a, const Plan& pl) { run_layer<false>(a, pl); }
__attribute__((target("avx2"))) void run_avx2(const ConvLayerArgs& a, const Plan& pl) { run_layer<true>(a, pl); }

__attribute__((always_inline)) inline void count_cols_body(const int8_t* values, int64_t steps, int64_t n,
                                                           int32_t* out) {
    for (int64_t t = 0; t < steps; ++t) {
        const int8_t* vt = values + t * n;
        for (int64_t j = 0; j < n; ++j) out[j] += vt[j] != 0;
    }
}
void count_cols_scalar(const int8_t* v, int64_t t, int64_t n, int32_t* o) { count_cols_body(v, t, n, o); }
__attribute__((target("avx2"))) void count_cols_avx2(const int8_t* v, int64_t t, int64_t n, int32_t* o) {
    count_cols_body(v, t, n, o);
}

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
__attribute__((target("avx2"))) void count_rows_avx2(const ConvLayerArgs& a, int64_t y0, int64_t y1) {
    count_rows_body<true>(a, y0, y1);
}

}  // namespace

int conv_layer(const ConvLayerArgs& a, int path) {
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
    ThreadPool::instance().run(blocks, threads, task);
    return pl.mode | (pl.i16 ? 4 : 0);
}

// The layer split into blocks of output rows on the persistent thread pool (thread_pool.h).
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
int conv_layer_threads(const ConvLayerArgs& a, int path, int threads) {
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
    ThreadPool::instance().run(blocks, threads, task);
    return pl.mode | (pl.i16 ? 4 : 0);
}

void window_counts(const int32_t* count, int64_t c, int64_t h, int64_t w, int64_t c0, int64_t c1, int64_t kh,
                   int64_t kw, int64_t stride, int64_t pad, int64_t* out) {
    (void)c;
    const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
    // integral image of the channels c0..c1 summed: ii[y][x] = sum of plane[0:y, 0:x]; a window
    // clipped to the plane is then 4 lookups (exact int64 sums, the same as summing its taps)
    std::vector<int64_t> ii((h + 1) * (w + 1), 0);
    for (int64_t y = 0; y < h; ++y) {
        int64_t row = 0;
        for (int64_t xx = 0; xx < w; ++xx) {
            int64_t v = 0;
            for (int64_t ci = c0; ci < c1; ++ci) v += count[(ci * h + y) * w + xx];
            row += v;
            ii[(y + 1) * (w + 1) + xx + 1] = ii[y * (w + 1) + xx + 1] + row;
        }
    }
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

}  // namespace

void group_sums(const int32_t* count, int64_t n, const int64_t* ptr, const int32_t* idx, int64_t groups, int64_t* out) {
    (void)n;  // idx entries are checked against n by the caller
    for (int64_t g = 0; g < groups; ++g) {
        int64_t s = 0;
        for (int64_t e = ptr[g]; e < ptr[g + 1]; ++e) s += count[idx[e]];
        out[g] = s;
    }
}

void range_sums(const int32_t* count, int64_t n, const int64_t* ptr, const int64_t* starts, const int64_t* stops,
                int64_t groups, int64_t* out) {
    (void)n;  // run bounds are checked against n by the caller
    for (int64_t g = 0; g < groups; ++g) {
        int64_t s = 0;
        for (int64_t r = ptr[g]; r < ptr[g + 1]; ++r)
            for (int64_t i = starts[r]; i < stops[r]; ++i) s += count[i];
        out[g] = s;
    }
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
