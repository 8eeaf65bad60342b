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
// from the image bits); on the AVX-512 VNNI paths a correlation head (M = 1, C = 8 or 16, stride 1)
// takes vpdpbusd straight from the image bits (conv_bits_vnni.h). Only the last stage writes int8
// planes (T, M, Ho, Wo).
// Every stage's arithmetic is the conv_layer one (same accumulators, the same soma_step), so the
// outputs equal conv_layer layer by layer bit for bit. Counts: the chain input's nonzero count per
// input (the span loop), every stage's output count per neuron, and every pool output's count
// (int32, channel-major (C, H, W), +=), byte counters flushed before they pass 255 steps and at the end.
// Order and threads: the steps are cut into blocks, each stage's output rows into bands
// (boundaries at multiples of the next stage's pool); a task is one band of one stage over one
// block, and the tasks run as a data flow on a team of threads (ChainJob::Impl): a task starts
// once the previous block of its band and every band of the stage before (the same block) are
// done, so the stages of consecutive blocks overlap on different threads. The images between the
// stages are kept in a ring of RING blocks. A band owns its rows' accumulators, LIF state, counts
// and the next image's rows; stage 0's bands count disjoint input rows. A neuron's arithmetic does
// not depend on the order of the tasks (its inputs are the previous stage's outputs of the same
// step, its steps run in order), so every thread count and block size gives the same bits.
// On the avx512vnni and amx paths the chain runs an AVX-512 variant (the fast LIF soma 16 lanes
// wide, stage 0's spans one zmm add each); the other vector paths run the AVX2 bodies.
// Conditions (checked here; nothing is written when they fail): the input holds only 0/1, every
// stage's int16 condition holds (max_m sum_k |w[m, k]| <= 32767), every stage but the last is an
// SNN (LIF) layer with M % 8 == 0, and the shapes chain up.
#include <neurosim/simd.h>
#include <neurosim/thread_pool.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "conv_bits_vnni.h"
#include "conv_common.h"
#include "conv_lut.h"
#include "conv_plane_few.h"
#include "conv_rows_vnni.h"
#include "conv_span.h"
#include "kernels.h"
#include "soma.h"

namespace chip {

namespace {

#if NEUROSIM_X86
__attribute__((target("avx2"))) inline uint32_t pack32_avx2(const int8_t* src) {
    // bit 0 of each byte to bit 7 (0/1 bytes: nothing crosses bytes), then one bit per byte
    return static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_slli_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)), 7)));
}
#endif

// dst[k] = the 8 bits of the 0/1 bytes src[8k .. 8k + 7] (bit b = byte b), n % 8 == 0.
template <bool Vec>
__attribute__((always_inline)) inline void pack_bits(const int8_t* src, int64_t n, uint8_t* dst) {
    int64_t i = 0;
#if NEUROSIM_X86
    if constexpr (Vec) {
        for (; i + 32 <= n; i += 32) {
            const uint32_t bits = pack32_avx2(src + i);
            std::memcpy(dst + i / 8, &bits, 4);
        }
    }
#endif
    for (; i < n; i += 8) {  // the multiply moves byte b's bit 0 to bit 56 + b (no two terms overlap)
        uint64_t w;
        std::memcpy(&w, src + i, 8);
        dst[i / 8] = static_cast<uint8_t>((w * 0x0102040810204080ULL) >> 56);
    }
}

// Per-neuron nonzero counts over the < 256 steps of a block in byte counters, flushed into the int32
// count by ranges of positions (a band of rows flushes its own positions at the end of each block):
// position-major counters (P, M) for 0/1 bytes in the soma's layout (add_pm) or a pool's image bytes
// (add_image_row), flushed channel-major (flush_pm: out[j * P + q]); channel-major counters (M, P)
// for the last stage's written outputs (add_cm / flush_cm).
struct ByteCounts {
    std::vector<uint8_t> c;
    int64_t p = 0, m = 0;
    int32_t* out = nullptr;
    void init(int64_t p_n, int64_t m_n, int32_t* out_count) {
        p = p_n; m = m_n; out = out_count;
        if (out) c.assign(p * m, 0);
    }
    // counters of positions [q0, q1) += the 0/1 bytes v (P, M)
    void add_pm(const int8_t* v, int64_t q0, int64_t q1) {
        if (!out) return;
        uint8_t* __restrict cc = c.data() + q0 * m;
        const int8_t* __restrict vv = v + q0 * m;
        const int64_t n = (q1 - q0) * m;
        for (int64_t i = 0; i < n; ++i) cc[i] = static_cast<uint8_t>(cc[i] + vv[i]);
    }
    // counters of the cb * 8 channels of n pixels from q0 on += the bits of their image bytes
    void add_image_row(const uint8_t* irow, int64_t q0, int64_t n_bytes) {
        if (out) add_bits(irow, n_bytes, c.data() + q0 * m);
    }
    // the 8 counters cnt[8i .. 8i + 7] += the bits of byte irow[i], i < n_bytes
    static void add_bits(const uint8_t* irow, int64_t n_bytes, uint8_t* cnt) {
        for (int64_t i = 0; i < n_bytes; ++i) {
            uint64_t c8;
            std::memcpy(&c8, cnt + 8 * i, 8);
            c8 += soma::MASK_BYTES.t[irow[i]];  // (byte counters, flushed before they reach 255)
            std::memcpy(cnt + 8 * i, &c8, 8);
        }
    }
#if NEUROSIM_X86
    // add_image_row on AVX-512 BW: 8 image bytes are a 64-bit mask, their 64 counters one zmm
    // (a set bit's byte is -1 after vpmovm2b, so the counter is decremented by it)
    __attribute__((target("avx2,avx512f,avx512bw"))) void add_image_row512(const uint8_t* irow, int64_t q0,
                                                                           int64_t n_bytes) {
        if (!out) return;
        uint8_t* cnt = c.data() + q0 * m;
        int64_t i = 0;
        for (; i + 8 <= n_bytes; i += 8) {
            uint64_t bits;
            std::memcpy(&bits, irow + i, 8);
            const __m512i v = _mm512_loadu_si512(cnt + 8 * i);
            _mm512_storeu_si512(cnt + 8 * i, _mm512_sub_epi8(v, _mm512_movm_epi8(_cvtu64_mask64(bits))));
        }
        add_bits(irow + i, n_bytes - i, cnt + 8 * i);
    }
#endif
    void flush_pm(int64_t q0, int64_t q1) {
        if (!out) return;
        for (int64_t q = q0; q < q1; ++q)
            for (int64_t j = 0; j < m; ++j) out[j * p + q] += c[q * m + j];
        std::fill(c.begin() + q0 * m, c.begin() + q1 * m, uint8_t(0));
    }
    // counters (M, P) of positions [q0, q1) += (o != 0) for the step's channel-major values o
    void add_cm(const int8_t* o, int64_t q0, int64_t q1) {
        if (!out) return;
        for (int64_t j = 0; j < m; ++j) {
            uint8_t* __restrict cc = c.data() + j * p;
            const int8_t* __restrict ov = o + j * p;
            for (int64_t q = q0; q < q1; ++q) cc[q] = static_cast<uint8_t>(cc[q] + (ov[q] != 0));
        }
    }
    void flush_cm(int64_t q0, int64_t q1) {
        if (!out) return;
        for (int64_t j = 0; j < m; ++j)
            for (int64_t q = q0; q < q1; ++q) {
                out[j * p + q] += c[j * p + q];
                c[j * p + q] = 0;
            }
    }
};

