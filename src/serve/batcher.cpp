#include "serve/batcher.h"

#include <torch/torch.h>

#include <exception>

namespace instseg::serve {

namespace {
bool same_size(const torch::Tensor& a, const torch::Tensor& b) {
  return a.size(1) == b.size(1) && a.size(2) == b.size(2);
}
}  // namespace

Batcher::Batcher(ImagePredictor& predictor, int max_batch, std::chrono::milliseconds batch_wait, int max_queue,
                 std::function<void(int)> on_batch)
    : predictor_(predictor),
      max_batch_(max_batch),
      batch_wait_(batch_wait),
      max_queue_(max_queue),
      on_batch_(std::move(on_batch)),
      worker_([this] { work(); }) {}

Batcher::~Batcher() {
  stop();
  if (worker_.joinable()) worker_.join();
}

Batcher::Ticket Batcher::submit(torch::Tensor image) {
  auto job = std::make_unique<Job>();
  job->image = std::move(image);
  job->submitted = Clock::now();
  job->abandoned = std::make_shared<std::atomic<bool>>(false);
  Ticket ticket{job->promise.get_future(), job->abandoned};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Backpressure: a bounded queue, so memory stays bounded whatever the clients send.
    if (stopping_ || static_cast<int>(queue_.size()) >= max_queue_) return Ticket{};
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
  return ticket;
}

size_t Batcher::depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

void Batcher::drain() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_ = true;
  }
  cv_.notify_all();
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
}

std::vector<std::unique_ptr<Batcher::Job>> Batcher::take_batch(std::unique_lock<std::mutex>& lock) {
  // Requests whose caller gave up (timed out) are dropped instead of predicted.
  while (!queue_.empty() && queue_.front()->abandoned->load()) queue_.pop_front();
  std::vector<std::unique_ptr<Job>> batch;
  if (queue_.empty()) return batch;
  batch.push_back(std::move(queue_.front()));
  queue_.pop_front();
  const auto deadline = batch.front()->submitted + batch_wait_;
  for (;;) {
    for (auto it = queue_.begin(); it != queue_.end() && static_cast<int>(batch.size()) < max_batch_;) {
      if (!(*it)->abandoned->load() && same_size((*it)->image, batch.front()->image)) {
        batch.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    // Wait a little for more of this size, unless the batch is full or the server drains.
    if (static_cast<int>(batch.size()) >= max_batch_ || draining_ || stopping_ || Clock::now() >= deadline) break;
    cv_.wait_until(lock, deadline);
  }
  return batch;
}

void Batcher::work() {
  for (;;) {
    std::vector<std::unique_ptr<Job>> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and every queued request answered
      batch = take_batch(lock);
    }
    if (batch.empty()) continue;
    const auto started = Clock::now();
    std::vector<torch::Tensor> images;
    std::vector<int64_t> ids;
    for (const auto& job : batch) {
      images.push_back(job->image);
      ids.push_back(1);  // one image per request: predictions.json's id of a lone input
    }
    if (on_batch_) on_batch_(static_cast<int>(batch.size()));
    std::vector<BatchResult> results(batch.size());
    try {
      auto predictions = predictor_.predict(images, ids);
      for (size_t i = 0; i < batch.size(); ++i) results[i].prediction = std::move(predictions[i]);
    } catch (const std::exception& e) {
      for (auto& r : results) r.error = e.what();
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      results[i].batch_size = static_cast<int>(batch.size());
      results[i].queue_seconds = std::chrono::duration<double>(started - batch[i]->submitted).count();
      batch[i]->promise.set_value(std::move(results[i]));
    }
  }
}

}  // namespace instseg::serve
