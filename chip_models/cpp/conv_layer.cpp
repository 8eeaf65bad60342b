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
// Two ways to accumulate one step, chosen per layer from the measured activity (same bits):
//   events  only the active inputs: input (c, y, x) != 0 adds v * w[:, c, dy, dx] to the
//           accumulators of every output (oy, ox) it reaches (oy*s - pad + dy = y, same for x);
//           accumulators are position-major (P, M) so one tap is one contiguous M-vector add.
//   plane   dense direct convolution: for every (m, c, dy, dx) the shifted input plane times
//           the weight is added to output plane m (channel-major (M, P), vectorized along ox);
//           cheaper than events when the layer has few output channels or many active inputs.
// The soma then runs on the step's accumulators (state in the same layout), and the spikes or
// activations are written channel-major (T, M, Ho, Wo). Per-input and per-output nonzero counts
// over the T steps feed the timing model (active inputs per core, packets per route).
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"
#include "soma.h"

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

// The same on AVX2 registers: 16 int16 or 8 int32 accumulators per instruction.
template <typename Acc, bool Bin, int MS>
__attribute__((target("avx2"))) inline void add_tap_avx2(Acc* a, const Acc* w, int64_t m, Acc v) {
    const int64_t n = MS > 0 ? MS : m;
    int64_t j = 0;
    if constexpr (sizeof(Acc) == 2) {
        static_assert(Bin, "int16 accumulators are for 0/1 inputs only");
        for (; j + 16 <= n; j += 16) {
            const __m256i s = _mm256_add_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j)),
                                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j)));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(a + j), s);
        }
        for (; j + 8 <= n; j += 8) {
            const __m128i s = _mm_add_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j)),
                                            _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + j)));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(a + j), s);
        }
    } else {
        const __m256i vv = _mm256_set1_epi32(v);
        for (; j + 8 <= n; j += 8) {
            __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j));
            if constexpr (!Bin) wv = _mm256_mullo_epi32(wv, vv);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(a + j),
                                _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j)), wv));
        }
    }
    for (; j < n; ++j) a[j] = static_cast<Acc>(a[j] + (Bin ? w[j] : static_cast<Acc>(v * w[j])));
}

__attribute__((target("avx2"))) inline uint32_t nonzero_mask32(const int8_t* p) {
    const __m256i blk = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return ~static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(blk, _mm256_setzero_si256())));
}

