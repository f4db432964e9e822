#pragma once
// The request queue and its one worker thread, which owns the model: up to max_batch queued
// pictures of one size go through ImagePredictor::predict(batch) together (pictures of different
// sizes would be padded to the largest, which changes results near the padding).
#include <torch/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "instseg/engine/image_predictor.h"

namespace instseg::serve {

using Clock = std::chrono::steady_clock;

struct BatchResult {
  ImagePrediction prediction;
  int batch_size = 0;
  double queue_seconds = 0.0;  // from submit() until its batch started
  std::string error;           // non-empty: the model failed on the batch (500)
};

class Batcher {
 public:
  // `on_batch` is told each batch's size (metrics).
  Batcher(ImagePredictor& predictor, int max_batch, std::chrono::milliseconds batch_wait, int max_queue,
          std::function<void(int)> on_batch);
  ~Batcher();  // stop() and join

  struct Ticket {
    std::future<BatchResult> result;
    std::shared_ptr<std::atomic<bool>> abandoned;  // set by a caller that gave up (timeout)
  };
  // nullopt-like: an empty future (valid() false) when max_queue requests already wait.
  Ticket submit(torch::Tensor image);
  size_t depth() const;
  // No more waiting for fuller batches (the server drains): queued requests run at once.
  void drain();
  // Answers every queued request, then ends the worker.
  void stop();

 private:
  struct Job {
    torch::Tensor image;  // [3, H, W]
    Clock::time_point submitted;
    std::promise<BatchResult> promise;
    std::shared_ptr<std::atomic<bool>> abandoned;
  };
  void work();
  // Takes the oldest job and the queued ones of its size (at most max_batch_); lock held.
  std::vector<std::unique_ptr<Job>> take_batch(std::unique_lock<std::mutex>& lock);

  ImagePredictor& predictor_;
  const int max_batch_;
  const std::chrono::milliseconds batch_wait_;
  const int max_queue_;
  std::function<void(int)> on_batch_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool draining_ = false;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace instseg::serve
