// A chain of spiking conv layers (with k x k max pools between them) over all T steps in one call,
// the spikes kept bit-packed between the layers.
//
// Stage 0 reads the chain's input (T, C, H, W) int8 0/1 planes and accumulates event-driven
// (run_span: one contiguous add per active input and kernel row). Every later stage reads a bit
// image: the lut mode's zero-padded image (conv_lut.h; 8 channels per byte, a pixel's C/8 bytes
// adjacent), which the stage before writes directly:
//   * a stage's spikes come out of the soma position-major (P, M) as 0/1 bytes; with M % 8 == 0,
//     8 consecutive bytes are the 8 channel bits of one image byte, so one pack (a movemask per
//     32 bytes) writes a whole output row of the image: no transpose, no int8 plane, no rebuilt
//     bit image;
//   * a max pool of 0/1 spikes is the OR of the window's bytes (max of 0/1 values = OR), written
//     into the next stage's image.
// Middle stages accumulate with the lut tables (lut_accumulate: table-major passes on AVX2), the
// last stage with the lut or, on AVX2 for M <= 4 and stride 1, plane_few (its int16 masks expanded
// from the image bits). Only the last stage writes int8 planes (T, M, Ho, Wo).
// Every stage's arithmetic is the conv_layer one (same accumulators, the same soma_step), so the
// outputs equal conv_layer layer by layer bit for bit. Counts: the chain input's nonzero count per
// input (the span loop), every stage's output count per neuron, and every pool output's count
// (int32, channel-major (C, H, W), +=), byte counters flushed every 255 steps.
// Conditions (checked here; nothing is written when they fail): the input holds only 0/1, every
// stage's int16 condition holds (max_m sum_k |w[m, k]| <= 32767), every stage but the last is an
// SNN (LIF) layer with M % 8 == 0, and the shapes chain up.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "conv_common.h"
#include "conv_lut.h"
#include "conv_plane_few.h"
#include "conv_span.h"
#include "kernels.h"
#include "soma.h"

namespace chip {

namespace {

__attribute__((target("avx2"))) inline uint32_t pack32_avx2(const int8_t* src) {
    // bit 0 of each byte to bit 7 (0/1 bytes: nothing crosses bytes), then one bit per byte
    return static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_slli_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)), 7)));
}

// dst[k] = the 8 bits of the 0/1 bytes src[8k .. 8k + 7] (bit b = byte b), n % 8 == 0.
template <bool Vec>
__attribute__((always_inline)) inline void pack_bits(const int8_t* src, int64_t n, uint8_t* dst) {
    int64_t i = 0;
    if constexpr (Vec) {
        for (; i + 32 <= n; i += 32) {
            const uint32_t bits = pack32_avx2(src + i);
            std::memcpy(dst + i / 8, &bits, 4);
        }
    }
    for (; i < n; i += 8) {  // the multiply moves byte b's bit 0 to bit 56 + b (no two terms overlap)
        uint64_t w;
        std::memcpy(&w, src + i, 8);
        dst[i / 8] = static_cast<uint8_t>((w * 0x0102040810204080ULL) >> 56);
    }
}

// Per-neuron nonzero counts over the steps in byte counters (position-major (P, M)), flushed into
// the channel-major int32 count (M, P) every 255 steps and at the end.
struct ByteCounts {
    std::vector<uint8_t> c;
    int steps = 0;
    int64_t p = 0, m = 0;
    int32_t* out = nullptr;
    void init(int64_t p_n, int64_t m_n, int32_t* out_count) {
        p = p_n; m = m_n; out = out_count;
        if (out) c.assign(p * m, 0);
    }
    // counters += the 0/1 bytes v (P, M)
    void add_bytes(const int8_t* v) {
        if (!out) return;
        uint8_t* __restrict cc = c.data();
        const int8_t* __restrict vv = v;
        const int64_t n = p * m;
        for (int64_t i = 0; i < n; ++i) cc[i] = static_cast<uint8_t>(cc[i] + vv[i]);
        step();
    }
    void step() {
        if (++steps == 255) flush();
    }
    void flush() {
        if (!out || steps == 0) return;
        for (int64_t q = 0; q < p; ++q)
            for (int64_t j = 0; j < m; ++j) out[j * p + q] += c[q * m + j];
        std::fill(c.begin(), c.end(), uint8_t(0));
        steps = 0;
    }
};

