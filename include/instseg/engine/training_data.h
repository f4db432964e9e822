#pragma once
// The training and validation splits a DataConfig names (COCO, folder or synthetic), with the
// validation split also as COCO ground truth for the evaluator.
#include <memory>
#include <string>

#include "instseg/coco/dataset.h"
#include "instseg/data/dataset.h"
#include "instseg/engine/train_config.h"

namespace instseg {

class TrainingData {
 public:
  explicit TrainingData(const DataConfig& config);

  const std::shared_ptr<const data::Dataset>& train_set() const { return train_; }
  // Null when the config names no validation split.
  const std::shared_ptr<const data::Dataset>& val_set() const { return val_; }
  const data::CategoryMap& categories() const { return train_->categories(); }
  int64_t num_classes() const { return categories().num_classes(); }

  // The validation split as COCO instances (the source's category ids, RLE masks): what the
  // evaluator scores against and what val_annotations.json holds.
  const coco::Dataset& val_ground_truth() const { return val_ground_truth_; }

 private:
  std::shared_ptr<const data::Dataset> train_, val_;
  coco::Dataset val_ground_truth_;
};

// A dataset's samples as COCO ground truth: one image per sample (its image_id, size and file
// name), one non-crowd annotation per instance with the mask as RLE, area = mask pixels.
coco::Dataset to_coco_ground_truth(const data::Dataset& dataset);

}  // namespace instseg