// A task: output rows [r0, r1) of one stage over a block of steps; stage 0's band also counts
// the chain input's rows [c0, c1).
struct Band {
    int64_t r0, r1, c0, c1;
};

// Output rows [0, ho) cut into up to `parts` bands whose boundaries are multiples of `align` (the
// next stage's pool size, so that a band's pooled rows read only its own rows).
std::vector<Band> make_bands(int64_t ho, int64_t parts, int64_t align) {
    const int64_t nb = std::max<int64_t>(1, std::min<int64_t>(parts, ho / std::max<int64_t>(1, align)));
    std::vector<Band> bands(nb);
    for (int64_t b = 0; b < nb; ++b) {
        bands[b].r0 = b == 0 ? 0 : ho * b / nb / align * align;
        bands[b].r1 = b + 1 == nb ? ho : ho * (b + 1) / nb / align * align;
        bands[b].c0 = bands[b].c1 = 0;
    }
    return bands;
}

struct Stage {
    ConvLayerArgs a;
    int pool = 0;  // k x k max pool of the stage's input (stages >= 1)
    Work wk;       // shared by the bands (each writes only its own neurons)
    ByteCounts out_counts, pool_counts;  // of a middle stage's outputs; of this stage's pooled input
    ByteCounts last_counts;              // of the last stage's written outputs
    LutShape ls;
    int64_t img_size = 0;
    std::vector<uint8_t> imgs;   // the stage's input bit images, one per step of the ring's blocks (stages >= 1)
    std::vector<uint8_t> pbits;  // the previous stage's output bits (P, M/8) of a step, when this stage pools them
    std::vector<Band> bands;
    std::vector<std::unique_ptr<SpanPlan>> span;       // stage 0 on spans: one per band
    std::vector<std::unique_ptr<RowsPlan>> rows;       // stage 0 on VNNI rows: one per band (or empty)
    const LutTables* lut = nullptr;                     // (lut_own's, or the caller's ChainTables')
    std::unique_ptr<LutTables> lut_own;
    std::vector<std::vector<int32_t>> offs;             // lut_accumulate's scratch, one per band
    std::vector<std::unique_ptr<PlaneFewPlan>> few;     // last stage on plane_few: one per band
    std::unique_ptr<BitsVnniPlan> bits;                 // last stage on VNNI from the bit image (M = 1)
    std::vector<int16_t> acc;
    explicit Stage(const ConvLayerArgs& args, int pool_k) : a(args), pool(pool_k), ls(args) {}
};

#if NEUROSIM_X86
// 2 x 2 pooling of 8-channel pixels (one byte each) for 16 pooled pixels: OR of the two rows' 32
// bytes, then of each byte pair (the odd byte shifted onto the even one), the even bytes packed
__attribute__((target("avx2"))) inline void pool2_bytes16(const uint8_t* r0, const uint8_t* r1, uint8_t* out) {
    const __m256i v = _mm256_or_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0)),
                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1)));
    const __m256i pair = _mm256_and_si256(_mm256_or_si256(v, _mm256_srli_epi16(v, 8)), _mm256_set1_epi16(0x00ff));
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(pair, pair), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm256_castsi256_si128(packed));
}
#endif

