// Integer kernels of chip_models (see kernels.cpp for the arithmetic and paths).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace chip {

// Execution paths, chosen at run time. Every path gives bit-identical results.
enum Path : int { SCALAR = 0, AVX2 = 1, AVX512VNNI = 2, AVXVNNI = 3, AMX = 4 };

bool cpu_has_avx2();
bool cpu_has_avx512vnni();
bool cpu_has_avxvnni();
bool cpu_has_avx512vbmi();
// AMX-INT8 tiles usable by this process: the CPU has them (cpuid) and Linux granted the tile
// data state (arch_prctl ARCH_REQ_XCOMP_PERM, requested once on the first call).
bool cpu_has_amx();

// Weights packed once for the dense MAC of one path (int16 rows for AVX2, int8 rows + row sums
// for VNNI, the raw int8 rows for the scalar path). M rows of K, padded to kp.
struct PackedWeights {
    int path = SCALAR;
    int64_t m = 0, k = 0, kp = 0;
    std::vector<int8_t> w8u;    // AVX2 (widened in registers for signed x; vpmaddubsw for x >= 0), rows padded to kp8
    int64_t kp8 = 0;
    std::vector<int8_t> w8;     // scalar, VNNI
    std::vector<int32_t> rowsum;  // VNNI: 128 * sum_k w[j, k]
    bool panels = false;        // AVX512VNNI: w8 in 64-column panels (dense_vnni512), else rows
};

PackedWeights pack_weights(const int8_t* w, int64_t m, int64_t k, int path);

// out[n, j] = sat32(bias[j] + sum_k x[n, k] * w[j, k]); bias may be null. K <= 65536.
void dense_mac(const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out);

// The AVX-512 VNNI row kernel (what dense_mac runs for M < 32) on weights packed for AVXVNNI;
// the benchmark times it beside the tile kernel (same result).
void dense_mac_vnni512_rows(const PackedWeights& pw, const int8_t* x, int64_t n, const int32_t* bias, int32_t* out);

// Event-driven accumulation: only nonzero x[n, k] touch the fan-out row wt[k, :] (K x M).
// out[n, j] = sat32(bias[j] + sum_{k: x[n,k] != 0} x[n, k] * wt[k, j]). Returns #active inputs;
// row_active (optional, n entries) receives the count of every row.
int64_t spike_accumulate(const int8_t* x, int64_t n, int64_t k, const int8_t* wt, int64_t m,
                         const int32_t* bias, int32_t* out, int path, int64_t* row_active = nullptr);

// Event-driven convolution (see kernels.cpp): x (T, C, H, W) int8, wt (C, kh, kw, M) int8,
// out (T, Ho*Wo, M) int32 = sat32(bias + conv), row_active (T, Ho*Wo) optional. Fan-in C*kh*kw <= 65536.
struct ConvEventsArgs {
    const int8_t* x;
    int64_t steps, c, h, w;
    const int8_t* wt;
    int64_t kh, kw, m, stride, pad, ho, wo;
    const int32_t* bias;
    int32_t* out;
    int64_t* row_active;
};
int64_t conv_events(const ConvEventsArgs& a, int path);

// Patches of x (T, C, H, W) as (Ho*Wo, T, C*kh*kw) int8 (intnet.im2col order, position-major);
// row_nonzero (Ho*Wo, T) optional: nonzero entries per patch.
void im2col_pt(const int8_t* x, int64_t steps, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
               int64_t stride, int64_t pad, int8_t* out, int64_t* row_nonzero);

struct LIFParams {
    int32_t v_th = 0, v_reset = 0, reset_mode = 0, reset_constant = 0, leak_alpha = 0, leak_beta = 0,
            refractory_steps = 0;
};

