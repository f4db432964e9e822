#include "instseg/data/loader.h"

#include <torch/torch.h>

#include <new>
#include <numeric>

#include "data/random.h"
#include "instseg/data/transforms.h"
#include "instseg/errors.h"

namespace instseg::data {
namespace {
// Keys that keep the random streams of different purposes apart for one seed.
constexpr uint64_t kOrderStream = 1, kFlipStream = 2;
}  // namespace

void LoaderOptions::validate() const {
  if (batch_size < 1) throw ConfigError("loader.batch_size must be >= 1, got " + std::to_string(batch_size));
  if (!(hflip_prob >= 0 && hflip_prob <= 1)) {
    throw ConfigError("loader.hflip_prob must be in [0, 1], got " + std::to_string(hflip_prob));
  }
  if (prefetch_batches < 0) {
    throw ConfigError("loader.prefetch_batches must be >= 0, got " + std::to_string(prefetch_batches));
  }
  if (ranks < 1) throw ConfigError("loader.ranks must be >= 1, got " + std::to_string(ranks));
  if (rank < 0 || rank >= ranks) {
    throw ConfigError("loader.rank must be in [0, " + std::to_string(ranks) + "), got " + std::to_string(rank));
  }
  if (accumulate < 1) throw ConfigError("loader.accumulate must be >= 1, got " + std::to_string(accumulate));
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options, LoaderPosition start)
    : dataset_(std::move(dataset)), options_(options) {
  options_.validate();
  if (batches_per_epoch() == 0) {
    const std::string global = options_.global_batch() == options_.batch_size
                                   ? ""
                                   : " (a global batch of " + std::to_string(options_.ranks) + " ranks x " +
                                         std::to_string(options_.batch_size) + " x accumulate " +
                                         std::to_string(options_.accumulate) + " = " +
                                         std::to_string(options_.global_batch()) + " samples)";
    throw ConfigError("loader.batch_size " + std::to_string(options_.batch_size) + global +
                      (options_.drop_last ? " with drop_last" : "") + " leaves no batch for a dataset of " +
                      std::to_string(dataset_->size()) + " samples");
  }
  if (start.epoch < 0 || start.index < 0 || start.index > dataset_->size()) {
    throw ConfigError("loader position (epoch " + std::to_string(start.epoch) + ", index " +
                      std::to_string(start.index) + ") is outside a dataset of " + std::to_string(dataset_->size()));
  }
  // A position at the end of an epoch (as saved after its last batch) starts the next one.
  consumed_.window = start.index >= epoch_end() ? LoaderPosition{start.epoch + 1, 0} : start;
  produced_ = consumed_;
  if (options_.prefetch_batches > 0) worker_ = std::thread([this] { produce(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
}

int64_t DataLoader::batches_per_epoch() const {
  const int64_t n = dataset_->size(), g = options_.global_batch();
  // A global batch of several blocks must be complete, or the ranks' micro-batches would differ.
  return options_.drop_last || g > options_.batch_size ? n / g : (n + g - 1) / g;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(dataset_->size()));
  std::iota(order.begin(), order.end(), 0);
  if (options_.shuffle) Rng({options_.seed, kOrderStream, static_cast<uint64_t>(epoch)}).shuffle(order);
  return order;
}

int64_t DataLoader::epoch_end() const {
  const bool whole_batches = options_.drop_last || options_.global_batch() > options_.batch_size;
  return whole_batches ? batches_per_epoch() * options_.global_batch() : dataset_->size();
}

DataLoader::Cursor DataLoader::after(const Cursor& at) const {
  if (at.micro + 1 < options_.accumulate) return {at.window, at.micro + 1};
  const int64_t end = at.window.index + options_.global_batch();
  return {end >= epoch_end() ? LoaderPosition{at.window.epoch + 1, 0} : LoaderPosition{at.window.epoch, end}, 0};
}

DataLoader::Slot DataLoader::make(const Cursor& at) {
  Slot slot;
  const int64_t epoch = at.window.epoch;
  slot.batch.block = options_.rank + at.micro * options_.ranks;
  const int64_t begin = at.window.index + slot.batch.block * options_.batch_size;
  slot.batch.start = {epoch, begin};
  try {
    if (order_cache_.first != epoch) order_cache_ = {epoch, epoch_order(epoch)};
    const auto& order = order_cache_.second;
    const int64_t end = std::min<int64_t>(begin + options_.batch_size, static_cast<int64_t>(order.size()));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t index = order[i];
      Sample sample;
      try {
        sample = dataset_->get(index);
      } catch (const std::bad_alloc&) {
        // A bare "std::bad_alloc" names nothing; say which sample could not be loaded.
        throw InputError("dataset sample #" + std::to_string(index) + " (epoch " + std::to_string(epoch) +
                         "): out of memory while loading it (an image or annotation far larger than the others?)");
      }
      Rng flip({options_.seed, kFlipStream, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index)});
      if (flip.uniform() < options_.hflip_prob) sample = hflip(std::move(sample));
      slot.batch.images.push_back(std::move(sample.image));
      slot.batch.targets.push_back(std::move(sample.targets));
      slot.batch.indices.push_back(index);
      slot.batch.image_ids.push_back(sample.image_id);
    }
  } catch (...) {
    slot.error = std::current_exception();
  }
  return slot;
}

void DataLoader::produce() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] {
        return stopping_ || static_cast<int64_t>(ready_.size()) < options_.prefetch_batches;
      });
      if (stopping_) return;
    }
    Slot slot = make(produced_);  // outside the lock: the trainer keeps consuming meanwhile
    produced_ = after(produced_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.push_back(std::move(slot));
    }
    changed_.notify_all();
  }
}

Batch DataLoader::next() {
  Slot slot;
  if (options_.prefetch_batches == 0) {
    slot = make(consumed_);
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return !ready_.empty(); });
    slot = std::move(ready_.front());
    ready_.pop_front();
    lock.unlock();
    changed_.notify_all();
  }
  consumed_ = after(consumed_);
  if (slot.error) std::rethrow_exception(slot.error);
  return std::move(slot.batch);
}

}  // namespace instseg::data
