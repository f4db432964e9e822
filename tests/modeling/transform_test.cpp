// GeneralizedRcnnTransform against torchvision's GeneralizedRCNNTransform (0.14).
#include "instseg/modeling/transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/errors.h"
#include "modeling/stage_reference.h"

namespace instseg {
namespace {

using testing::load_stage;

// 40 random shapes and min sizes, some capped by max_size: the float32 scale and the floor of
// size * scale must give torchvision's sizes to the pixel.
TEST(GeneralizedRcnnTransform, ResizedSizesEqualTorchvision) {
  const auto ref = load_stage("resize_sizes");
  const auto& inputs = ref.at("inputs");      // [40, 4] h, w, min_size, max_size
  const auto& expected = ref.at("expected");  // [40, 2] resized h, w
  GeneralizedRcnnTransform transform;
  int capped = 0;
  for (int64_t r = 0; r < inputs.size(0); ++r) {
    const int64_t h = inputs[r][0].item<int64_t>(), w = inputs[r][1].item<int64_t>();
    const int64_t min_size = inputs[r][2].item<int64_t>();
    const auto size = transform.resized_size(h, w, min_size);
    EXPECT_EQ(size[0], expected[r][0].item<int64_t>()) << h << "x" << w << " min " << min_size;
    EXPECT_EQ(size[1], expected[r][1].item<int64_t>()) << h << "x" << w << " min " << min_size;
    capped += std::max(size[0], size[1]) >= 1332;
  }
  EXPECT_GT(capped, 0);  // the max_size branch is exercised
}

// Two tiny_coco images (640x427 and 230x352) at min_size 320: normalised, resized, padded to
// 480x512. The shorter sides become 319, not 320, as in torchvision (float32 1/427 * 320).
TEST(GeneralizedRcnnTransform, BatchEqualsTorchvision) {
  const auto ref = load_stage("v1_small");
  TransformOptions options;
  options.min_size = {320};
  const auto batch = GeneralizedRcnnTransform(options).forward({ref.at("image.0"), ref.at("image.1")});
  const auto& expected = ref.at("batch");
  ASSERT_EQ(batch.tensors.sizes(), expected.sizes());
  EXPECT_TRUE(torch::allclose(batch.tensors, expected, 0, 1e-5));
  ASSERT_EQ(batch.image_sizes.size(), 2u);
  EXPECT_EQ(batch.image_sizes[0], (std::array<int64_t, 2>{479, 319}));
  EXPECT_EQ(batch.image_sizes[1], (std::array<int64_t, 2>{319, 489}));
  EXPECT_EQ(ref.at("image_sizes")[0][1].item<int64_t>(), 319);
}

// The default (min_size 800): 640x427 -> 1199x799, padded to 1216x800.
TEST(GeneralizedRcnnTransform, FullSizeBatchEqualsTorchvision) {
  const auto image = load_stage("v1_small").at("image.0");
  const auto expected = load_stage("v1_full").at("batch");
  const auto batch = GeneralizedRcnnTransform().forward({image});
  ASSERT_EQ(batch.tensors.sizes(), expected.sizes());
  EXPECT_TRUE(torch::allclose(batch.tensors, expected, 0, 1e-5));
  EXPECT_EQ(batch.image_sizes[0], (std::array<int64_t, 2>{1199, 799}));
}

// Training: boxes scaled per axis, masks resized with nearest interpolation, bit for bit.
TEST(GeneralizedRcnnTransform, TrainingTargetsEqualTorchvision) {
  const auto ref = load_stage("resize_train");
  TransformOptions options;
  options.min_size = {320};
  Targets targets{ref.at("boxes"), torch::tensor({1, 2}), ref.at("masks")};
  const auto [batch, resized] = GeneralizedRcnnTransform(options).forward_train({ref.at("image")}, {targets});
  EXPECT_TRUE(torch::allclose(batch.tensors, ref.at("batch"), 0, 1e-5));
  EXPECT_TRUE(torch::allclose(resized[0].boxes, ref.at("resized_boxes"), 0, 1e-4));
  EXPECT_TRUE(torch::equal(resized[0].masks, ref.at("resized_masks")));
  EXPECT_TRUE(torch::equal(resized[0].labels, targets.labels));
}

// Multi-scale training draws each image's min_size from the list.
TEST(GeneralizedRcnnTransform, TrainingDrawsEachMinSizeFromTheList) {
  TransformOptions options;
  options.min_size = {64, 96};
  GeneralizedRcnnTransform transform(options);
  torch::manual_seed(0);
  std::set<int64_t> seen;
  for (int i = 0; i < 20; ++i) {
    Targets t{torch::zeros({0, 4}), torch::zeros({0}, torch::kInt64), torch::zeros({0, 40, 50}, torch::kUInt8)};
    const auto [batch, targets] = transform.forward_train({torch::rand({3, 40, 50})}, {t});
    seen.insert(batch.image_sizes[0][0]);
    EXPECT_EQ(targets[0].masks.size(1), batch.image_sizes[0][0]);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{64, 96}));
}

TEST(ResizeBoxes, MapsPredictionsBackToTheOriginalImage) {
  const auto boxes = torch::tensor({{10.0f, 20.0f, 300.0f, 470.0f}});
  const auto back = resize_boxes(boxes, {479, 319}, {640, 427});
  const auto expected = torch::tensor({{10.0f * 427 / 319, 20.0f * 640 / 479, 300.0f * 427 / 319, 470.0f * 640 / 479}});
  EXPECT_TRUE(torch::allclose(back, expected, 1e-6, 1e-4));
}

TEST(TransformOptions, ValidateNamesTheField) {
  TransformOptions options;
  options.min_size = {};
  EXPECT_THAT([&] { options.validate(); },
              ::testing::ThrowsMessage<ConfigError>(::testing::HasSubstr("transform.min_size")));
  options = {};
  options.image_std[1] = 0;
  EXPECT_THAT([&] { options.validate(); },
              ::testing::ThrowsMessage<ConfigError>(::testing::HasSubstr("transform.image_std")));
  options = {};
  options.size_divisible = 0;
  EXPECT_THAT([&] { options.validate(); },
              ::testing::ThrowsMessage<ConfigError>(::testing::HasSubstr("transform.size_divisible")));
}

}  // namespace
}  // namespace instseg