// The soma of a layer: ANN output stage (none, relu, lut after sat8) or the integer LIF.
enum Soma : int { SOMA_NONE = 0, SOMA_RELU = 1, SOMA_LUT = 2, SOMA_LIF = 3 };
// How conv_layer accumulates (AUTO: chosen from the input; the others are forced, for tests).
enum AccMode : int { MODE_AUTO = -1, MODE_EVENTS = 0, MODE_PLANE = 1, MODE_LUT = 2, MODE_GEMM = 3 };
// How an SNN chain's first stage accumulates: event-driven spans (conv_span.h), dense rows of VNNI
// dot products (conv_rows_vnni.h: AVX-512 VNNI + VBMI paths only), or AUTO, the cheaper for the
// input's activity (see snn_chain.cpp). The same bits either way.
enum FirstStage : int { FIRST_AUTO = 0, FIRST_SPANS = 1, FIRST_ROWS = 2 };

// The fixed parameters of a conv layer call (checked once in chip_models/kernels.py:
// LayerCall.make); the arrays (weight, bias, lut) travel beside them.
struct LayerParams {
    int64_t stride = 1, pad = 0;
    int shift = 0;             // requantization shift (>= intmath::MIN_SHIFT)
    Soma soma = SOMA_NONE;
    AccMode mode = MODE_AUTO;
    LIFParams lif{};           // soma == SOMA_LIF
};
// One step of the integer LIF of neurosim/intneuron.py, in place on v and counter.
void lif_step(const int32_t* current, int32_t* v, int32_t* counter, int8_t* spikes, int64_t n,
              const LIFParams& p, int path);

// ANN output stage: out = act(sat8(rounding_shift_right(acc, shift))); act 0 none, 1 relu, 2 lut.
void output_stage(const int32_t* acc, int8_t* out, int64_t n, int shift, int act, const int8_t* lut, int path);
// SNN input current: out = sat32(rounding_shift_right(acc, shift)).
void current_stage(const int32_t* acc, int32_t* out, int64_t n, int shift, int path);

// T steps of lif_step: current and spikes are (T, n), state (n,) carried across the steps.
void lif_run(const int32_t* current, int32_t* v, int32_t* counter, int8_t* spikes, int64_t steps, int64_t n,
             const LIFParams& p, int path);

// Router: out[g] = sum over the T rows of values (T, n) of the number of nonzero
// values[t, idx[ptr[g] .. ptr[g+1])] (one spike, one packet).
void count_nonzero_groups(const int8_t* values, int64_t steps, int64_t n, const int64_t* ptr, const int32_t* idx,
                          int64_t groups, int64_t* out, int path);

// Diagnostics: n rounds of 12 register-only vpmaddwd (AVX2 CPUs only) / zmm vpdpbusd (AVX-512
// VNNI CPUs only); each returns a sink value.
int64_t madd_probe(int64_t n);
int64_t vnni512_probe(int64_t n);

}  // namespace chip

