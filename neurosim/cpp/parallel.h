// Static-partition parallel loop shared by the neurosim._snn kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace snn_parallel {

// Calls fn(lo, hi, thread_index) on `threads` contiguous chunks of [0, n) (fewer if n is small)
// and joins. The partition depends only on (n, threads), so per-chunk results are reproducible.
template <typename F>
void parallel_for(int64_t n, int threads, F&& fn) {
  threads = std::max<int>(1, std::min<int64_t>(threads, n));
  if (threads == 1) {
    fn(0, n, 0);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t chunk = (n + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    const int64_t lo = t * chunk, hi = std::min(n, lo + chunk);
    if (lo >= hi) break;
    pool.emplace_back([&fn, lo, hi, t] { fn(lo, hi, t); });
  }
  for (auto& th : pool) th.join();
}

}  // namespace snn_parallel
