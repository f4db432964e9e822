// parallel_for: every index runs once, and the error reported is the lowest failing index's,
// whichever thread failed first.
#include "instseg/common/parallel_for.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace instseg {
namespace {

TEST(ParallelFor, RunsEveryIndexOnce) {
  for (const int threads : {1, 3, 64}) {
    for (const size_t n : {size_t(0), size_t(1), size_t(1000)}) {
      std::vector<std::atomic<int>> runs(n);
      parallel_for(n, threads, [&](size_t i) { ++runs[i]; });
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(runs[i].load(), 1) << "index " << i << ", " << threads << " threads";
    }
  }
}

TEST(ParallelFor, RethrowsTheLowestFailingIndexWhicheverFailedFirst) {
  // Index 5 fails only once index 900 has failed on the other thread and that thread has moved
  // on (its error recorded), so "the first error recorded" would be 900's. The wait is bounded so
  // that a serial implementation still ends.
  std::atomic<bool> late_failed{false}, moved_on{false};
  std::atomic<int> completed{0};
  const auto body = [&](size_t i) {
    if (i == 900) {
      late_failed = true;
      throw std::runtime_error("index 900");
    }
    if (i > 900 && late_failed) moved_on = true;
    if (i == 5) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!moved_on && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      throw std::runtime_error("index 5");
    }
    ++completed;
  };
  try {
    parallel_for(1000, 2, body);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "index 5");
  }
  EXPECT_TRUE(moved_on);
  // The others still ran: a failure does not stop the remaining indices.
  EXPECT_EQ(completed.load(), 998);
}

TEST(ParallelFor, ResolvesZeroThreadsToTheHardware) {
  EXPECT_EQ(resolve_threads(3), 3);
  EXPECT_GE(resolve_threads(0), 1);
  EXPECT_EQ(resolve_threads(0), resolve_threads(-1));
}

}  // namespace
}  // namespace instseg
