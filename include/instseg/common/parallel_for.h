#pragma once
// Runs body(i) for i in [0, n) on up to `threads` std::threads pulling indices from a shared
// counter. If bodies throw, the exception of the lowest index is rethrown after all threads end,
// so the error reported does not depend on scheduling. Plain std::threads, no torch: the COCO
// readers (entries parsed in parallel) and the evaluator use it, both in instseg_core.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace instseg {

// `requested` threads, or every hardware thread for 0 (or less).
inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  return std::max(1, int(std::thread::hardware_concurrency()));
}

template <typename Body>
void parallel_for(size_t n, int threads, Body&& body) {
  std::atomic<size_t> next{0};
  std::mutex mutex;
  size_t failed_at = n;
  std::exception_ptr failure;
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      try {
        body(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (i < failed_at) {
          failed_at = i;
          failure = std::current_exception();
        }
      }
    }
  };
  const int count = int(std::min<size_t>(size_t(std::max(threads, 1)), std::max<size_t>(n, 1)));
  std::vector<std::thread> pool;
  for (int t = 1; t < count; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace instseg
