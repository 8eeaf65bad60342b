// What simulate counts after a run (Tally in kernels.h): the SNN tiles' active inputs and the
// routes' packets, both from the per-neuron nonzero counts of the run's values laid out in one
// int32 array (the count arena). One call per run, from tables made once per compiled plan.
#include <algorithm>
#include <limits>
#include <stdexcept>

#include <neurosim/simd.h>
#include <neurosim/thread_pool.h>

#include "kernels.h"

namespace chip {

namespace {

void require(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(what);
}

#if NEUROSIM_X86
// range_sums where every group's sum fits int32: 16 counts per zmm add into int32 lanes (a run's
// last < 16 by a masked load), one reduction per group
__attribute__((target("avx512f"))) void range_sums_i32_avx512(const int32_t* count, const int64_t* ptr,
                                                               const int64_t* starts, const int64_t* stops,
                                                               int64_t groups, int64_t* out) {
    for (int64_t g = 0; g < groups; ++g) {
        __m512i acc = _mm512_setzero_si512();
        for (int64_t r = ptr[g]; r < ptr[g + 1]; ++r) {
            int64_t i = starts[r];
            for (; i + 16 <= stops[r]; i += 16) acc = _mm512_add_epi32(acc, _mm512_loadu_si512(count + i));
            const __mmask16 tail = static_cast<__mmask16>((1u << (stops[r] - i)) - 1);
            acc = _mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(tail, count + i));
        }
        out[g] = _mm512_reduce_add_epi32(acc);
    }
}
#endif

}  // namespace

Tally::Tally(int64_t arena_size, int64_t tiles, int64_t routes) : arena_(arena_size), tiles_(tiles), routes_(routes) {
    require(arena_size >= 0 && tiles >= 0 && routes >= 0, "sizes must be >= 0");
}

void Tally::add_windows(const TallyWindows& g) {
    require(g.offset >= 0 && g.c >= 1 && g.h >= 1 && g.w >= 1 && g.offset + g.c * g.h * g.w <= arena_,
            "the window group's counts lie outside the arena");
    require(0 <= g.c0 && g.c0 <= g.c1 && g.c1 <= g.c, "channel range out of bounds");
    require(g.kh >= 1 && g.kw >= 1 && g.stride >= 1 && g.pad >= 0 && g.h + 2 * g.pad >= g.kh && g.w + 2 * g.pad >= g.kw,
            "bad kernel, stride or padding");
    require(g.starts.size() == g.stops.size() && g.starts.size() == g.tiles.size(),
            "starts, stops and tiles must have the same length");
    const int64_t p = ((g.h + 2 * g.pad - g.kh) / g.stride + 1) * ((g.w + 2 * g.pad - g.kw) / g.stride + 1);
    for (size_t i = 0; i < g.starts.size(); ++i) {
        require(0 <= g.starts[i] && g.starts[i] <= g.stops[i] && g.stops[i] <= p,
                "ranges must satisfy 0 <= start <= stop <= Ho*Wo");
        require(0 <= g.tiles[i] && g.tiles[i] < tiles_, "tile index out of range");
    }
    windows_.push_back(g);
    positions_ = std::max(positions_, p);
}

void Tally::set_routes(std::vector<int64_t> ptr, std::vector<int64_t> starts, std::vector<int64_t> stops,
                       std::vector<int64_t> route, std::vector<int64_t> value_of, std::vector<int64_t> dense_per_step,
                       int64_t values) {
    const size_t g = route.size();
    require(ptr.size() == g + 1 && value_of.size() == g && dense_per_step.size() == g,
            "ptr needs one entry per route and one more; value_of and dense_per_step one per route");
    require(starts.size() == stops.size(), "starts and stops must have the same length");
    require(ptr[0] == 0 && ptr[g] == static_cast<int64_t>(starts.size()), "ptr must run from 0 to the number of runs");
    for (size_t i = 0; i < g; ++i) {
        require(ptr[i] <= ptr[i + 1], "ptr must be non-decreasing");
        require(0 <= route[i] && route[i] < routes_, "route index out of range");
        require(0 <= value_of[i] && value_of[i] < values, "value index out of range");
        require(dense_per_step[i] >= 0, "dense packets per step must be >= 0");
    }
    max_neurons_ = 0;
    for (size_t i = 0; i < g; ++i) {
        int64_t n = 0;
        for (int64_t r = ptr[i]; r < ptr[i + 1]; ++r) {
            require(0 <= starts[r] && starts[r] <= stops[r] && stops[r] <= arena_, "runs must lie in the arena");
            n += stops[r] - starts[r];
        }
        max_neurons_ = std::max(max_neurons_, n);
    }
    ptr_ = std::move(ptr);
    starts_ = std::move(starts);
    stops_ = std::move(stops);
    route_ = std::move(route);
    value_of_ = std::move(value_of);
    dense_ = std::move(dense_per_step);
    values_ = values;
}

void Tally::run(const int32_t* arena, const int64_t* steps, int64_t* active, int64_t* packets, int threads) const {
    // two independent parts of about equal cost (reference network: 8 us each), one per thread
    neurosim::ThreadPool::instance().run(2, threads, [&](int64_t part) {
        if (part == 0) count_windows(arena, active);
        else count_routes(arena, steps, packets);
    });
}

void Tally::count_windows(const int32_t* arena, int64_t* active) const {
    std::vector<int64_t> pre(positions_ + 1, 0);
    for (const TallyWindows& g : windows_) {
        const int64_t p = ((g.h + 2 * g.pad - g.kh) / g.stride + 1) * ((g.w + 2 * g.pad - g.kw) / g.stride + 1);
        window_counts(arena + g.offset, g.c, g.h, g.w, g.c0, g.c1, g.kh, g.kw, g.stride, g.pad, pre.data() + 1);
        for (int64_t i = 0; i < p; ++i) pre[i + 1] += pre[i];
        for (size_t i = 0; i < g.tiles.size(); ++i) active[g.tiles[i]] += pre[g.stops[i]] - pre[g.starts[i]];
    }
}

void Tally::count_routes(const int32_t* arena, const int64_t* steps, int64_t* packets) const {
    const int64_t groups = static_cast<int64_t>(route_.size());
    if (!groups) return;
    std::vector<int64_t> sparse(groups);
    // a neuron's count is at most its value's steps: a route's sum fits int32 below 2^31 / neurons steps
    const int64_t max_steps = *std::max_element(steps, steps + values_);
    const bool int32_sums = max_steps <= std::numeric_limits<int32_t>::max() / std::max<int64_t>(1, max_neurons_);
#if NEUROSIM_X86
    if (int32_sums && NEUROSIM_CPU_SUPPORTS("avx512f"))
        range_sums_i32_avx512(arena, ptr_.data(), starts_.data(), stops_.data(), groups, sparse.data());
    else
#endif
        range_sums(arena, arena_, ptr_.data(), starts_.data(), stops_.data(), groups, sparse.data());
    for (int64_t g = 0; g < groups; ++g)
        packets[route_[g]] = std::min(sparse[g], dense_[g] * steps[value_of_[g]]);
}

}  // namespace chip