// the pooled bits of the previous stage (rows py*k .. of pbits, wo pixels of cb bytes each) into
// pooled rows [py0, py1) of the image img of stage s, and the pooled value's counts
template <bool Vec, bool W512>
__attribute__((always_inline)) inline void pool_into(Stage& s, uint8_t* img, int64_t py0, int64_t py1, int64_t wo) {
    const int64_t k = s.pool, cb = s.a.c / 8, rb = s.ls.row_bytes;
    for (int64_t py = py0; py < py1; ++py) {
        uint8_t* __restrict irow = img + (py + s.a.pad) * rb + s.a.pad * cb;
        if (k == 2 && cb == 1) {  // the common case in straight loops: OR of the two rows, then of byte pairs
            const uint8_t* __restrict r0 = s.pbits.data() + 2 * py * wo;
            const uint8_t* __restrict r1 = r0 + wo;
            int64_t px = 0;
#if NEUROSIM_X86
            if constexpr (Vec)
                for (; px + 16 <= s.a.w; px += 16) pool2_bytes16(r0 + 2 * px, r1 + 2 * px, irow + px);
#endif
            for (; px < s.a.w; ++px)
                irow[px] = static_cast<uint8_t>(r0[2 * px] | r0[2 * px + 1] | r1[2 * px] | r1[2 * px + 1]);
        } else {
            for (int64_t px = 0; px < s.a.w; ++px)
                for (int64_t g = 0; g < cb; ++g) {
                    uint8_t v = 0;
                    for (int64_t i = 0; i < k; ++i)
                        for (int64_t j = 0; j < k; ++j) v |= s.pbits[((py * k + i) * wo + px * k + j) * cb + g];
                    irow[px * cb + g] = v;
                }
        }
#if NEUROSIM_X86
        if constexpr (W512) {
            s.pool_counts.add_image_row512(irow, py * s.a.w, s.a.w * cb);
            continue;
        }
#endif
        s.pool_counts.add_image_row(irow, py * s.a.w, s.a.w * cb);
    }
}

#if NEUROSIM_X86
// the int16 masks (0 / -1) of input rows [y0, y1) of a plane_few stage from its bit image
__attribute__((target("avx2"))) void expand_bits_avx2(const Stage& s, const uint8_t* img, PlaneFewPlan& pf,
                                                      int64_t y0, int64_t y1) {
    const ConvLayerArgs& a = s.a;
    const int64_t cb = a.c / 8, rb = s.ls.row_bytes;
    const __m256i lo = _mm256_set1_epi16(0x00ff);
    for (int64_t y = y0; y < y1; ++y) {
        const uint8_t* irow = img + (y + a.pad) * rb + a.pad * cb;
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
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pf.at(a, 8 * g + b, y) + x),
                                        _mm256_cmpeq_epi16(_mm256_and_si256(v, bit), bit));
                }
            }
        }
        for (int64_t c = 0; c < a.c; ++c) {
            int16_t* d = pf.at(a, c, y);
            for (int64_t xx = x; xx < a.w; ++xx) d[xx] = static_cast<int16_t>(-((irow[xx * cb + c / 8] >> (c % 8)) & 1));
        }
    }
}

#endif  // NEUROSIM_X86

// The LIF conditions of lif_fused_avx2's Fast case (see soma.h), which lif_fast_avx512 also needs.
inline bool lif_fast(const ConvLayerArgs& a, const Work& wk) {
    return a.soma == 3 && a.shift >= 0 && a.shift < 32 && wk.small_bias && wk.bias_28 && a.lif.refractory_steps == 0 &&
           a.lif.leak_alpha >= 0 && a.lif.leak_alpha <= 256 && a.lif.leak_beta == 0 &&
           (a.lif.reset_mode == 0 || (a.lif.reset_mode == 1 && a.lif.v_th >= 0));
}

#if NEUROSIM_X86
// soma_step (position-major, int16 accumulators) with the Fast LIF on AVX-512 when it applies; the
// rest (other somas, the n % 16 tail) on soma_step's AVX2 bodies.
__attribute__((target(NEUROSIM_AVX512))) inline void soma_step512(const ConvLayerArgs& a, const int16_t* acc, int64_t n,
                                                                  Work& wk, int64_t off) {
    int64_t done = 0;
    if (wk.lif16) {  // (off is a multiple of M: the bias pattern lines up)
        if (a.lif.reset_mode == 0) soma::lif16_avx512<0>(acc, wk.bias_half16, n, a.shift, a.lif, wk.v16.data() + off, wk.spk.data() + off);
        else soma::lif16_avx512<1>(acc, wk.bias_half16, n, a.shift, a.lif, wk.v16.data() + off, wk.spk.data() + off);
        return;
    }
    if (lif_fast(a, wk)) {
        const int32_t* b = a.bias ? wk.bias_pm.data() + off : nullptr;
        int32_t* v = wk.v.data() + off;
        int8_t* spk = wk.spk.data() + off;
        const bool period16 = 16 % a.m == 0 && off % a.m == 0;  // bias_pm repeats every M neurons
        done = a.lif.reset_mode == 0 ? soma::lif_fast_avx512<0>(acc, b, n, a.shift, a.lif, v, spk, period16)
                                     : soma::lif_fast_avx512<1>(acc, b, n, a.shift, a.lif, v, spk, period16);
    }
    if (done < n) soma_step<int16_t, true>(a, acc + done, n - done, true, wk, off + done);
}
#endif

template <bool Vec, bool W512>
__attribute__((always_inline)) inline void soma_chain(const ConvLayerArgs& a, const int16_t* acc, int64_t n, Work& wk,
                                                      int64_t off) {
#if NEUROSIM_X86
    if constexpr (W512) return soma_step512(a, acc, n, wk, off);
#endif
    soma_step<int16_t, Vec>(a, acc, n, true, wk, off);
}