// Positions of the nonzero bytes of row[0:n], in order, into idx; returns their number.
template <bool Vec>
__attribute__((always_inline)) inline int64_t gather_nonzero(const int8_t* row, int64_t n, int32_t* idx) {
    int64_t i = 0, k = 0;
    if constexpr (Vec) {
        for (; i + 32 <= n; i += 32) {
            uint32_t nz = nonzero_mask32(row + i);
            while (nz) {
                idx[k++] = static_cast<int32_t>(i + __builtin_ctz(nz));
                nz &= nz - 1;
            }
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
};

// acc (n) + bias → requantize → soma, in the accumulator layout; bias index i / bstride % m.
template <typename Acc>
__attribute__((always_inline)) inline void soma_step(const ConvLayerArgs& a, const Acc* acc, int64_t n,
                                                     bool position_major, Work& wk) {
    const int64_t m = a.m, p_out = a.ho * a.wo;
    int32_t* cur = wk.cur.data();
    bool small_bias = true;
    if (a.bias)
        for (int64_t j = 0; j < m; ++j) small_bias &= a.bias[j] >= -(1 << 30) && a.bias[j] < (1 << 30);
    if (!a.bias) {
        for (int64_t i = 0; i < n; ++i) cur[i] = acc[i];
    } else if (small_bias) {  // |acc| <= 2^30, so acc + bias stays inside int32
        const int32_t* b = position_major ? wk.bias_pm.data() : wk.bias_cm.data();
        for (int64_t i = 0; i < n; ++i) cur[i] = static_cast<int32_t>(acc[i]) + b[i];
    } else {
        for (int64_t i = 0; i < n; ++i) {
            const int64_t j = position_major ? i % m : i / p_out;
            cur[i] = static_cast<int32_t>(std::clamp<int64_t>(static_cast<int64_t>(acc[i]) + a.bias[j],
                                                              std::numeric_limits<int32_t>::min(),
                                                              std::numeric_limits<int32_t>::max()));
        }
    }
    if (a.soma == 3) {
        soma::requant_body(cur, cur, n, a.shift, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
        soma::lif_body(cur, wk.v.data(), wk.cnt.data(), wk.spk.data(), n, a.lif);
    } else {
        soma::requant_body(cur, cur, n, a.shift, -128, 127);
        soma::act_body(cur, wk.spk.data(), n, a.soma, a.lut);
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

// Outputs of step t: spk (accumulator layout) → out[t] (M, P), and the output nonzero counts.
__attribute__((always_inline)) inline void write_step(const ConvLayerArgs& a, int64_t t, bool position_major,
                                                      const int8_t* spk) {
    const int64_t m = a.m, p_out = a.ho * a.wo, n = m * p_out;
    int8_t* o = a.out + t * n;
    if (position_major) {
        transpose_bytes(spk, p_out, m, o);
    } else {
        std::memcpy(o, spk, n);
    }
    if (a.out_count)
        for (int64_t i = 0; i < n; ++i) a.out_count[i] += o[i] != 0;
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
        soma_step<Acc>(a, acc.data(), n, true, wk);
        write_step(a, t, true, wk.spk.data());
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
        soma_step<Acc>(a, acc.data(), n, false, wk);
        write_step(a, t, false, wk.spk.data());
    }
}

template <bool Vec>
__attribute__((always_inline)) inline int conv_layer_body(const ConvLayerArgs& a) {
    const int64_t total = a.steps * a.c * a.h * a.w, fan_in = a.c * a.kh * a.kw;
    int64_t nnz = 0;
    uint8_t not_binary = 0;
    for (int64_t i = 0; i < total; ++i) {
        nnz += a.x[i] != 0;
        not_binary |= static_cast<uint8_t>(a.x[i]) > 1;
    }
    const bool binary = !not_binary;
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
    if (mode < 0) {  // operations of each way (vector adds), measured constants for the overheads
        const double taps = static_cast<double>(a.kh) * a.kw / static_cast<double>(a.stride * a.stride);
        const double events = nnz * taps * ((a.m + lanes - 1) / lanes) * 3.0 + 0.5 * nnz;
        const double plane = static_cast<double>(a.steps) * a.m * fan_in * a.ho * ((a.wo + lanes - 1) / lanes) *
                             (a.stride == 1 ? 4.0 : 16.0 * a.stride);  // per-row overheads: measured ~4x an event tap
        mode = events <= plane ? 0 : 1;
    }
    Work wk;
    const int64_t n = a.m * a.ho * a.wo;
    wk.cur.resize(n);
    wk.v.assign(n, 0);
    wk.cnt.assign(n, 0);
    wk.spk.resize(n);
    wk.bias_pm.assign(n, 0);
    wk.bias_cm.assign(n, 0);
    if (a.bias) {
        for (int64_t p = 0; p < a.ho * a.wo; ++p)
            for (int64_t j = 0; j < a.m; ++j) {
                wk.bias_pm[p * a.m + j] = a.bias[j];
                wk.bias_cm[j * a.ho * a.wo + p] = a.bias[j];
            }
        for (int64_t j = 0; j < a.m; ++j) wk.small_bias &= a.bias[j] >= -(1 << 30) && a.bias[j] < (1 << 30);
    }
    if (mode == 1) {
        if (i16) run_plane<int16_t, Vec>(a, wk);
        else run_plane<int32_t, Vec>(a, wk);
    } else if (i16) {
        if (a.m == 16) run_events<int16_t, true, 16, Vec>(a, wk);
        else if (a.m == 8) run_events<int16_t, true, 8, Vec>(a, wk);
        else run_events<int16_t, true, 0, Vec>(a, wk);
    } else if (binary) {
        if (a.m == 8) run_events<int32_t, true, 8, Vec>(a, wk);
        else run_events<int32_t, true, 0, Vec>(a, wk);
    } else {
        run_events<int32_t, false, 0, Vec>(a, wk);
    }
    return mode | (i16 ? 2 : 0);
}

int conv_layer_scalar(const ConvLayerArgs& a) { return conv_layer_body<false>(a); }
__attribute__((target("avx2"))) int conv_layer_avx2(const ConvLayerArgs& a) { return conv_layer_body<true>(a); }

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

}  // namespace

int conv_layer(const ConvLayerArgs& a, int path) {
    return path == SCALAR ? conv_layer_scalar(a) : conv_layer_avx2(a);
}

void window_counts(const int32_t* count, int64_t c, int64_t h, int64_t w, int64_t c0, int64_t c1, int64_t kh,
                   int64_t kw, int64_t stride, int64_t pad, int64_t* out) {
    (void)c;
    const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
    std::vector<int64_t> plane(h * w, 0);  // channels c0..c1 summed
    for (int64_t ci = c0; ci < c1; ++ci)
        for (int64_t i = 0; i < h * w; ++i) plane[i] += count[ci * h * w + i];
    for (int64_t oy = 0; oy < ho; ++oy)
        for (int64_t ox = 0; ox < wo; ++ox) {
            int64_t s = 0;
            for (int64_t dy = 0; dy < kh; ++dy) {
                const int64_t y = oy * stride - pad + dy;
                if (y < 0 || y >= h) continue;
                for (int64_t dx = 0; dx < kw; ++dx) {
                    const int64_t xx = ox * stride - pad + dx;
                    if (xx >= 0 && xx < w) s += plane[y * w + xx];
                }
            }
            out[oy * wo + ox] = s;
        }
}

void count_nonzero_cols(const int8_t* values, int64_t steps, int64_t n, int32_t* out, int path) {
    if (path == SCALAR) count_cols_scalar(values, steps, n, out);
    else count_cols_avx2(values, steps, n, out);
}

}  // namespace chip
