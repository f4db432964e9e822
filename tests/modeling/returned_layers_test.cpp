// A Mask R-CNN whose FPN is fed by ResNet stages 1..3 only (BackboneOptions::returned_layers, on a
// ResNet-18 body) against torchvision's MaskRCNN(_resnet_fpn_extractor(resnet18, 3,
// returned_layers=[1, 2, 3]), 4 anchor levels) on the same weights and images
// (tests/reference/returned_layers.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "instseg/modeling/mask_rcnn.h"
#include "modeling/rcnn_reference.h"

namespace instseg {
namespace {

// The stages torchvision's model returns; the body ends at the last one.
const std::vector<int> kReturnedLayers{1, 2, 3};

testing::TensorDict reference(const std::string& name) {
  return testing::load_tensors(testing::reference_dir("returned_layers") + "/" + name + ".pt");
}

// torchvision's model above at min_size 320, max_size 512: one anchor size per FPN map (the
// returned layers' and "pool"), sides 32, 64, 128, 256, three ratios each.
MaskRcnn make_model() {
  MaskRcnnOptions options = MaskRcnnOptions::v1();
  options.backbone.depth = 18;
  options.backbone.returned_layers = kReturnedLayers;
  options.anchors.sizes.clear();
  options.anchors.aspect_ratios.clear();
  for (size_t level = 0; level <= kReturnedLayers.size(); ++level) {
    options.anchors.sizes.push_back({32.0 * (1 << level)});
    options.anchors.aspect_ratios.push_back({0.5, 1.0, 2.0});
  }
  options.transform.min_size = {320};
  options.transform.max_size = 512;
  return MaskRcnn(options);
}

// Copies torchvision's weights into a new model, every key of them used (copy_state_counted fails
// the test on a key or shape the model has and torchvision lacks), in eval mode.
MaskRcnn loaded_model(const testing::TensorDict& weights) {
  auto model = make_model();
  EXPECT_EQ(testing::copy_state_counted(*model, weights), static_cast<int>(weights.size()))
      << "torchvision keys the model does not have";
  model->eval();
  return model;
}

TEST(ReturnedLayers, StateDictKeysAndShapesMatchTorchvision) {
  const auto weights = reference("weights");
  auto model = make_model();
  testing::expect_same_keys_and_shapes(*model, weights);
  // What the comparison above covers: torchvision's body stops at layer3, its FPN has 3 levels.
  const auto has_prefix = [](const auto& dict, const std::string& prefix) {
    for (const auto& [key, value] : dict) {
      if (key.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  EXPECT_TRUE(has_prefix(weights, "backbone.body.layer3."));
  EXPECT_FALSE(has_prefix(weights, "backbone.body.layer4."));
  EXPECT_TRUE(has_prefix(weights, "backbone.fpn.inner_blocks.2."));
  EXPECT_FALSE(has_prefix(weights, "backbone.fpn.inner_blocks.3."));
}

// The transform's batch, then the backbone on torchvision's own batch: "0".."2" at strides 4..16
// and "pool", as torchvision's, within float rounding of the convolutions (relative to each map's
// largest magnitude, the bound backbone_test.cpp sets for the full backbone) on the module code
// and on prepare_inference's fused backbone. Measured: <= 5e-7 (modules), <= 1.5e-6 (fused).
class ReturnedLayersFeatures : public ::testing::TestWithParam<bool> {};

TEST_P(ReturnedLayersFeatures, FeaturesMatchTorchvision) {
  const bool fused = GetParam();
  const auto ref = reference("e2e");
  auto model = loaded_model(reference("weights"));
  if (fused) model->prepare_inference();
  ASSERT_EQ(model->inference_prepared(), fused);
  torch::NoGradGuard no_grad;

  const auto batch = model->transform().forward({testing::input_image(ref.at("image_0")),
                                                 testing::input_image(ref.at("image_1"))});
  ASSERT_EQ(batch.tensors.sizes(), ref.at("batch").sizes());
  EXPECT_LT(testing::max_abs_diff(batch.tensors, ref.at("batch")), 1e-4);
  EXPECT_EQ(batch.image_sizes, testing::stage_image_sizes(ref));

  const auto maps = model->backbone()->forward(ref.at("batch"));
  const std::vector<std::string> names{"0", "1", "2", "pool"};
  ASSERT_EQ(maps.size(), names.size());
  for (size_t l = 0; l < names.size(); ++l) {
    EXPECT_EQ(maps[l].name, names[l]);
    const auto& expected = ref.at("feat_" + names[l]);
    ASSERT_EQ(maps[l].tensor.sizes(), expected.sizes()) << names[l];
    const double relative =
        testing::max_abs_diff(maps[l].tensor, expected) / expected.abs().max().item<double>();
    EXPECT_LT(relative, 1e-4) << names[l];
  }
}

// Every detection and mask of the batch of both images against torchvision's
// (testing::expect_matches_reference: labels, box IoU, scores, 28x28 and pasted masks), on the
// modules' code and on predict's fused path. Measured: all 100 detections of each image paired,
// 1 - IoU <= 3.3e-6, |score difference| <= 7.3e-6, 28x28 probabilities <= 7e-6.
class ReturnedLayersDetections : public ::testing::TestWithParam<bool> {};

TEST_P(ReturnedLayersDetections, DetectionsMatchTorchvision) {
  const bool fused = GetParam();
  const auto ref = reference("e2e");
  auto model = loaded_model(reference("weights"));
  if (fused) model->prepare_inference();
  ASSERT_EQ(model->inference_prepared(), fused);
  const std::vector<torch::Tensor> batch{testing::input_image(ref.at("image_0")),
                                         testing::input_image(ref.at("image_1"))};
  const auto detections = model->predict_box_masks(batch);
  ASSERT_EQ(detections.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    testing::expect_matches_reference(
        detections[i], model->mask_paster(detections[i], batch[i].size(1), batch[i].size(2)), ref, i);
  }
}

const auto kPath = [](const ::testing::TestParamInfo<bool>& info) {
  return std::string(info.param ? "fused" : "modules");
};
INSTANTIATE_TEST_SUITE_P(Paths, ReturnedLayersFeatures, ::testing::Bool(), kPath);
INSTANTIATE_TEST_SUITE_P(Paths, ReturnedLayersDetections, ::testing::Bool(), kPath);

}  // namespace
}  // namespace instseg