// the spikes of output rows [r0, r1) of stage s (wk.spk, position-major) to the next stage (its
// image in ring slot `slot`, or the bits it pools), counting them
template <bool Vec, bool W512>
__attribute__((always_inline)) inline void hand_on(Stage& s, Stage& nx, int64_t slot, int64_t r0, int64_t r1) {
    const int64_t row = s.a.wo * s.a.m;
    s.out_counts.add_pm(s.wk.spk.data(), r0 * s.a.wo, r1 * s.a.wo);
    uint8_t* img = nx.imgs.data() + slot * nx.img_size;
    if (nx.pool) {
        pack_bits<Vec>(s.wk.spk.data() + r0 * row, (r1 - r0) * row, nx.pbits.data() + r0 * row / 8);
        pool_into<Vec, W512>(nx, img, r0 / nx.pool, std::min<int64_t>(r1 / nx.pool, nx.a.h), s.a.wo);
    } else {
        const int64_t rb = nx.ls.row_bytes, off = nx.a.pad * (nx.a.c / 8);
        for (int64_t oy = r0; oy < r1; ++oy)
            pack_bits<Vec>(s.wk.spk.data() + oy * row, row, img + (oy + nx.a.pad) * rb + off);
    }
}

// Band b of stage i over the block's steps t0 .. t0 + nt - 1, whose images are slots slot0 ..
// slot0 + nt - 1 of the ring: accumulate, soma, and hand the spikes on (or, for the last stage,
// write the output rows); then, when `flush`, flush the band's byte counters into the counts.
template <bool Vec, bool W512 = false>
__attribute__((always_inline)) inline void run_band(std::vector<std::unique_ptr<Stage>>& st, size_t i, size_t b,
                                                    int64_t t0, int64_t nt, int64_t slot0, bool flush) {
    Stage& s = *st[i];
    const ConvLayerArgs& a = s.a;
    const Band bd = s.bands[b];
    const int64_t r0 = bd.r0, r1 = bd.r1, m = a.m, wo = a.wo, p_out = a.ho * a.wo;
    const bool last = i + 1 == st.size();
    ConvLayerArgs ab = a;  // the band's rows as a layer of r1 - r0 output rows (for lut_accumulate)
    ab.ho = r1 - r0;
    for (int64_t tl = 0; tl < nt; ++tl) {
        const int64_t t = t0 + tl;
        bool position_major = true;
        if (i == 0 && !s.rows.empty() && s.rows[b]) {  // dense VNNI rows (only ever set on the AVX-512 paths)
#if NEUROSIM_X86
            RowsPlan& rp = *s.rows[b];
            rows_vnni_step(a, rp, a.x + t * a.c * a.h * a.w);
            for (int64_t oy = r0; oy < r1; ++oy) soma_chain<Vec, W512>(a, rp.row(oy), wo * m, s.wk, oy * wo * m);
#endif
        } else if (i == 0) {  // spans from the input planes
            SpanPlan& sp = *s.span[b];
            const int8_t* xt = a.x + t * a.c * a.h * a.w;
            if (sp.span == 32) span_accumulate<Vec, 32, W512>(a, sp, xt, bd.c0, bd.c1);
            else if (sp.span == 48) span_accumulate<Vec, 48, W512>(a, sp, xt, bd.c0, bd.c1);
            else span_accumulate<Vec, 0, W512>(a, sp, xt, bd.c0, bd.c1);
            for (int64_t oy = r0; oy < r1; ++oy) soma_chain<Vec, W512>(a, sp.row(oy - r0), wo * m, s.wk, oy * wo * m);
        } else {
            const uint8_t* img = s.imgs.data() + (slot0 + tl) * s.img_size;
            bool summed = false;
#if NEUROSIM_X86
            if constexpr (W512) {
                if (s.bits) {  // (only ever set on the avx512vnni and amx paths)
                    int16_t* acc = s.acc.data() + r0 * wo * m;
                    bits_vnni_step(a, *s.bits, img, s.ls.row_bytes, r0, r1, acc);
                    soma_chain<Vec, W512>(a, acc, (r1 - r0) * wo * m, s.wk, r0 * wo * m);
                    summed = true;
                }
            }
            if constexpr (Vec) {
                if (!summed && !s.few.empty()) {
                    PlaneFewPlan& pf = *s.few[b];
                    expand_bits_avx2(s, img, pf, std::max<int64_t>(0, r0 - a.pad),
                                     std::min<int64_t>(a.h, r1 - 1 + a.kh - a.pad));
                    plane_few_step(a, pf, s.wk, r0, r1);
                    position_major = false;
                }
            }
#endif
            if (position_major && !summed) {
                int16_t* acc = s.acc.data() + r0 * wo * m;
                lut_accumulate<Vec>(ab, *s.lut, img + r0 * a.stride * s.ls.row_bytes, acc, s.offs[b].data());
                soma_chain<Vec, W512>(a, acc, (r1 - r0) * wo * m, s.wk, r0 * wo * m);
            }
        }
        if (last) {  // output rows [r0, r1) of step t, (M, P)
            int8_t* o = a.out + t * m * p_out;
            if (position_major) {
                transpose_bytes(s.wk.spk.data() + r0 * wo * m, (r1 - r0) * wo, m, o + r0 * wo, p_out);
            } else {
                for (int64_t j = 0; j < m; ++j)
                    std::memcpy(o + j * p_out + r0 * wo, s.wk.spk.data() + j * p_out + r0 * wo, (r1 - r0) * wo);
            }
            s.last_counts.add_cm(o, r0 * wo, r1 * wo);
        } else {
            hand_on<Vec, W512>(s, *st[i + 1], slot0 + tl, r0, r1);
        }
    }
    if (!flush) return;
    if (i == 0 && !s.rows.empty() && s.rows[b]) s.rows[b]->flush_counts(a);
    if (last) {
        s.last_counts.flush_cm(r0 * wo, r1 * wo);
    } else {
        s.out_counts.flush_pm(r0 * wo, r1 * wo);
        Stage& nx = *st[i + 1];
        if (nx.pool) nx.pool_counts.flush_pm(r0 / nx.pool * nx.a.w, std::min<int64_t>(r1 / nx.pool, nx.a.h) * nx.a.w);
    }
}

