// The FLOP counts predict --profile divides by (engine/stage_flops.h), from the options alone,
// against counts made independently: torchvision's published ResNet-50 / ResNet-18 figures, and
// forward hooks on every convolution and linear layer torchvision's own Mask R-CNN v1 and v2 run
// (tests/reference/stage_flops.py), stage by stage.
#include "instseg/engine/stage_flops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support/reference.h"

namespace instseg {
namespace {

// torchvision's model table: resnet50 4.09 GFLOPS and resnet18 1.81 at 224x224, counted as
// multiply-adds (the classifier's 2048x1000 / 512x1000 included: 0.002 / 0.0005 G).
TEST(StageFlops, ResnetBodiesMatchTorchvisionPublishedCounts) {
  EXPECT_NEAR(resnet_body_flops(50, 224, 224) / 2e9, 4.09, 0.01 * 4.09);
  EXPECT_NEAR(resnet_body_flops(18, 224, 224) / 2e9, 1.81, 0.01 * 1.81);
}

void expect_stages_match_hooks(const MaskRcnnOptions& options, const std::string& file) {
  auto ref = testing::load_tensors(testing::reference_dir("stage_flops") + "/" + file);
  const std::array<int64_t, 2> input{ref.at("input_h").item<int64_t>(), ref.at("input_w").item<int64_t>()};
  // The script's image: 300x400 at min_size 320, max_size 512.
  EXPECT_EQ(input, padded_input_size(options, 300, 400));
  const int64_t proposals = ref.at("proposals").item<int64_t>();
  const int64_t detections = ref.at("detections").item<int64_t>();
  EXPECT_LE(proposals, max_proposals(options, input));
  EXPECT_EQ(detections, options.roi_heads.detections_per_img);

  // The module path (fused = false): the stages torchvision's layers map onto one to one.
  const StageFlops modules = stage_flops(options, input, proposals, detections, /*fused=*/false);
  for (const char* stage : {"backbone.body", "backbone.fpn", "rpn.head", "box.head", "mask.head", "mask.predictor"}) {
    const double expected = ref.at(stage).item<double>();
    EXPECT_NEAR(modules.of(stage), expected, 1e-9 * expected) << file << " " << stage;
  }
  // The fused path computes the detected class's mask logits only: one 28x28 1x1 conv of the
  // mask channels per detection instead of num_classes.
  const StageFlops fused = stage_flops(options, input, proposals, detections, /*fused=*/true);
  const double logits_per_class = 2.0 * options.roi_heads.mask_channels * 28 * 28 * detections;
  EXPECT_NEAR(fused.of("mask.head"),
              modules.of("mask.head") + modules.of("mask.predictor") - (options.num_classes - 1) * logits_per_class,
              1.0);
  EXPECT_EQ(fused.of("mask.predictor"), 0.0);
  EXPECT_EQ(fused.of("backbone.body"), modules.of("backbone.body"));
}

MaskRcnnOptions small_input(MaskRcnnOptions options) {
  options.transform.min_size = {320};
  options.transform.max_size = 512;
  return options;
}

TEST(StageFlops, V1StagesMatchTorchvisionLayerHooks) {
  expect_stages_match_hooks(small_input(MaskRcnnOptions::v1()), "flops_v1.pt");
}

TEST(StageFlops, V1WithoutLayer4MatchesTorchvisionLayerHooks) {
  MaskRcnnOptions options = small_input(MaskRcnnOptions::v1());
  options.backbone.returned_layers = {1, 2, 3};
  options.anchors.sizes.pop_back();
  options.anchors.aspect_ratios.pop_back();
  expect_stages_match_hooks(options, "flops_v1_3levels.pt");
  // What the hooks count: no layer4 in the body, one FPN level fewer.
  const StageFlops full = stage_flops(small_input(MaskRcnnOptions::v1()), {320, 448}, 1000, 100);
  const StageFlops fewer = stage_flops(options, {320, 448}, 1000, 100);
  EXPECT_LT(fewer.of("backbone.body"), full.of("backbone.body"));
  EXPECT_LT(fewer.of("backbone.fpn"), full.of("backbone.fpn"));
}

TEST(StageFlops, V2StagesMatchTorchvisionLayerHooks) {
  expect_stages_match_hooks(small_input(MaskRcnnOptions::v2()), "flops_v2.pt");
}

// The figure: Mask R-CNN R50-FPN v1 is ~538 GFLOP for an 800x1344 input at 1000
// proposals and 100 detections (v2 ~873), counted elsewhere: 534.8 and 869.5 here.
TEST(StageFlops, WholeModelsAtEightHundredPixels) {
  const std::array<int64_t, 2> input{800, 1344};
  const double v1 = stage_flops(MaskRcnnOptions::v1(), input, 1000, 100).total() / 1e9;
  const double v2 = stage_flops(MaskRcnnOptions::v2(), input, 1000, 100).total() / 1e9;
  EXPECT_NEAR(v1, 538, 0.02 * 538);
  EXPECT_NEAR(v2, 873, 0.02 * 873);
  EXPECT_EQ(max_proposals(MaskRcnnOptions::v1(), input), 1000);
}

}  // namespace
}  // namespace instseg