struct Stage {
    ConvLayerArgs a;
    int pool = 0;  // k x k max pool of the stage's input (stages >= 1)
    Work wk;
    ByteCounts out_counts, pool_counts;
    LutShape ls;
    std::vector<uint8_t> img;    // the stage's input bit image (stages >= 1)
    std::vector<uint8_t> pbits;  // the previous stage's output bits (P, M/8), when this stage pools them
    std::unique_ptr<SpanPlan> span;
    std::unique_ptr<LutTables> lut;
    std::unique_ptr<PlaneFewPlan> few;
    std::vector<int16_t> acc;
    explicit Stage(const ConvLayerArgs& args, int pool_k) : a(args), pool(pool_k), ls(args) {}
};

// the pooled bits of the previous stage (ho x wo pixels of cb bytes) into stage s's image, and
// the pooled value's counts
template <bool Vec>
inline void pool_into(Stage& s, int64_t ho, int64_t wo) {
    const int64_t k = s.pool, cb = s.a.c / 8, rb = s.ls.row_bytes;
    for (int64_t py = 0; py < s.a.h; ++py) {
        uint8_t* __restrict irow = s.img.data() + (py + s.a.pad) * rb + s.a.pad * cb;
        if (k == 2 && cb == 1) {  // the common case in straight loops: OR of the two rows, then of byte pairs
            const uint8_t* __restrict r0 = s.pbits.data() + 2 * py * wo;
            const uint8_t* __restrict r1 = r0 + wo;
            for (int64_t px = 0; px < s.a.w; ++px)
                irow[px] = static_cast<uint8_t>(r0[2 * px] | r0[2 * px + 1] | r1[2 * px] | r1[2 * px + 1]);
            continue;
        }
        for (int64_t px = 0; px < s.a.w; ++px)
            for (int64_t g = 0; g < cb; ++g) {
                uint8_t v = 0;
                for (int64_t i = 0; i < k; ++i)
                    for (int64_t j = 0; j < k; ++j) v |= s.pbits[((py * k + i) * wo + px * k + j) * cb + g];
                irow[px * cb + g] = v;
            }
    }
    (void)ho;
    if (s.pool_counts.out) {  // counters (pixel, C): 8 channels of a byte at once
        for (int64_t py = 0; py < s.a.h; ++py) {
            const uint8_t* irow = s.img.data() + (py + s.a.pad) * rb + s.a.pad * cb;
            uint8_t* cnt = s.pool_counts.c.data() + py * s.a.w * s.a.c;
            for (int64_t i = 0; i < s.a.w * cb; ++i) {
                uint64_t c8;
                std::memcpy(&c8, cnt + 8 * i, 8);
                c8 += soma::MASK_BYTES.t[irow[i]];  // (byte counters flushed before they reach 255)
                std::memcpy(cnt + 8 * i, &c8, 8);
            }
        }
        s.pool_counts.step();
    }
}

// the int16 masks (0 / -1) of stage s's plane_few input from its bit image
template <bool Vec>
inline void expand_bits(Stage& s) {
    const ConvLayerArgs& a = s.a;
    const int64_t cb = a.c / 8, rb = s.ls.row_bytes;
    for (int64_t y = 0; y < a.h; ++y) {
        const uint8_t* irow = s.img.data() + (y + a.pad) * rb + a.pad * cb;
        for (int64_t c = 0; c < a.c; ++c) {
            int16_t* __restrict d = s.few->at(a, c, y);
            const int64_t g = c / 8, b = c % 8;
            for (int64_t x = 0; x < a.w; ++x) d[x] = static_cast<int16_t>(-((irow[x * cb + g] >> b) & 1));
        }
    }
}