using BandArgs = const std::tuple<size_t, size_t, int64_t, int64_t, int64_t, bool>;
void band_scalar(std::vector<std::unique_ptr<Stage>>& st, BandArgs& t) {
    run_band<false>(st, std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t), std::get<4>(t), std::get<5>(t));
}

// the number of ones in x[0:n], or -1 when a value is neither 0 nor 1
int64_t binary_ones(const int8_t* x, int64_t n) {
    uint8_t umax = 0;
    int64_t ones = 0;
    for (int64_t i = 0; i < n; ++i) {
        umax = std::max(umax, static_cast<uint8_t>(x[i]));
        ones += static_cast<uint8_t>(x[i]);
    }
    return umax <= 1 ? ones : -1;
}
#if NEUROSIM_X86
__attribute__((target("avx2"))) void band_avx2(std::vector<std::unique_ptr<Stage>>& st, BandArgs& t) {
    run_band<true>(st, std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t), std::get<4>(t), std::get<5>(t));
}
__attribute__((target(NEUROSIM_AVX512))) void band_avx512(std::vector<std::unique_ptr<Stage>>& st, BandArgs& t) {
    run_band<true, true>(st, std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t), std::get<4>(t),
                         std::get<5>(t));
}
__attribute__((target("avx2"))) int64_t binary_ones_avx2(const int8_t* x, int64_t n) {
    __m256i mx = _mm256_setzero_si256(), sum = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
        mx = _mm256_max_epu8(mx, v);
        sum = _mm256_add_epi64(sum, _mm256_sad_epu8(v, _mm256_setzero_si256()));  // (byte sums, 4 int64 lanes)
    }
    alignas(32) uint8_t lanes[32];
    alignas(32) int64_t sums[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), mx);
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums), sum);
    uint8_t umax = 0;
    for (uint8_t v : lanes) umax = std::max(umax, v);
    const int64_t tail = binary_ones(x + i, n - i);
    return umax <= 1 && tail >= 0 ? sums[0] + sums[1] + sums[2] + sums[3] + tail : -1;
}
#else  // no x86 paths: the vector entry points are the scalar ones (never chosen: cpu_has_avx2() is false)
void band_avx2(std::vector<std::unique_ptr<Stage>>& st, BandArgs& t) { band_scalar(st, t); }
void band_avx512(std::vector<std::unique_ptr<Stage>>& st, BandArgs& t) { band_scalar(st, t); }
int64_t binary_ones_avx2(const int8_t* x, int64_t n) { return binary_ones(x, n); }
#endif  // NEUROSIM_X86

// Whether the chain stage's Fast LIF can run on an int16 membrane (soma::lif16_avx512): with 0/1
// inputs the sum of output j lies in [-L1_j, L1_j] (L1_j = sum |w[j]|), so x = sum + bias_j + half
// and the current I = x >> shift are bounded; the membrane's reachable range is then grown from
// {0} by one step of the neuron (integrate, fire, reset, leak: each monotone in the membrane)
// until it is closed. True when it closes with every value (x, u = v + I, the reset value) inside
// [-32767, 32767], M divides 32 (the bias repeats in a register), v_th fits int16 (and is >= 0 for
// a subtractive reset); it then also fills wk.bias_half16.
bool lif16_bounds(const ConvLayerArgs& a, Work& wk) {
    const LIFParams& p = a.lif;
    if (a.soma != 3 || 32 % a.m || a.shift < 0 || a.shift > 15 || p.refractory_steps || p.leak_beta || p.leak_alpha < 0 ||
        p.leak_alpha > 256 || (p.reset_mode != 0 && p.reset_mode != 1) || p.v_th < -32767 || p.v_th > 32767 ||
        (p.reset_mode == 1 && p.v_th < 0))  // (subtracting v_th >= 0 never raises the membrane)
        return false;
    constexpr int64_t LIM = 32767;
    const int64_t fan_in = a.c * a.kh * a.kw, half = a.shift ? int64_t{1} << (a.shift - 1) : 0;
    const int64_t reset = p.reset_mode == 0 ? std::clamp(p.v_reset, neurosim::intmath::MEM_LO, neurosim::intmath::MEM_HI) : 0;
    if (reset < -LIM || reset > LIM) return false;
    int64_t i_lo = 0, i_hi = 0;
    for (int64_t j = 0; j < a.m; ++j) {
        int64_t l1 = 0;
        for (int64_t e = 0; e < fan_in; ++e) l1 += std::abs(static_cast<int32_t>(a.weight[j * fan_in + e]));
        const int64_t b = a.bias ? a.bias[j] : 0, lo = b - l1 + half, hi = b + l1 + half;
        if (lo < -LIM || hi > LIM || b + half > LIM) return false;
        i_lo = std::min(i_lo, lo >> a.shift);
        i_hi = std::max(i_hi, hi >> a.shift);
    }
    const int64_t alpha = p.leak_alpha, v_th = p.v_th;
    auto leak = [alpha](int64_t u) { return (u * alpha) >> 8; };  // floor (arithmetic shift)
    int64_t v_lo = 0, v_hi = 0;
    for (int it = 0; it < 1 << 16; ++it) {
        const int64_t u_lo = v_lo + i_lo, u_hi = v_hi + i_hi;
        if (u_lo < -LIM || u_hi > LIM) return false;
        int64_t r_lo = u_lo, r_hi = std::min(u_hi, v_th);  // the values that do not fire, then those that do
        if (u_hi > v_th) {
            const int64_t f_lo = p.reset_mode == 0 ? reset : std::max(u_lo, v_th + 1) - v_th;
            const int64_t f_hi = p.reset_mode == 0 ? reset : u_hi - v_th;
            r_lo = u_lo <= v_th ? std::min(r_lo, f_lo) : f_lo;
            r_hi = u_lo <= v_th ? std::max(r_hi, f_hi) : f_hi;
        }
        if (r_lo < -LIM || r_hi > LIM) return false;
        const int64_t n_lo = std::min(v_lo, leak(r_lo)), n_hi = std::max(v_hi, leak(r_hi));
        if (n_lo == v_lo && n_hi == v_hi) {
            for (int i = 0; i < 32; ++i)
                wk.bias_half16[i] = static_cast<int16_t>((a.bias ? a.bias[i % a.m] : 0) + half);
            return true;
        }
        v_lo = n_lo;
        v_hi = n_hi;
    }
    return false;
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

}  // namespace

