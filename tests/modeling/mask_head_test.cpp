#include "instseg/modeling/roi_heads/mask_head.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/modeling/roi_heads/mask_predictor.h"
#include "modeling/rcnn_reference.h"

namespace instseg {
namespace {

using testing::max_abs_diff;

class MaskHeadParity : public ::testing::TestWithParam<const char*> {};

TEST_P(MaskHeadParity, FeaturesAndClassMasksMatchTorchvision) {
  const std::string variant = GetParam();
  const auto stages = testing::end_to_end_reference("stages_" + variant);
  const auto weights = testing::end_to_end_reference("weights_" + variant);
  const auto norm = variant == "v2" ? NormKind::kBatchNorm : NormKind::kNone;
  MaskRcnnHeads head(256, std::vector<int64_t>{256, 256, 256, 256}, 1, norm);
  // v1: conv weight + bias per block; v2: conv weight + 4 BN tensors per block
  EXPECT_EQ(testing::copy_state_counted(*head, weights, "roi_heads.mask_head."), variant == "v2" ? 20 : 8);
  MaskRcnnPredictor predictor(256, 256, 91);
  EXPECT_EQ(testing::copy_state_counted(*predictor, weights, "roi_heads.mask_predictor."), 4);
  head->eval();

  torch::NoGradGuard no_grad;
  const auto features = head(stages.at("mask_pool"));
  EXPECT_LT(max_abs_diff(features, stages.at("mask_feat")), 1e-4);

  const auto logits = predictor(features);  // [K, 91, 28, 28], every 4th detection
  const auto& labels = stages.at("sub_labels");
  const auto probs = logits.index({torch::arange(labels.size(0)), labels}).sigmoid().unsqueeze(1);
  const auto& expected = stages.at("sub_masks");
  ASSERT_EQ(probs.sizes(), expected.sizes());
  EXPECT_LT(max_abs_diff(probs, expected), 1e-4);
  EXPECT_GT(expected.std().item<double>(), 0.1);  // masks are not flat
}

INSTANTIATE_TEST_SUITE_P(Variants, MaskHeadParity, ::testing::Values("v1", "v2"));

}  // namespace
}  // namespace instseg