__attribute__((target("avx2"))) void expand_bits_avx2(Stage& s) {
    const ConvLayerArgs& a = s.a;
    const int64_t cb = a.c / 8, rb = s.ls.row_bytes;
    const __m256i lo = _mm256_set1_epi16(0x00ff);
    for (int64_t y = 0; y < a.h; ++y) {
        const uint8_t* irow = s.img.data() + (y + a.pad) * rb + a.pad * cb;
        int64_t x = 0;
        for (; x + 16 <= a.w; x += 16) {
            for (int64_t g = 0; g < cb; ++g) {
                __m256i v;  // byte g of 16 pixels as int16 lanes
                if (cb == 1) {
                    v = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(irow + x)));
                } else if (cb == 2) {
                    const __m256i two = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(irow + 2 * x));
                    v = g == 0 ? _mm256_and_si256(two, lo) : _mm256_srli_epi16(two, 8);
                } else {  // (a strided gather of byte g of the 16 pixels)
                    alignas(32) int16_t b16[16];
                    for (int q = 0; q < 16; ++q) b16[q] = irow[(x + q) * cb + g];
                    v = _mm256_load_si256(reinterpret_cast<const __m256i*>(b16));
                }
                for (int b = 0; b < 8; ++b) {
                    const __m256i bit = _mm256_set1_epi16(static_cast<int16_t>(1 << b));
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.few->at(a, 8 * g + b, y) + x),
                                        _mm256_cmpeq_epi16(_mm256_and_si256(v, bit), bit));
                }
            }
        }
        for (int64_t c = 0; c < a.c; ++c) {
            int16_t* d = s.few->at(a, c, y);
            for (int64_t xx = x; xx < a.w; ++xx) d[xx] = static_cast<int16_t>(-((irow[xx * cb + c / 8] >> (c % 8)) & 1));
        }
    }
}

// stage i's spikes of step t (wk.spk, position-major) to the next stage (its image, or the bits
// it pools), counting them
template <bool Vec>
__attribute__((always_inline)) inline void hand_on(std::vector<std::unique_ptr<Stage>>& st, size_t i) {
    Stage& s = *st[i];
    Stage& nx = *st[i + 1];
    s.out_counts.add_bytes(s.wk.spk.data());
    const int64_t row = s.a.wo * s.a.m;
    if (nx.pool) {
        pack_bits<Vec>(s.wk.spk.data(), s.a.ho * row, nx.pbits.data());
        pool_into<Vec>(nx, s.a.ho, s.a.wo);
    } else {
        const int64_t rb = nx.ls.row_bytes, off = nx.a.pad * (nx.a.c / 8);
        for (int64_t oy = 0; oy < s.a.ho; ++oy)
            pack_bits<Vec>(s.wk.spk.data() + oy * row, row, nx.img.data() + (oy + nx.a.pad) * rb + off);
    }
}

template <bool Vec>
__attribute__((always_inline)) inline void run_chain(std::vector<std::unique_ptr<Stage>>& st) {
    const size_t n = st.size();
    const int64_t steps = st[0]->a.steps;
    for (int64_t t = 0; t < steps; ++t) {
        {  // stage 0: spans from the input planes
            Stage& s = *st[0];
            const ConvLayerArgs& a = s.a;
            if (s.span->span == 32) span_accumulate<Vec, 32>(a, *s.span, a.x + t * a.c * a.h * a.w);
            else if (s.span->span == 48) span_accumulate<Vec, 48>(a, *s.span, a.x + t * a.c * a.h * a.w);
            else span_accumulate<Vec, 0>(a, *s.span, a.x + t * a.c * a.h * a.w);
            for (int64_t oy = 0; oy < a.ho; ++oy)
                soma_step<int16_t, Vec>(a, s.span->row(oy), a.wo * a.m, true, s.wk, oy * a.wo * a.m);
            if (n == 1) write_step(a, t, true, s.wk.spk.data(), s.wk);
            else hand_on<Vec>(st, 0);
        }
        for (size_t i = 1; i < n; ++i) {
            Stage& s = *st[i];
            const ConvLayerArgs& a = s.a;
            bool position_major = true;
            if constexpr (Vec) {
                if (s.few) {
                    expand_bits_avx2(s);
                    plane_few_step(a, *s.few, s.wk);
                    position_major = false;
                }
            }
            if (position_major) {
                lut_accumulate<Vec>(a, *s.lut, s.img.data(), s.acc.data());
                soma_step<int16_t, Vec>(a, s.acc.data(), a.m * a.ho * a.wo, true, s.wk);
            }
            if (i + 1 == n) write_step(a, t, position_major, s.wk.spk.data(), s.wk);
            else hand_on<Vec>(st, i);
        }
    }
    for (size_t i = 0; i < n; ++i) {
        Stage& s = *st[i];
        if (i + 1 == n) s.wk.flush_counts(s.a.out_count);
        else s.out_counts.flush();
        s.pool_counts.flush();
    }
}