// Steps per block: at most 255 (the byte counters) and about 1 MB of images (the ring of every
// stage's input images holds RING blocks). With more than one thread the default cuts the steps
// into about BLOCKS_PER_THREAD blocks per thread, so that the stages of different blocks overlap.
constexpr int64_t BLOCK_IMAGE_BYTES = 1 << 20;
constexpr int64_t RING = 3;
constexpr int64_t BLOCKS_PER_THREAD = 4;
// the cost of one first-stage span add in vpdpbusd of the rows first stage (Impl::rows_first)
constexpr double ROWS_PER_SPAN_ADD = 5.0;

// A chain run by a team of threads (ChainJob in kernels.h). Phase 0 prepares (the input's 0/1
// check in chunks, each stage's int16 check, buffers, plans and tables): its tasks are claimed by
// an atomic counter, and every member waits until all are done. Then the band tasks run as a
// data flow: task (stage i, block k, band b) is ready when
//   * (i, k - 1, b) is done (a band's LIF state, accumulators and counters go step after step),
//   * every band of (i - 1, k) is done (its spikes are this block's input images), and
//   * every band of (i + 1, k - RING) is done (the ring slot of the images that (i, k) writes is free);
// a member takes the ready task with the lowest block (then the latest stage) under a mutex, runs
// it, marks it done, and repeats until every task is done. So the stages of consecutive blocks run
// at the same time on different threads, and a member that joins late (the caller, after its
// other work: simulate runs the ANN branch meanwhile) takes whatever is ready. The results do not
// depend on who ran which task or in which order (disjoint outputs, each neuron's steps in
// order), so they are the same for every thread count and block size.
struct ChainTables::Impl {
    std::mutex mu;
    std::vector<std::unique_ptr<LutTables>> luts;  // by stage, once built
    std::vector<ConvLayerArgs> made_for;           // the stage each was built for (weights and shape)
    explicit Impl(int64_t n) : luts(n), made_for(n) {}
    int64_t stages() const { return static_cast<int64_t>(luts.size()); }

    // stage k's lut tables for stage args a (built on first use)
    const LutTables* lut(int64_t k, const ConvLayerArgs& a) {
        std::lock_guard<std::mutex> lk(mu);
        if (!luts[k]) {
            luts[k] = std::make_unique<LutTables>(a);
            made_for[k] = a;
        }
        const ConvLayerArgs& b = made_for[k];
        if (b.weight != a.weight || b.m != a.m || b.c != a.c || b.h != a.h || b.w != a.w || b.kh != a.kh ||
            b.kw != a.kw || b.stride != a.stride || b.pad != a.pad)
            throw std::invalid_argument("the chain tables were made for other weights or shapes");
        return luts[k].get();
    }
};

ChainTables::ChainTables(int64_t stages) : impl(std::make_unique<Impl>(stages)) {
    if (stages < 1) throw std::invalid_argument("a chain needs at least one stage");
}
ChainTables::~ChainTables() = default;

struct ChainJob::Impl {
    std::vector<std::unique_ptr<Stage>> st;
    int path = 0;
    FirstStage first = FIRST_AUTO;
    ChainTables* tables = nullptr;  // the caller's tables kept across calls (or none)
    bool rows_ok = false;  // the rows first stage can run (chain_rows_available)
    int64_t n = 0, block = 1, blocks = 0, chunks = 1, total = 0;
    std::atomic<int64_t> ones{0};  // the chain input's ones (counted by the prepare tasks)
    std::atomic<int64_t> prep_next{0}, prep_done{0};
    int64_t prep_tasks = 0;
    std::mutex mu;                               // guards the schedule below
    std::vector<std::vector<int64_t>> done;      // [stage][band]: blocks done
    std::vector<std::vector<char>> running;      // [stage][band]: a member runs its next block
    std::vector<std::vector<int64_t>> unflushed; // [stage][band]: steps in the byte counters
    int64_t remaining = 0;                       // band tasks not yet done
    std::atomic<int64_t> version{0};             // += 1 whenever a task is done (waiting members watch it)
    std::atomic<bool> ok{true};
    std::mutex error_mu;
    std::exception_ptr error;
    std::shared_ptr<neurosim::ThreadPool::Job> helpers;  // the pool threads that work on it (start)
    bool joined = false;

