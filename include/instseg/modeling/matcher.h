#pragma once
#include <torch/types.h>

namespace instseg {

// Assigns each prediction (anchor or proposal) to the ground-truth box it overlaps most, as
// torchvision's det_utils.Matcher.
struct Matcher {
  static constexpr int64_t kBelowLowThreshold = -1;  // best IoU < low_threshold: background
  static constexpr int64_t kBetweenThresholds = -2;  // low <= best IoU < high: ignored

  // Throws c10::Error when low_threshold > high_threshold.
  Matcher(double high_threshold, double low_threshold, bool allow_low_quality_matches = false);

  // match_quality: [G, P] (IoU of G ground-truth boxes with P predictions) -> [P] int64: the
  // matched ground-truth index, or kBelowLowThreshold / kBetweenThresholds. With
  // allow_low_quality_matches, every prediction that ties for a ground truth's best IoU keeps
  // its match even below high_threshold. Throws c10::Error naming the empty side when G or P is 0.
  torch::Tensor operator()(const torch::Tensor& match_quality) const;

  double high_threshold;
  double low_threshold;
  bool allow_low_quality_matches;
};

}  // namespace instseg