bool binary_input(const int8_t* x, int64_t n) {
    uint8_t umax = 0;
    for (int64_t i = 0; i < n; ++i) umax = std::max(umax, static_cast<uint8_t>(x[i]));
    return umax <= 1;
}
__attribute__((target("avx2"))) bool binary_input_avx2(const int8_t* x, int64_t n) {
    __m256i mx = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) mx = _mm256_max_epu8(mx, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    alignas(32) uint8_t lanes[32];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), mx);
    uint8_t umax = 0;
    for (uint8_t v : lanes) umax = std::max(umax, v);
    return umax <= 1 && binary_input(x + i, n - i);
}

bool int16_exact(const ConvLayerArgs& a) {
    const int64_t fan_in = a.c * a.kh * a.kw;
    for (int64_t j = 0; j < a.m; ++j) {
        int64_t l1 = 0;
        for (int64_t e = 0; e < fan_in; ++e) l1 += std::abs(static_cast<int32_t>(a.weight[j * fan_in + e]));
        if (l1 > 32767) return false;
    }
    return true;
}

void run_scalar(std::vector<std::unique_ptr<Stage>>& st) { run_chain<false>(st); }
__attribute__((target("avx2"))) void run_avx2(std::vector<std::unique_ptr<Stage>>& st) { run_chain<true>(st); }

}  // namespace

int snn_chain(const ChainStage* stages, int64_t n, int path) {
    if (n < 1) throw std::invalid_argument("a chain needs at least one stage");
    for (int64_t i = 0; i < n; ++i) {
        const ConvLayerArgs& a = stages[i].conv;
        if (i + 1 < n && (a.soma != 3 || a.m % 8)) throw std::invalid_argument("chain stages before the last must be SNN layers with M % 8 == 0");
        if (i > 0) {
            const ConvLayerArgs& p = stages[i - 1].conv;
            const int k = stages[i].pool;
            if (k < 0 || a.c != p.m || a.h != (k ? p.ho / k : p.ho) || a.w != (k ? p.wo / k : p.wo))
                throw std::invalid_argument("chain stage shapes do not chain up");
        } else if (stages[0].pool) {
            throw std::invalid_argument("the first chain stage cannot pool");
        }
    }
    const ConvLayerArgs& a0 = stages[0].conv;
    const int64_t total = a0.steps * a0.c * a0.h * a0.w;
    if (!(path == SCALAR ? binary_input(a0.x, total) : binary_input_avx2(a0.x, total))) return -1;
    for (int64_t i = 0; i < n; ++i)
        if (!int16_exact(stages[i].conv)) return -1;
    std::vector<std::unique_ptr<Stage>> st;
    for (int64_t i = 0; i < n; ++i) {
        st.push_back(std::make_unique<Stage>(stages[i].conv, stages[i].pool));
        Stage& s = *st.back();
        s.a.steps = a0.steps;
        s.wk.init(s.a);
        const int64_t p_out = s.a.ho * s.a.wo;
        if (i + 1 < n) s.out_counts.init(p_out, s.a.m, s.a.out_count);
        if (i == 0) {
            s.span = std::make_unique<SpanPlan>(s.a);
            continue;
        }
        s.img.assign(s.ls.hpp * s.ls.row_bytes, 0);  // (the padding stays zero; the interior is rewritten each step)
        if (s.pool) {
            const ConvLayerArgs& p = stages[i - 1].conv;
            s.pbits.assign(p.ho * p.wo * p.m / 8 + 4, 0);
            s.pool_counts.init(s.a.h * s.a.w, s.a.c, s.a.in_count);
        }
        if (path != SCALAR && i + 1 == n && plane_few_fits(s.a, true)) {
            s.few = std::make_unique<PlaneFewPlan>(s.a);
        } else {
            s.lut = std::make_unique<LutTables>(s.a);
            s.acc.assign(s.a.m * p_out, 0);
        }
    }
    if (path == SCALAR) run_scalar(st);
    else run_avx2(st);
    return 0;
}

}  // namespace chip