    void prepare(int64_t k) {
        const ConvLayerArgs& a0 = st[0]->a;
        if (k >= n) {  // a chunk of the input
            const int64_t c = k - n, lo = total * c / chunks, hi = total * (c + 1) / chunks;
            const int64_t n_ones = path == SCALAR ? binary_ones(a0.x + lo, hi - lo) : binary_ones_avx2(a0.x + lo, hi - lo);
            if (n_ones < 0) ok.store(false, std::memory_order_relaxed);
            else ones.fetch_add(n_ones, std::memory_order_relaxed);
            return;
        }
        Stage& s = *st[k];
        // the stage's counts are the call's own: cleared here, before any band task adds to them
        if (s.a.in_count) std::fill_n(s.a.in_count, s.a.c * s.a.h * s.a.w, 0);
        if (s.a.out_count) std::fill_n(s.a.out_count, s.a.m * s.a.ho * s.a.wo, 0);
        if (!int16_exact(s.a)) {
            ok.store(false, std::memory_order_relaxed);
            return;
        }
        s.wk.init(s.a);
        const int64_t p_out = s.a.ho * s.a.wo;
        if ((path == AVX512VNNI || path == AMX) && lif16_bounds(s.a, s.wk)) {
            s.wk.lif16 = true;
            s.wk.v16.assign(s.a.m * p_out, 0);
        }
        const bool last = k + 1 == n;
        if (last) s.last_counts.init(p_out, s.a.m, s.a.out_count);
        else s.out_counts.init(p_out, s.a.m, s.a.out_count);
        if (k == 0) {  // (the band plans: at the band's first task, once the first stage's kind is known)
            s.span.resize(s.bands.size());
            if (first != FIRST_SPANS && rows_ok) s.rows.resize(s.bands.size());
            return;
        }
        // (the padding stays zero; every step's interior is rewritten)
        s.imgs.assign(std::min(RING, blocks) * block * s.img_size + BITS_VNNI_SLACK, 0);
        if (s.pool) {
            const ConvLayerArgs& p = st[k - 1]->a;
            s.pbits.assign(p.ho * p.wo * p.m / 8 + 4, 0);
            s.pool_counts.init(s.a.h * s.a.w, s.a.c, s.a.in_count);
        }
        if ((path == AVX512VNNI || path == AMX) && last && bits_vnni_fits(s.a)) {
            s.bits = std::make_unique<BitsVnniPlan>(s.a);
            s.acc.assign(s.a.m * p_out, 0);
        } else if (path != SCALAR && last && plane_few_fits(s.a, true)) {
            for (size_t b = 0; b < s.bands.size(); ++b) s.few.push_back(std::make_unique<PlaneFewPlan>(s.a));
        } else {
            if (tables) {
                s.lut = tables->impl->lut(k, s.a);
            } else {
                s.lut_own = std::make_unique<LutTables>(s.a);
                s.lut = s.lut_own.get();
            }
            s.offs.assign(s.bands.size(), std::vector<int32_t>(s.ls.ntab));
            s.acc.assign(s.a.m * p_out, 0);
        }
    }

    // block k of band b of stage i (the byte counters flushed before they could pass 255 steps,
    // and after the last block)
    void band_task(size_t i, size_t b, int64_t k) {
        const int64_t steps = st[0]->a.steps, t0 = k * block, nt = std::min(block, steps - t0);
        int64_t& pending = unflushed[i][b];
        pending += nt;
        const bool flush = k + 1 == blocks || pending + block > 255;
        if (flush) pending = 0;
        if (i == 0 && k == 0) first_stage_plan(b);
        const BandArgs args{i, b, t0, nt, (k % RING) * block, flush};
        if (path == SCALAR) band_scalar(st, args);
        else if (path == AVX512VNNI || path == AMX) band_avx512(st, args);
        else band_avx2(st, args);
    }

    // Rows or spans for the first stage. AUTO takes the rows when their dot products cost less
    // than the span adds: per step and output row C*kh*G*ceil(Wo/16)*M vpdpbusd, against
    // ceil(kh/s) span adds per input one, each measured to cost about ROWS_PER_SPAN_ADD vpdpbusd
    // (the reference network's first stage on AMD Zen 4; docs/results/chip.md).
    bool rows_first() const {
        if (!rows_ok || first == FIRST_SPANS) return false;
        if (first == FIRST_ROWS) return true;
        const ConvLayerArgs& a = st[0]->a;
        const double rows = static_cast<double>(a.steps) * a.ho * a.c * a.kh * ((a.kw + 3) / 4) *
                            ((a.wo + 15) / 16) * a.m;
        const double spans = static_cast<double>(ones.load()) * ((a.kh + a.stride - 1) / a.stride);
        return spans * ROWS_PER_SPAN_ADD > rows;
    }
    // the first stage's plan for band b (before its first block)
    void first_stage_plan(size_t b) {
        Stage& s = *st[0];
        const Band& bd = s.bands[b];
        if (rows_first()) s.rows[b] = std::make_unique<RowsPlan>(s.a, bd.r0, bd.r1, bd.c0, bd.c1);
        else s.span[b] = std::make_unique<SpanPlan>(s.a, bd.r0, bd.r1);
    }

    int64_t min_done(size_t i) const {
        int64_t m = done[i][0];
        for (int64_t d : done[i]) m = std::min(m, d);
        return m;
    }

    // the ready task with the lowest block, then the latest stage (under mu); false when none is
    bool pick(size_t& bi, size_t& bb) {
        int64_t best = -1;
        for (size_t i = n; i-- > 0;) {
            const int64_t below = i > 0 ? min_done(i - 1) : blocks;
            const int64_t above = i + 1 < static_cast<size_t>(n) ? min_done(i + 1) : blocks;
            for (size_t b = 0; b < done[i].size(); ++b) {
                const int64_t k = done[i][b];
                if (running[i][b] || k >= blocks || below <= k || above < k + 1 - RING) continue;
                if (best < 0 || k < best) {
                    best = k;
                    bi = i;
                    bb = b;
                }
            }
        }
        return best >= 0;
    }

    void fail() {
        std::lock_guard<std::mutex> lk(error_mu);
        if (!error) error = std::current_exception();
        ok.store(false);
    }

