#pragma once
#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <optional>
#include <utility>
#include <vector>

namespace instseg {

// Samples a fixed-size, class-balanced subset of matched predictions per image for the losses,
// as torchvision's det_utils.BalancedPositiveNegativeSampler.
struct BalancedPositiveNegativeSampler {
  // Throws c10::Error unless batch_size_per_image > 0 and positive_fraction is in [0, 1].
  BalancedPositiveNegativeSampler(int64_t batch_size_per_image, double positive_fraction);

  // matched_idxs: one [P_i] int64 per image, >= 1 positive, 0 negative, < 0 ignored (as the RPN
  // and box head label them). Returns (positive masks, negative masks), one [P_i] uint8 each.
  // Up to batch_size_per_image * positive_fraction positives, the rest negatives, chosen by
  // torch::randperm with `generator` (the default CPU generator when absent): with the same seed
  // the choice equals torchvision's.
  std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> operator()(
      const std::vector<torch::Tensor>& matched_idxs,
      std::optional<at::Generator> generator = std::nullopt) const;

  int64_t batch_size_per_image;
  double positive_fraction;
};

}  // namespace instseg
