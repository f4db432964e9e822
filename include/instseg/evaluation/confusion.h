#pragma once
// Class confusion matrix: detections matched to ground truth of any class at one IoU threshold,
// plus a background row and column (missed objects, detections on nothing).
#include <cstdint>
#include <string>
#include <vector>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/evaluation/coco_evaluator.h"

namespace instseg::evaluation {

struct ConfusionOptions {
  double iou_threshold = 0.5;
  // Detections scoring below this are left out, as in the usual detector confusion matrices:
  // otherwise low-score clutter that AP barely weighs fills the background row.
  double score_threshold = 0.25;
  int num_threads = 0;  // 0: one per hardware thread
  void validate() const;  // ConfigError naming the field
};

struct ConfusionMatrix {
  std::vector<int64_t> category_ids;  // K, ascending; index K is "background"
  std::vector<std::string> category_names;
  // [(K + 1) x (K + 1)] row-major: row = true class, column = predicted class. Row K counts
  // detections matching no ground truth; column K ground truth no detection matched.
  std::vector<int64_t> counts;
  int64_t at(size_t true_index, size_t predicted_index) const {
    return counts[true_index * (category_ids.size() + 1) + predicted_index];
  }
  // CSV with a header row and one row per true class ("true\predicted", names, "background").
  std::string to_csv() const;
};

// Per image, pairs (detection, non-crowd GT) with IoU >= threshold are taken greedily by IoU (ties:
// higher score, then file order), each detection and GT at most once. Unmatched detections that
// fall on a crowd region (IoU with it >= threshold) are not counted.
ConfusionMatrix confusion_matrix(const coco::Dataset& ground_truth, const std::vector<coco::Detection>& detections,
                                 IouType iou_type, const ConfusionOptions& options = {});

}  // namespace instseg::evaluation
