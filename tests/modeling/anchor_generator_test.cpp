// AnchorGenerator against torchvision's AnchorGenerator (0.14) with the Mask R-CNN defaults.
#include "instseg/modeling/anchor_generator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/errors.h"
#include "modeling/stage_reference.h"

namespace instseg {
namespace {

// Feature maps with the shapes of the reference FPN (values never matter to anchors).
FeatureMaps shaped_like(const testing::TensorDict& ref) {
  FeatureMaps maps;
  for (const std::string name : {"0", "1", "2", "3", "pool"}) {
    const auto& t = ref.at("fpn." + name);
    maps.push_back({name, torch::zeros({t.size(0), 1, t.size(2), t.size(3)})});
  }
  return maps;
}

// Batch padded to 480x512: levels 120x128, 60x64, 30x32, 15x16, 8x8 with 3 anchors per cell.
TEST(AnchorGenerator, AnchorsEqualTorchvision) {
  const auto ref = testing::load_stage("v1_small");
  ImageList images{ref.at("batch"), {{479, 319}, {489, 320}}};
  AnchorGenerator generator;
  const auto anchors = generator.forward(images, shaped_like(ref));
  ASSERT_EQ(anchors.size(), 2u);
  EXPECT_EQ(anchors[0].size(0), 3 * (120 * 128 + 60 * 64 + 30 * 32 + 15 * 16 + 8 * 8));  // 61392
  EXPECT_TRUE(torch::equal(anchors[0], ref.at("anchors")));
  EXPECT_TRUE(torch::equal(anchors[1], ref.at("anchors")));
}

// Cell anchors are rounded to whole pixels: ratio 0.5 of size 32 is 45.25 x 22.63 -> 46 x 22.
TEST(AnchorGenerator, CellAnchorsAreRoundedRatiosOuterSizesInner) {
  AnchorGeneratorOptions options;
  options.sizes = {{32, 64}};
  options.aspect_ratios = {{0.5, 1.0, 2.0}};
  AnchorGenerator generator(options);
  EXPECT_EQ(generator.num_anchors_per_location(), (std::vector<int64_t>{6}));
  const auto cell = generator.cell_anchors(0, torch::kFloat, torch::kCPU);
  const auto expected = torch::tensor({{-23, -11, 23, 11}, {-45, -23, 45, 23}, {-16, -16, 16, 16},
                                       {-32, -32, 32, 32}, {-11, -23, 11, 23}, {-23, -45, 23, 45}},
                                      torch::kFloat);
  EXPECT_TRUE(torch::equal(cell, expected));
}

// The second call with the same shapes reuses the grid; another shape builds a new one.
TEST(AnchorGenerator, CachesGridsPerBatchShape) {
  AnchorGeneratorOptions options;
  options.sizes = {{16}};
  options.aspect_ratios = {{1.0}};
  AnchorGenerator generator(options);
  ImageList a{torch::zeros({1, 3, 64, 32}), {{64, 32}}};
  FeatureMaps fa{{"0", torch::zeros({1, 1, 8, 4})}};
  const auto first = generator.forward(a, fa)[0];
  EXPECT_TRUE(first.is_same(generator.forward(a, fa)[0]));
  // Stride 8: the last cell of an 8x4 grid is centred at (24, 56).
  EXPECT_TRUE(torch::equal(first[-1], torch::tensor({16.0f, 48.0f, 32.0f, 64.0f})));
  FeatureMaps fb{{"0", torch::zeros({1, 1, 4, 2})}};
  const auto other = generator.forward(a, fb)[0];
  EXPECT_EQ(other.size(0), 8);
  EXPECT_TRUE(torch::equal(other[1], torch::tensor({8.0f, -8.0f, 24.0f, 8.0f})));  // stride 16
}

TEST(AnchorGeneratorOptions, ValidateNamesTheField) {
  AnchorGeneratorOptions options;
  options.aspect_ratios.pop_back();
  EXPECT_THAT([&] { options.validate(); },
              ::testing::ThrowsMessage<ConfigError>(::testing::HasSubstr("anchors.aspect_ratios")));
  options = {};
  options.sizes[2] = {-4};
  EXPECT_THAT([&] { options.validate(); },
              ::testing::ThrowsMessage<ConfigError>(::testing::HasSubstr("anchors.sizes[2]")));
}

}  // namespace
}  // namespace instseg