namespace chip {

// A whole conv layer over all T steps in one call (see conv_layer.cpp): accumulation
// (event-driven scatter of the active inputs, or a dense plane convolution when that is
// cheaper), bias, requantization and the soma (ANN activation or integer LIF, state carried
// across the steps), spikes/activations written as (T, M, Ho, Wo) int8.
struct ConvLayerArgs {
    const int8_t* x;             // (T, C, H, W)
    int64_t steps, c, h, w;
    const int8_t* weight;        // (M, C, kh, kw), the layer's own layout
    int64_t m, kh, kw, stride, pad, ho, wo;
    const int32_t* bias;         // (M,) or null
    int shift;                   // requantization shift (>= -24)
    int soma;                    // 0 none, 1 relu, 2 lut (ANN: sat8 then act), 3 integer LIF (SNN)
    const int8_t* lut;           // 256 entries for soma 2
    LIFParams lif;               // soma 3
    int8_t* out;                 // (T, M, Ho, Wo)
    int32_t* in_count;           // (C, H, W): number of steps each input is nonzero (optional; conv_layer adds
                                 // to it, conv_layer_threads clears it first)
    int32_t* out_count;          // (M, Ho, Wo): number of steps each output is nonzero (optional; the same)
    int mode;                    // -1 auto, 0 events, 1 plane, 2 lut, 3 gemm (tests force one)
    int mac_path;                // set by conv_layer from its path: the dense MAC of the gemm mode
};
// Returns the accumulation mode used (0 events, 1 plane, 2 lut, 3 gemm) + 4 when int16 accumulators were used.
// path: SCALAR runs the scalar bodies, any other path the AVX2 bodies, and the gemm mode's dense
// MAC (layers with M > 32 or M % 8 != 0) on that path's kernel (VNNI, AMX tiles).
int conv_layer(const ConvLayerArgs& a, int path);
// The same split into blocks of output rows on up to `threads` threads of a persistent pool
// (bit-identical to conv_layer; see conv_layer.cpp), the counts cleared first (the callers' arrays
// need no zeroing). threads <= 1 is conv_layer.
int conv_layer_threads(const ConvLayerArgs& a, int path, int threads);

// A chain of spiking conv layers in one call, spikes bit-packed between them (see snn_chain.cpp).
// Stage 0's conv.x is the chain input (T, C, H, W) 0/1 and conv.in_count its counts; stage i >= 1
// reads stage i-1's spikes, max-pooled k x k first when pool = k > 0 (then conv.in_count, optional,
// receives the pooled value's counts; conv.x is unused). Every stage's conv.out_count (optional)
// receives its output counts (every count array is cleared by the call first); only the last stage
// writes conv.out. Returns 0, or -1 (no output written, the counts cleared) when the input is not
// 0/1 or a stage's int16 condition fails.
struct ChainStage {
    ConvLayerArgs conv;
    int pool;
};
// threads: each stage's output rows are cut into up to that many bands, run by a team of threads
// (the caller and threads - 1 started for the call, joined before it returns) stage after stage
// over blocks of steps (block_steps per block, at most 255; 0: as many as fit about 1 MB of bit
// images); the same bits for every count and block size.
class ChainTables;  // (below)
int snn_chain(const ChainStage* stages, int64_t n, int path, int threads = 1, int64_t block_steps = 0,
              FirstStage first = FIRST_AUTO, ChainTables* tables = nullptr);
// Whether the rows first stage can run: the CPU has AVX-512 VNNI and VBMI, path is avx512vnni or amx,
// and the stage has M in {8, 16}, stride <= 4 and kw <= 16.
bool chain_rows_available(const ChainStage& first, int path);

// The same as a job that runs beside the caller: the constructor checks the shapes (throws
// std::invalid_argument) and cuts the bands; start(h) starts h threads that work on it; join()
// makes the caller a member too until everything is done, joins the threads and returns 0 or -1
// (snn_chain's result). The arrays behind the stages must stay alive until join() returns (the
// destructor joins a job that was not joined).
// What a chain builds from its stages' weights alone (the lut stages' tables, ~20 us per call on
// the reference network), kept across calls by the caller (chip_models.kernels.ChainSpec: one per
// compiled chain): built on the first call that needs them (under a lock: calls may overlap),
// reused after that for stages of the same weights array and shape (else the call throws).
class ChainTables {
public:
    explicit ChainTables(int64_t stages);
    ~ChainTables();
    ChainTables(const ChainTables&) = delete;
    ChainTables& operator=(const ChainTables&) = delete;
    struct Impl;
    std::unique_ptr<Impl> impl;
};

class ChainJob {
public:
    ChainJob(const ChainStage* stages, int64_t n, int path, int threads, int64_t block_steps = 0,
             FirstStage first = FIRST_AUTO, ChainTables* tables = nullptr);
    ~ChainJob();
    ChainJob(const ChainJob&) = delete;
    ChainJob& operator=(const ChainJob&) = delete;
    void start(int helpers);
    int join();
    struct Impl;

private:
    std::unique_ptr<Impl> impl;
};

// Sum over the receptive field of every output position of count[c0:c1] (C, H, W) → out (Ho*Wo).
void window_counts(const int32_t* count, int64_t c, int64_t h, int64_t w, int64_t c0, int64_t c1, int64_t kh,
                   int64_t kw, int64_t stride, int64_t pad, int64_t* out);

// out[g] = sum of count[idx[e]] for e in [ptr[g], ptr[g+1]) (the packets of route g from the
// nonzero counts of the neurons it carries).
void group_sums(const int32_t* count, int64_t n, const int64_t* ptr, const int32_t* idx, int64_t groups, int64_t* out);
// out[g] = sum of count[starts[r]:stops[r]) over the runs r in [ptr[g], ptr[g+1]) (route packets
// from per-neuron counts when each route's neurons are a few contiguous index ranges).
void range_sums(const int32_t* count, int64_t n, const int64_t* ptr, const int64_t* starts, const int64_t* stops, int64_t groups,
                int64_t* out);

// What simulate counts after a run, from the per-neuron nonzero counts of its values laid out in
// one int32 array (the count arena; tables made once per compiled plan, checked when added):
//   * each window group: the SNN tiles tiles[i] own the output positions [starts[i], stops[i]) of a
//     layer (kh x kw kernel, stride, pad) whose input's counts (C, H, W) start at arena[offset]; a
//     tile's active inputs over the run are the window sums of counts[c0:c1] over its positions;
//   * each route g carries the neuron runs ptr[g]..ptr[g+1] of (starts, stops) (arena indices) of
//     value value_of[g]; its packets are the fewer of sparse (one per nonzero value: the runs' count
//     sum) and dense (dense_per_step[g] per step of its value).
// The counts are nonzero counts, so each is at most its value's steps (the sums rely on it: in int32
// lanes where the largest route's neurons times the steps stay below 2^31).
struct TallyWindows {
    int64_t offset = 0, c = 1, h = 1, w = 1, c0 = 0, c1 = 1, kh = 1, kw = 1, stride = 1, pad = 0;
    std::vector<int64_t> starts, stops, tiles;
};

class Tally {
public:
    Tally(int64_t arena_size, int64_t tiles, int64_t routes);
    void add_windows(const TallyWindows& group);
    void set_routes(std::vector<int64_t> ptr, std::vector<int64_t> starts, std::vector<int64_t> stops,
                    std::vector<int64_t> route, std::vector<int64_t> value_of, std::vector<int64_t> dense_per_step,
                    int64_t values);
    // active[tile] += its active inputs; packets[route] = its packets (steps: per value, its steps);
    // the tiles and the routes on two threads where threads > 1
    void run(const int32_t* arena, const int64_t* steps, int64_t* active, int64_t* packets, int threads = 1) const;
    int64_t arena_size() const { return arena_; }
    int64_t tiles() const { return tiles_; }
    int64_t routes() const { return routes_; }
    int64_t values() const { return values_; }

private:
    void count_windows(const int32_t* arena, int64_t* active) const;
    void count_routes(const int32_t* arena, const int64_t* steps, int64_t* packets) const;
    int64_t arena_, tiles_, routes_, values_ = 0, positions_ = 0, max_neurons_ = 0;  // (neurons: of the largest route)
    std::vector<TallyWindows> windows_;
    std::vector<int64_t> ptr_{0}, starts_, stops_, route_, value_of_, dense_;
};

// Max pooling, k x k windows with stride k: x (planes, H, W) int8 -> out (planes, H/k, W/k).
void max_pool(const int8_t* x, int64_t planes, int64_t h, int64_t w, int64_t k, int8_t* out, int path);

// Nonzero count of every column of values (T, n) over the T rows, added to out (n,).
void count_nonzero_cols(const int8_t* values, int64_t steps, int64_t n, int32_t* out, int path);

}  // namespace chip
