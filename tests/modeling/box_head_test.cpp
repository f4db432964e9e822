#include "instseg/modeling/roi_heads/box_head.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/errors.h"
#include "instseg/modeling/roi_heads/box_predictor.h"
#include "modeling/rcnn_reference.h"

namespace instseg {
namespace {

using testing::max_abs_diff;

// The config vocabulary: two_mlp (v1) and conv_fc (v2) read back as their kinds.
TEST(BoxHeadKind, NamesRoundTrip) {
  EXPECT_EQ(to_string(BoxHeadKind::kTwoMlp), "two_mlp");
  EXPECT_EQ(to_string(BoxHeadKind::kConvFc), "conv_fc");
  EXPECT_EQ(box_head_kind_named("two_mlp", "k"), BoxHeadKind::kTwoMlp);
  EXPECT_EQ(box_head_kind_named("conv_fc", "k"), BoxHeadKind::kConvFc);
  EXPECT_THAT([] { box_head_kind_named("mlp", "model.roi_heads.box_head"); },
              ::testing::ThrowsMessage<ConfigError>(::testing::StrEq(
                  "model.roi_heads.box_head must be one of two_mlp | conv_fc, got \"mlp\"")));
}

TEST(BoxHead, ConvFcHeadHasTorchvisionStateDictNames) {
  ConvFcHead head(std::array<int64_t, 3>{256, 7, 7}, std::vector<int64_t>{256, 256, 256, 256}, std::vector<int64_t>{1024}, NormKind::kBatchNorm);
  const auto params = head->named_parameters();
  EXPECT_TRUE(params.contains("0.0.weight"));
  EXPECT_FALSE(params.contains("0.0.bias"));  // the norm makes the bias redundant
  EXPECT_TRUE(params.contains("3.1.weight"));
  EXPECT_EQ(params["5.weight"].sizes(), (std::vector<int64_t>{1024, 256 * 7 * 7}));
  EXPECT_TRUE(head->named_buffers().contains("2.1.running_var"));
}

TEST(BoxHead, TwoMlpOutputsMatchTorchvision) {
  const auto stages = testing::end_to_end_reference("stages_v1");
  const auto weights = testing::end_to_end_reference("weights_v1");
  const int64_t features = 1024;
  auto head = make_box_head(BoxHeadKind::kTwoMlp, NormKind::kNone, 256, 7, features);
  EXPECT_EQ(testing::copy_state_counted(*head.ptr(), weights, "roi_heads.box_head."), 4);
  FastRcnnPredictor predictor(features, 91);
  EXPECT_EQ(testing::copy_state_counted(*predictor, weights, "roi_heads.box_predictor."), 4);
  head.ptr()->eval();

  torch::NoGradGuard no_grad;
  const auto out = head.forward(stages.at("box_pool"));
  EXPECT_LT(max_abs_diff(out, stages.at("box_feat")), 1e-4);
  const auto [logits, deltas] = predictor(out);
  const auto& rows = stages.at("box_rows");  // the RoIs whose pooled features were saved
  EXPECT_LT(max_abs_diff(logits, stages.at("class_logits").index_select(0, rows)), 1e-3);
  EXPECT_LT(max_abs_diff(deltas, stages.at("box_regression").index_select(0, rows)), 1e-4);
}

TEST(BoxHead, ConvFcOutputsMatchTorchvision) {
  const auto stages = testing::end_to_end_reference("stages_v2");
  const auto weights = testing::end_to_end_reference("weights_v2");
  auto head = make_box_head(BoxHeadKind::kConvFc, NormKind::kBatchNorm, 256, 7, 1024);
  // 4 x (conv weight + 4 BN tensors) + fc weight and bias
  EXPECT_EQ(testing::copy_state_counted(*head.ptr(), weights, "roi_heads.box_head."), 22);
  head.ptr()->eval();

  torch::NoGradGuard no_grad;
  const auto out = head.forward(stages.at("box_pool"));
  EXPECT_LT(max_abs_diff(out, stages.at("box_feat")), 1e-4);
  EXPECT_GT(out.abs().max().item<double>(), 0.1);  // not a trivially zero comparison
}

}  // namespace
}  // namespace instseg
