// Static-partition parallel loop shared by the neurosim._snn kernels, on the one persistent
// thread pool of the C++ kernels (cpp/include/neurosim/thread_pool.h).
#pragma once

#include <neurosim/thread_pool.h>

#include <algorithm>
#include <cstdint>

namespace snn_parallel {

// Calls fn(lo, hi, chunk) on `threads` contiguous chunks of [0, n) (fewer if n is small), one
// pool task per chunk, and returns when all are done. The partition depends only on (n, threads)
// and each chunk index is given to one task, so per-chunk scratch indexed by it is private and
// per-chunk results are reproducible. Inside another pool job (or while another thread runs one)
// the chunks run one after the other on the calling thread: same partition, same results.
template <typename F>
void parallel_for(int64_t n, int threads, F&& fn) {
  threads = std::max<int>(1, std::min<int64_t>(threads, n));
  if (threads == 1) {
    fn(0, n, 0);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  const int64_t chunks = (n + chunk - 1) / chunk;
  neurosim::ThreadPool::instance().run(chunks, threads, [&](int64_t t) {
    const int64_t lo = t * chunk, hi = std::min(n, lo + chunk);
    fn(lo, hi, static_cast<int>(t));
  });
}

}  // namespace snn_parallel
