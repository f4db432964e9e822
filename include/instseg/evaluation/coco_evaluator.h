#pragma once
// COCO detection / instance segmentation evaluation, equal to pycocotools' COCOeval with its
// default parameters (evaluate + accumulate + summarize), multi-threaded and deterministic.
// The rules, and where this differs from pycocotools (clear errors instead of crashes or silent
// drops), are in docs/evaluation.md.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"

namespace instseg::evaluation {

enum class IouType { kBbox, kSegm };
const char* to_string(IouType type);  // "bbox", "segm"

struct EvalOptions {
  int num_threads = 0;  // 0: one per hardware thread; results do not depend on it
  void validate() const;  // throws ConfigError for a negative count
};

// Sizes of COCOeval's parameter axes.
constexpr int kNumIouThresholds = 10;  // T: 0.50, 0.55, ..., 0.95
constexpr int kNumRecallPoints = 101;  // R: 0.00, 0.01, ..., 1.00
constexpr int kNumAreaRanges = 4;      // A: all, small, medium, large
constexpr int kNumMaxDets = 3;         // M: 1, 10, 100

// COCOeval.params' thresholds, bit-equal to numpy.linspace's values (0.8999999999999999, ...).
const std::array<double, kNumIouThresholds>& iou_thresholds();
const std::array<double, kNumRecallPoints>& recall_thresholds();
const std::array<const char*, kNumAreaRanges>& area_range_labels();
const std::array<int, kNumMaxDets>& max_dets();

struct EvalResult {
  IouType iou_type = IouType::kBbox;
  std::vector<int64_t> category_ids;  // K, ascending
  std::vector<std::string> category_names;
  std::vector<int64_t> num_gt;         // [K] non-crowd GT instances (area "all")
  std::vector<double> precision;      // [T][R][K][A][M] row-major; -1 where undefined
  std::vector<double> recall;         // [T][K][A][M]; -1 where undefined
  std::array<double, 12> stats{};     // COCOeval.stats; -1 where undefined

  int num_categories() const { return int(category_ids.size()); }
  double precision_at(int t, int r, int k, int a, int m) const;
  double recall_at(int t, int k, int a, int m) const;
  // Mean of precision over recall points and over threshold t (all when t < 0) for category k
  // (all when k < 0), area a, max-dets index m, counting entries > -1 only; -1 when there are none.
  double mean_precision(int t, int k, int a, int m) const;
  double mean_recall(int t, int k, int a, int m) const;
  // AP of category k (IoU 0.50:0.95, area all, 100 detections): COCO's per-class AP.
  double category_ap(int k) const { return mean_precision(-1, k, 0, kNumMaxDets - 1); }
};

// Evaluates detections against the ground truth. Throws InputError naming "detections[i]" and
// the field for an unknown image or category id, a non-finite score, a missing or wrongly sized
// mask (segm), or a missing box when the first detection has one.
EvalResult evaluate(const coco::Dataset& ground_truth, const std::vector<coco::Detection>& detections,
                    IouType iou_type, const EvalOptions& options = {});
// Same for a results file whose masks stay compressed until evaluated (equal results, far less
// memory on dense files).
EvalResult evaluate(const coco::Dataset& ground_truth, const coco::CompressedResults& results, IouType iou_type,
                    const EvalOptions& options = {});

// The 12 lines COCOeval.summarize() prints, without newlines.
std::vector<std::string> summary_lines(const EvalResult& result);

}  // namespace instseg::evaluation