    void team() {
        for (int64_t k; (k = prep_next.fetch_add(1, std::memory_order_relaxed)) < prep_tasks;) {
            try {
                prepare(k);
            } catch (...) {
                fail();
            }
            prep_done.fetch_add(1, std::memory_order_acq_rel);
        }
        for (int spin = 0; prep_done.load(std::memory_order_acquire) < prep_tasks; ++spin) {
            if (spin < 4000) neurosim::cpu_relax();
            else std::this_thread::yield();
        }
        for (;;) {
            size_t i = 0, b = 0;
            int64_t seen;
            {
                std::lock_guard<std::mutex> lk(mu);
                if (remaining == 0 || !ok.load(std::memory_order_relaxed)) return;
                seen = version.load(std::memory_order_relaxed);
                if (pick(i, b)) running[i][b] = 1;
                else seen = -1 - seen;  // nothing ready: wait for the next completion
            }
            if (seen < 0) {
                const int64_t v0 = -1 - seen;
                for (int spin = 0; version.load(std::memory_order_acquire) == v0; ++spin) {
                    if (spin < 4000) neurosim::cpu_relax();
                    else std::this_thread::yield();
                }
                continue;
            }
            try {
                band_task(i, b, done[i][b]);  // (done[i][b] changes only below, by this member)
            } catch (...) {
                fail();
            }
            {
                std::lock_guard<std::mutex> lk(mu);
                ++done[i][b];
                running[i][b] = 0;
                --remaining;
            }
            version.fetch_add(1, std::memory_order_release);
        }
    }
};

bool chain_rows_available(const ChainStage& first, int path) {
    return (path == AVX512VNNI || path == AMX) && cpu_has_avx512vbmi() && rows_vnni_fits(first.conv);
}

ChainJob::ChainJob(const ChainStage* stages, int64_t n, int path, int threads, int64_t block_steps, FirstStage first,
                   ChainTables* tables)
    : impl(std::make_unique<Impl>()) {
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
    Impl& J = *impl;
    const ConvLayerArgs& a0 = stages[0].conv;
    J.path = path;
    J.first = first;
    J.tables = tables;
    if (tables && tables->impl->stages() != n) throw std::invalid_argument("the chain tables were made for another chain");
    J.rows_ok = chain_rows_available(stages[0], path);
    if (first == FIRST_ROWS && !J.rows_ok)
        throw std::invalid_argument("the rows first stage needs the avx512vnni or amx path on a CPU with AVX-512 VBMI, "
                                    "and M in {8, 16}, stride <= 4, kw <= 16: use spans or auto");
    J.n = n;
    J.total = a0.steps * a0.c * a0.h * a0.w;
    const int64_t parts = std::max(1, threads);
    J.chunks = parts;
    int64_t step_bytes = 0;  // one step's images of all stages
    for (int64_t i = 0; i < n; ++i) {  // shapes and bands
        J.st.push_back(std::make_unique<Stage>(stages[i].conv, stages[i].pool));
        Stage& s = *J.st.back();
        s.a.steps = a0.steps;
        const bool last = i + 1 == n;
        s.bands = make_bands(s.a.ho, parts, last ? 1 : std::max(1, stages[i + 1].pool));
        if (i == 0) {
            const int64_t nb = static_cast<int64_t>(s.bands.size());
            for (int64_t b = 0; b < nb; ++b) {  // the input rows each band counts
                s.bands[b].c0 = s.a.h * b / nb;
                s.bands[b].c1 = s.a.h * (b + 1) / nb;
            }
        } else {
            s.img_size = s.ls.hpp * s.ls.row_bytes;
            step_bytes += s.img_size;
        }
    }
    const int64_t steps = std::max<int64_t>(1, a0.steps);
    int64_t want = block_steps;
    if (want <= 0) {
        want = step_bytes ? BLOCK_IMAGE_BYTES / (RING * step_bytes) : 255;
        if (parts > 1) want = std::min(want, (steps + BLOCKS_PER_THREAD * parts - 1) / (BLOCKS_PER_THREAD * parts));
    }
    J.block = std::clamp<int64_t>(want, 1, std::min<int64_t>(255, steps));
    J.blocks = (a0.steps + J.block - 1) / J.block;
    J.prep_tasks = n + J.chunks;
    for (int64_t i = 0; i < n; ++i) {
        const size_t nb = J.st[i]->bands.size();
        J.done.emplace_back(nb, 0);
        J.running.emplace_back(nb, 0);
        J.unflushed.emplace_back(nb, 0);
        J.remaining += J.blocks * static_cast<int64_t>(nb);
    }
}

// The helpers are threads of the one pool (neurosim/thread_pool.h), not threads started for the
// call: a call costs a wake-up of a waiting (or still spinning) worker, not a thread creation.
void ChainJob::start(int helpers) {
    Impl* J = impl.get();
    if (helpers > 0) J->helpers = neurosim::ThreadPool::instance().start(helpers, helpers, [J](int64_t) { J->team(); });
}

int ChainJob::join() {
    Impl& J = *impl;
    if (!J.joined) {
        J.joined = true;
        J.team();
        if (J.helpers) neurosim::ThreadPool::instance().finish(J.helpers);  // (a helper not yet started runs team() here: nothing left)
        J.helpers.reset();
    }
    if (J.error) std::rethrow_exception(J.error);
    return J.ok.load() ? 0 : -1;
}

ChainJob::~ChainJob() {
    if (impl && !impl->joined) {
        try {
            join();
        } catch (...) {
        }
    }
}

int snn_chain(const ChainStage* stages, int64_t n, int path, int threads, int64_t block_steps, FirstStage first,
              ChainTables* tables) {
    ChainJob job(stages, n, path, threads, block_steps, first, tables);
    job.start(std::max(0, threads - 1));
    return job.join();
}

}  // namespace chip
