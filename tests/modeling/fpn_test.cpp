// The FPN alone, fed torchvision's own ResNet-50 outputs, so a mismatch points at this stage.
#include "instseg/modeling/backbone/fpn.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "modeling/stage_reference.h"

namespace instseg {
namespace {

using testing::relative_max_diff;

TEST(FeaturePyramidNetwork, MatchesTorchvisionOnTorchvisionBodyOutputs) {
  FeaturePyramidNetwork fpn(std::vector<int64_t>{256, 512, 1024, 2048}, 256, NormKind::kNone);
  testing::assign_state(*fpn, testing::load_stage("v1_state"), "backbone.fpn.");
  const auto ref = testing::load_stage("v1_small");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> body;
  for (int i = 0; i < 4; ++i) body.push_back(ref.at("body." + std::to_string(i)));
  const auto maps = fpn->forward(body);
  ASSERT_EQ(maps.size(), 5u);
  for (const auto& map : maps) {
    const auto& expected = ref.at("fpn." + map.name);
    ASSERT_EQ(map.tensor.sizes(), expected.sizes()) << map.name;
    EXPECT_LT(relative_max_diff(map.tensor, expected), 1e-5) << map.name;
  }
}

// Odd sizes: the top-down path upsamples to each lateral's exact size, and "pool" takes every
// other cell starting at 0 (kernel 1, stride 2), hence ceil(size / 2).
TEST(FeaturePyramidNetwork, HandlesOddSizesAndPoolsTheLastLevel) {
  FeaturePyramidNetwork fpn(std::vector<int64_t>{4, 8}, 6, NormKind::kBatchNorm);
  fpn->eval();
  torch::NoGradGuard no_grad;
  const auto maps = fpn->forward({torch::randn({1, 4, 13, 9}), torch::randn({1, 8, 7, 5})});
  ASSERT_EQ(maps.size(), 3u);
  EXPECT_EQ(maps[0].tensor.sizes(), (std::vector<int64_t>{1, 6, 13, 9}));
  EXPECT_EQ(maps[1].tensor.sizes(), (std::vector<int64_t>{1, 6, 7, 5}));
  EXPECT_EQ(maps[2].name, "pool");
  using torch::indexing::Slice;
  EXPECT_TRUE(torch::equal(maps[2].tensor,
                           maps[1].tensor.index({Slice(), Slice(), Slice(0, torch::indexing::None, 2), Slice(0, torch::indexing::None, 2)})));
  const auto names = fpn->named_buffers();
  EXPECT_TRUE(names.contains("inner_blocks.1.1.running_mean"));
  EXPECT_TRUE(names.contains("layer_blocks.0.1.running_var"));
}

}  // namespace
}  // namespace instseg
