#pragma once
// Batches of training samples in a shuffled order that depends only on (seed, epoch), with random
// horizontal flips that depend only on (seed, epoch, sample): resuming from a saved position gives
// exactly the batches an uninterrupted run would have seen.
//
// Data-parallel training and gradient accumulation: a step trains on a global batch of
// G = ranks x batch_size x accumulate images, taken from the epoch order as one batch of G would
// be (the same images whatever the world size), and cut into blocks of batch_size: block k is
// global micro-batch k. Rank r's micro-batch j (j < accumulate) is block r + j x ranks, so one
// process with accumulate = ranks x a sees the blocks of a job's ranks in turn. With G >
// batch_size an epoch's last, incomplete global batch is dropped: every rank gets full and equal
// micro-batches. Each loader loads (and prefetches) only its own rank's blocks.
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "instseg/data/dataset.h"

namespace instseg::data {

struct LoaderOptions {
  int64_t batch_size = 2;         // images per batch (torchvision's reference: 2 per GPU)
  bool shuffle = true;            // a fresh order every epoch; false = dataset order
  bool drop_last = false;         // drop each epoch's last, incomplete batch
  double hflip_prob = 0.5;        // torchvision's reference trains with RandomHorizontalFlip(0.5)
  int64_t prefetch_batches = 2;   // batches a background thread prepares ahead; 0 = no thread
  uint64_t seed = 0;
  int64_t ranks = 1;              // processes sharing each global batch (the job's world size)
  int64_t rank = 0;               // which of them this loader serves, in [0, ranks)
  int64_t accumulate = 1;         // micro-batches per rank and step
  void validate() const;          // throws ConfigError naming the field
  int64_t global_batch() const { return ranks * batch_size * accumulate; }
};

// Where the loader stands: `index` samples of epoch `epoch`'s order have been handed out (by all
// ranks together, counted at global-batch boundaries). Plain integers, so a trainer stores them in
// its checkpoint and passes them back to resume, also with another world size or accumulate.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const LoaderPosition& o) const { return epoch == o.epoch && index == o.index; }
};

struct Batch {
  std::vector<torch::Tensor> images;  // each [3, H, W] float RGB in [0, 1], own size
  std::vector<Targets> targets;
  std::vector<int64_t> indices;       // dataset indices of the samples
  std::vector<int64_t> image_ids;
  LoaderPosition start;               // position of the batch's first sample
  int64_t block = 0;                  // k: the global micro-batch (block) of its global batch
};

class DataLoader {
 public:
  // Throws ConfigError for bad options or when an epoch would have no batch (empty dataset,
  // drop_last with fewer samples than batch_size, or fewer samples than a global batch).
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options, LoaderPosition start = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // This rank's next micro-batch; epochs follow one another without end and a batch never spans
  // two. An error while loading (e.g. InputError for an unreadable image) is thrown here, for the
  // batch it hit; the position then moves past that batch.
  Batch next();
  // Where the next global batch starts once this rank has taken its `accumulate` micro-batches of
  // the current one (the start of the current one while it is being taken).
  LoaderPosition position() const { return consumed_.window; }

  // Global batches (steps) per epoch; with ranks = accumulate = 1, batches.
  int64_t batches_per_epoch() const;
  // Dataset indices in the order epoch `epoch` visits them.
  std::vector<int64_t> epoch_order(int64_t epoch) const;

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };
  // This rank's micro-batch `micro` (< accumulate) of the global batch starting at `window`.
  struct Cursor {
    LoaderPosition window;
    int64_t micro = 0;
  };
  Slot make(const Cursor& at);                // loads one batch; errors go into the slot
  int64_t epoch_end() const;                  // samples of an epoch that are handed out
  Cursor after(const Cursor& at) const;
  void produce();                              // body of the prefetch thread

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  Cursor consumed_;
  Cursor produced_;                            // prefetch thread only
  std::pair<int64_t, std::vector<int64_t>> order_cache_{-1, {}};  // producer side only

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Slot> ready_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace instseg::data
