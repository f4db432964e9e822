#include "instseg/modeling/roi_heads/poolers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "modeling/rcnn_reference.h"

namespace instseg {
namespace {

using testing::end_to_end_reference;
using testing::max_abs_diff;

TEST(MapBoxLevels, MatchesTorchvisionAroundLevelBoundaries) {
  const auto ref = end_to_end_reference("levels");
  const auto levels = map_box_levels(ref.at("boxes"), 2, 5);
  EXPECT_TRUE(torch::equal(levels, ref.at("levels"))) << levels << ref.at("levels");
  // A 224 px square is the canonical level 4; 112 px one level finer; below 56 px clamps to 2.
  const auto boxes = torch::tensor({0.f, 0.f, 224.f, 224.f, 0.f, 0.f, 112.f, 112.f, 0.f, 0.f, 8.f, 8.f}).view({3, 4});
  EXPECT_TRUE(torch::equal(map_box_levels(boxes, 2, 5), torch::tensor({4, 3, 2}, torch::kLong)));
}

TEST(InferFeatureScale, RoundsToPowersOfTwo) {
  EXPECT_EQ(infer_feature_scale({200, 336}, {800, 1333}), 0.25);
  EXPECT_EQ(infer_feature_scale({25, 42}, {800, 1333}), 1.0 / 32);
  EXPECT_THROW(infer_feature_scale({100, 42}, {800, 1333}), c10::Error);
}

class PoolerParity : public ::testing::TestWithParam<const char*> {};

TEST_P(PoolerParity, BoxAndMaskPoolingMatchTorchvision) {
  const auto stages = end_to_end_reference(std::string("stages_") + GetParam());
  const auto features = testing::stage_features(stages);
  const auto sizes = testing::stage_image_sizes(stages);

  const MultiScaleRoiAlign box_pool({"0", "1", "2", "3"}, 7);
  const auto boxes = box_pool.forward(features, testing::per_image(stages, "proposals_"), sizes)
                         .index_select(0, stages.at("box_rows"));  // the rows the reference kept
  ASSERT_EQ(boxes.sizes(), stages.at("box_pool").sizes());
  EXPECT_LT(max_abs_diff(boxes, stages.at("box_pool")), 1e-4);

  const MultiScaleRoiAlign mask_pool({"0", "1", "2", "3"}, 14);
  // Every 4th detection's box (the reference keeps their pooled features only).
  const auto masks = mask_pool.forward(features, testing::per_image(stages, "sub_boxes_"), sizes);
  ASSERT_EQ(masks.sizes(), stages.at("mask_pool").sizes());
  EXPECT_LT(max_abs_diff(masks, stages.at("mask_pool")), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Variants, PoolerParity, ::testing::Values("v1", "v2"));

}  // namespace
}  // namespace instseg
