#include "serve/metrics.h"

#include <sstream>

namespace instseg::serve {

Metrics::Metrics(int max_batch) : batch_counts_(static_cast<size_t>(max_batch) + 1, 0) {}

void Metrics::record_request(int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_by_code_[status];
  for (size_t b = 0; b < kLatencyBuckets.size(); ++b) {
    if (seconds <= kLatencyBuckets[b]) {
      ++latency_counts_[b];
      break;
    }
  }
  ++latency_count_;
  latency_sum_ += seconds;
}

void Metrics::record_batch(int size) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (size >= 0 && static_cast<size_t>(size) < batch_counts_.size()) ++batch_counts_[size];
  ++batches_;
  images_ += size;
}

std::string Metrics::text(size_t queue_depth) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  out << "# HELP instseg_requests_total HTTP requests answered, by status code.\n"
      << "# TYPE instseg_requests_total counter\n";
  for (const auto& [code, n] : requests_by_code_) out << "instseg_requests_total{code=\"" << code << "\"} " << n << "\n";
  out << "# HELP instseg_request_duration_seconds Time from a request's arrival to its answer.\n"
      << "# TYPE instseg_request_duration_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t b = 0; b < kLatencyBuckets.size(); ++b) {
    cumulative += latency_counts_[b];
    out << "instseg_request_duration_seconds_bucket{le=\"" << kLatencyBuckets[b] << "\"} " << cumulative << "\n";
  }
  out << "instseg_request_duration_seconds_bucket{le=\"+Inf\"} " << latency_count_ << "\n"
      << "instseg_request_duration_seconds_sum " << std::to_string(latency_sum_) << "\n"
      << "instseg_request_duration_seconds_count " << latency_count_ << "\n";
  out << "# HELP instseg_queue_depth Requests waiting for the model.\n# TYPE instseg_queue_depth gauge\n"
      << "instseg_queue_depth " << queue_depth << "\n";
  out << "# HELP instseg_inflight_requests Predict requests received and not yet answered.\n"
      << "# TYPE instseg_inflight_requests gauge\ninstseg_inflight_requests " << inflight.load() << "\n";
  out << "# HELP instseg_batch_size Images per forward pass.\n# TYPE instseg_batch_size histogram\n";
  cumulative = 0;
  uint64_t sum = 0;
  for (size_t s = 1; s < batch_counts_.size(); ++s) {
    cumulative += batch_counts_[s];
    sum += batch_counts_[s] * s;
    out << "instseg_batch_size_bucket{le=\"" << s << "\"} " << cumulative << "\n";
  }
  out << "instseg_batch_size_bucket{le=\"+Inf\"} " << batches_ << "\n"
      << "instseg_batch_size_sum " << sum << "\ninstseg_batch_size_count " << batches_ << "\n";
  out << "# HELP instseg_images_predicted_total Images the model answered for.\n"
      << "# TYPE instseg_images_predicted_total counter\ninstseg_images_predicted_total " << images_ << "\n";
  return out.str();
}

}  // namespace instseg::serve
