#include "instseg/modeling/matcher.h"

#include <torch/torch.h>

namespace instseg {

Matcher::Matcher(double high_threshold, double low_threshold, bool allow_low_quality_matches)
    : high_threshold(high_threshold),
      low_threshold(low_threshold),
      allow_low_quality_matches(allow_low_quality_matches) {
  TORCH_CHECK(low_threshold <= high_threshold, "Matcher: low_threshold ", low_threshold,
              " must be <= high_threshold ", high_threshold);
}

torch::Tensor Matcher::operator()(const torch::Tensor& match_quality) const {
  TORCH_CHECK(match_quality.dim() == 2, "Matcher: match_quality must be [G, P], got ",
              match_quality.sizes());
  TORCH_CHECK(match_quality.size(0) > 0,
              "Matcher: no ground-truth boxes in an image during training, match_quality ",
              match_quality.sizes());
  TORCH_CHECK(match_quality.size(1) > 0,
              "Matcher: no proposal boxes in an image during training, match_quality ",
              match_quality.sizes());
  auto [best_quality, matches] = match_quality.max(0);  // [P], [P]
  // The raw argmax, before thresholds overwrite it, for the low-quality rescue below.
  const auto all_matches = allow_low_quality_matches ? matches.clone() : torch::Tensor();
  const auto below = best_quality < low_threshold;
  const auto between = (best_quality >= low_threshold) & (best_quality < high_threshold);
  matches.masked_fill_(below, kBelowLowThreshold);
  matches.masked_fill_(between, kBetweenThresholds);
  if (allow_low_quality_matches) {
    // Each ground truth keeps every prediction reaching its best IoU (all of them when tied),
    // so no ground truth is left without a positive.
    const auto best_per_gt = std::get<0>(match_quality.max(1));                       // [G]
    const auto rescued = torch::where(match_quality == best_per_gt.unsqueeze(1))[1];  // [R]
    matches.index_put_({rescued}, all_matches.index_select(0, rescued));
  }
  return matches;
}

}  // namespace instseg
