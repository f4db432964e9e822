#include "instseg/modeling/sampler.h"

#include <torch/torch.h>

#include <algorithm>

namespace instseg {

BalancedPositiveNegativeSampler::BalancedPositiveNegativeSampler(int64_t batch_size_per_image,
                                                                 double positive_fraction)
    : batch_size_per_image(batch_size_per_image), positive_fraction(positive_fraction) {
  TORCH_CHECK(batch_size_per_image > 0,
              "BalancedPositiveNegativeSampler: batch_size_per_image must be > 0, got ",
              batch_size_per_image);
  TORCH_CHECK(positive_fraction >= 0 && positive_fraction <= 1,
              "BalancedPositiveNegativeSampler: positive_fraction must be in [0, 1], got ",
              positive_fraction);
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
BalancedPositiveNegativeSampler::operator()(const std::vector<torch::Tensor>& matched_idxs,
                                            std::optional<at::Generator> generator) const {
  std::vector<torch::Tensor> positive_masks, negative_masks;
  // Draw order (positives then negatives, image by image) is torchvision's, so that one seed
  // gives the same subsets on both sides.
  const auto draw = [&](const torch::Tensor& candidates, int64_t count) {
    const auto options = torch::TensorOptions().dtype(torch::kLong).device(candidates.device());
    const auto perm = generator ? torch::randperm(candidates.size(0), *generator, options)
                                : torch::randperm(candidates.size(0), options);
    return candidates.index_select(0, perm.narrow(0, 0, count));
  };
  for (const auto& matched : matched_idxs) {
    TORCH_CHECK(matched.dim() == 1,
                "BalancedPositiveNegativeSampler: matched_idxs must be [P], got ", matched.sizes());
    const auto positive = torch::where(matched >= 1)[0];
    const auto negative = torch::where(matched == 0)[0];
    // int() in torchvision truncates the product.
    const int64_t num_pos = std::min<int64_t>(
        positive.size(0), static_cast<int64_t>(batch_size_per_image * positive_fraction));
    const int64_t num_neg = std::min<int64_t>(negative.size(0), batch_size_per_image - num_pos);
    const auto chosen_pos = draw(positive, num_pos);
    const auto chosen_neg = draw(negative, num_neg);
    auto pos_mask = torch::zeros_like(matched, torch::kUInt8);
    auto neg_mask = torch::zeros_like(matched, torch::kUInt8);
    pos_mask.index_fill_(0, chosen_pos, 1);
    neg_mask.index_fill_(0, chosen_neg, 1);
    positive_masks.push_back(pos_mask);
    negative_masks.push_back(neg_mask);
  }
  return {positive_masks, negative_masks};
}

}  // namespace instseg
