#pragma once
// The training and validation splits a TrainConfig names (COCO, folder or synthetic), behind one
// interface for the trainer, and the batch loader that walks the training split.
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "instseg/coco/dataset.h"
#include "instseg/engine/train_config.h"
#include "instseg/structures/detections.h"

namespace instseg {

struct TrainingSample {
  torch::Tensor image;  // [3, H, W] float RGB in [0, 1]
  Targets targets;      // labels are contiguous 1..num_classes-1
  int64_t image_id = 0;
  std::string file_name;
};

class TrainingData {
 public:
  TrainingData(const DataConfig& config, int seed);
  ~TrainingData();

  int num_classes() const;  // including background
  std::vector<std::string> class_names() const;  // index = label, "__background__" first
  bool has_masks() const;

  size_t train_size() const;
  TrainingSample train_sample(size_t index, bool flip) const;

  size_t val_size() const;
  TrainingSample val_sample(size_t index) const;
  // The validation split as COCO ground truth (category ids of the source data).
  const coco::Dataset& val_ground_truth() const;
  void write_val_ground_truth(const std::string& path) const;
  // Model labels (1..K) -> the source's category ids, for results files.
  torch::Tensor labels_to_category_ids(const torch::Tensor& labels) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct LoaderPosition {
  int64_t epoch = 0;
  int64_t index = 0;  // next position in the epoch's shuffled order
};

struct TrainingBatch {
  std::vector<torch::Tensor> images;
  std::vector<Targets> targets;
  std::vector<std::string> file_names;
};

// Endless batches over the training split: shuffled per epoch by (seed, epoch), flips decided by
// (seed, epoch, index), so a loader restarted at a saved position yields the same batches.
class BatchLoader {
 public:
  BatchLoader(const TrainingData& data, int batch_size, int seed, bool flip, LoaderPosition start);
  TrainingBatch next();
  LoaderPosition position() const { return position_; }

 private:
  std::vector<int64_t> order(int64_t epoch) const;
  const TrainingData& data_;
  int batch_size_;
  int seed_;
  bool flip_;
  LoaderPosition position_;
  std::vector<int64_t> order_;
};

}  // namespace instseg
