#pragma once
// Between the threads of a pipeline (engine/inference.cpp's reader, model and writer): a queue of
// at most `capacity` items, and a thread that keeps its exception for the one who joins it.
// (src/engine/video_predictor.cpp has the same two in its own file; one home for both is here.)
#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace instseg::detail {

// A queue of at most `capacity` items between two threads. close() ends it: pop() returns the
// items left and then nothing, push() refuses (the consumer gave up).
template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}
  bool push(T item) {
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
    if (closed_) return false;
    items_.push_back(std::move(item));
    not_empty_.notify_one();
    return true;
  }
  std::optional<T> pop() {
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    not_full_.notify_one();
    return item;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }
  // Drops the items waiting (their memory goes now, not when the queue does).
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    items_.clear();
    not_full_.notify_all();
  }

 private:
  size_t capacity_;
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<T> items_;
  bool closed_ = false;
};

// Starts `body` on a thread whose exception is kept for the caller; `done` runs however it ends.
class Worker {
 public:
  template <typename Body, typename Done>
  Worker(Body body, Done done)
      : thread_([this, body = std::move(body), done = std::move(done)]() mutable {
          try {
            body();
          } catch (...) {
            error_ = std::current_exception();
          }
          done();
        }) {}
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() { join(); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // The body's exception, once joined; null when it ended normally.
  std::exception_ptr error() {
    join();
    return error_;
  }

 private:
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace instseg::detail
