#pragma once
// Counters for GET /metrics, written in Prometheus' text format 0.0.4.
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace instseg::serve {

class Metrics {
 public:
  explicit Metrics(int max_batch);
  void record_request(int status, double seconds);  // every answered request
  void record_batch(int size);                       // every forward pass
  std::atomic<int64_t> inflight{0};                  // predict requests received, not yet answered
  // `queue_depth`: requests waiting for the model now.
  std::string text(size_t queue_depth) const;

 private:
  // Latency buckets (seconds): a request at small sizes takes ~0.1-1 s on 2 cores, under load up
  // to the request timeout.
  static constexpr std::array<double, 13> kLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                             1,     2.5,  5,     10,   30,  60};
  mutable std::mutex mutex_;
  std::map<int, uint64_t> requests_by_code_;
  std::array<uint64_t, kLatencyBuckets.size()> latency_counts_{};  // per bucket (not cumulative)
  uint64_t latency_count_ = 0;
  double latency_sum_ = 0.0;
  std::vector<uint64_t> batch_counts_;  // index = batch size
  uint64_t batches_ = 0;
  uint64_t images_ = 0;
};

}  // namespace instseg::serve
