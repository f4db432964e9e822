// ResNet body and ResNet-FPN backbone against torchvision 0.14 on the same weights and images.
#include "instseg/modeling/backbone/resnet_fpn.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/errors.h"
#include "modeling/stage_reference.h"

namespace instseg {
namespace {

using testing::assign_state;
using testing::load_stage;
using testing::relative_max_diff;

// Plain ResNets (fc dropped) at a 64x96 input: basic blocks (18, 34) and the 23-block stage (101).
class ResNetDepth : public ::testing::TestWithParam<int> {};

TEST_P(ResNetDepth, LayerOutputsMatchTorchvision) {
  const int depth = GetParam();
  auto ref = load_stage("resnet" + std::to_string(depth));
  ResNet net(ResNetOptions{depth, NormKind::kFrozenBatchNorm});
  assign_state(*net, ref, "state.");
  torch::NoGradGuard no_grad;
  const auto outputs = net->forward(ref.at("input"));
  ASSERT_EQ(outputs.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const auto& expected = ref.at("layer" + std::to_string(i + 1));
    ASSERT_EQ(outputs[i].sizes(), expected.sizes()) << "layer" << i + 1;
    EXPECT_LT(relative_max_diff(outputs[i], expected), 1e-4) << "layer" << i + 1;
  }
  EXPECT_EQ(outputs[3].size(1), net->out_channels()[3]);
}

// Training with Winograd kernels and frozen norm folded into the convolutions (set_fast_training,
// what channels-last training steps use): outputs as close to torchvision's as the plain path;
// and in double (Winograd is fp32 only, so this checks the folding)
// precision, where no ReLU flips on rounding, the outputs and every convolution weight's gradient
// are the unfolded ones.
// Basic blocks (18) and bottlenecks (101).
class FastTrainingDepth : public ::testing::TestWithParam<int> {};

TEST_P(FastTrainingDepth, FoldedFrozenNormGivesTheUnfoldedOutputsAndGradients) {
  const int depth = GetParam();
  auto ref = load_stage("resnet" + std::to_string(depth));
  ResNet net(ResNetOptions{depth, NormKind::kFrozenBatchNorm});
  assign_state(*net, ref, "state.");
  net->set_fast_training(true);
  EXPECT_TRUE(net->fast_training());
  {
    torch::NoGradGuard no_grad;
    const auto outputs = net->forward(ref.at("input"));
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_LT(relative_max_diff(outputs[i], ref.at("layer" + std::to_string(i + 1))), 1e-4) << "layer" << i + 1;
    }
  }

  net->to(torch::kFloat64);
  const auto input = ref.at("input").to(torch::kFloat64);
  const auto pass = [&](bool fold, std::vector<torch::Tensor>& grads) {
    net->set_fast_training(fold);
    const auto outputs = net->forward(input);
    auto generator = at::detail::createCPUGenerator(5);
    torch::Tensor loss = torch::zeros({}, torch::kFloat64);
    for (const auto& out : outputs) {
      loss = loss + (out * at::randn(out.sizes(), generator, torch::kFloat64)).sum();
    }
    loss.backward();
    for (auto& p : net->parameters()) {
      grads.push_back(p.grad().clone());
      p.mutable_grad() = torch::Tensor();
    }
    return outputs;
  };
  std::vector<torch::Tensor> plain_grads, folded_grads;
  const auto plain = pass(false, plain_grads);
  const auto folded = pass(true, folded_grads);
  for (size_t i = 0; i < 4; ++i) EXPECT_LT(relative_max_diff(folded[i], plain[i]), 1e-12) << "layer" << i + 1;
  EXPECT_FALSE(folded[3].equal(plain[3])) << "the same bits: nothing was folded";
  ASSERT_EQ(folded_grads.size(), plain_grads.size());
  ASSERT_GE(plain_grads.size(), 20u);  // ResNet-18 has 20 convolutions
  for (size_t i = 0; i < plain_grads.size(); ++i) {
    EXPECT_LT(relative_max_diff(folded_grads[i], plain_grads[i]), 1e-10) << "parameter " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Depths, ResNetDepth, ::testing::Values(18, 34, 101));
INSTANTIATE_TEST_SUITE_P(Depths, FastTrainingDepth, ::testing::Values(18, 101));

// maskrcnn_resnet50_fpn (v1) on two tiny_coco images resized to min_size 320: every body level
// and every FPN map, the whole backbone in one pass.
TEST(ResnetFpn, V1BodyAndFeatureMapsMatchTorchvision) {
  ResnetFpn backbone(BackboneOptions{});
  assign_state(*backbone, load_stage("v1_state"), "backbone.");
  const auto ref = load_stage("v1_small");
  torch::NoGradGuard no_grad;
  const auto& batch = ref.at("batch");  // [2, 3, 480, 512]

  const auto body = backbone->body->forward(batch);
  for (int i = 0; i < 4; ++i) {
    const auto& expected = ref.at("body." + std::to_string(i));
    ASSERT_EQ(body[i].sizes(), expected.sizes());
    EXPECT_LT(relative_max_diff(body[i], expected), 1e-4) << "body." << i;
  }
  const auto maps = backbone->fpn->forward(body);
  const std::vector<std::string> names{"0", "1", "2", "3", "pool"};
  ASSERT_EQ(maps.size(), names.size());
  for (size_t l = 0; l < names.size(); ++l) {
    EXPECT_EQ(maps[l].name, names[l]);
    const auto& expected = ref.at("fpn." + names[l]);
    ASSERT_EQ(maps[l].tensor.sizes(), expected.sizes()) << names[l];
    EXPECT_LT(relative_max_diff(maps[l].tensor, expected), 1e-4) << names[l];
  }
}

// v2: batch-normed FPN (inner_blocks.i.1 / layer_blocks.i.1), same body.
TEST(ResnetFpn, V2FeatureMapsMatchTorchvision) {
  BackboneOptions options;
  options.fpn_norm = NormKind::kBatchNorm;
  ResnetFpn backbone(options);
  assign_state(*backbone, load_stage("v2_state"), "backbone.");
  backbone->eval();
  const auto ref = load_stage("v2_small");
  torch::NoGradGuard no_grad;
  const auto maps = backbone->forward(load_stage("v1_small").at("batch"));
  for (const auto& map : maps) {
    EXPECT_LT(relative_max_diff(map.tensor, ref.at("fpn." + map.name)), 1e-4) << map.name;
  }
}

// torchvision's trainable_backbone_layers: stages outside the last `trainable_layers` are frozen.
TEST(ResnetFpn, TrainableLayersFreezeTheEarlyStages) {
  auto trainable = [](int layers, NormKind norm) {
    BackboneOptions options;
    options.depth = 18;
    options.norm = norm;
    options.trainable_layers = layers;
    ResnetFpn backbone(options);
    std::set<std::string> prefixes;
    for (const auto& p : backbone->body->named_parameters()) {
      if (p.value().requires_grad()) prefixes.insert(p.key().substr(0, p.key().find('.')));
    }
    return prefixes;
  };
  using S = std::set<std::string>;
  EXPECT_EQ(trainable(3, NormKind::kFrozenBatchNorm), (S{"layer2", "layer3", "layer4"}));
  EXPECT_EQ(trainable(0, NormKind::kFrozenBatchNorm), S{});
  // Frozen batch norm holds buffers only; with trainable norms, 5 also trains the stem's bn1.
  EXPECT_EQ(trainable(5, NormKind::kBatchNorm),
            (S{"bn1", "conv1", "layer1", "layer2", "layer3", "layer4"}));
}

// Group norm (training from scratch) keeps torchvision's names, so checkpoints map the same way.
TEST(ResnetFpn, GroupNormBackboneKeepsNamesAndStrides) {
  BackboneOptions options;
  options.depth = 18;
  options.norm = NormKind::kGroupNorm;
  options.fpn_norm = NormKind::kGroupNorm;
  ResnetFpn backbone(options);
  const auto params = backbone->named_parameters();
  EXPECT_TRUE(params.contains("body.layer2.0.downsample.1.weight"));
  EXPECT_TRUE(params.contains("fpn.inner_blocks.3.1.weight"));
  EXPECT_FALSE(params.contains("fpn.inner_blocks.3.0.bias"));  // the norm makes a bias redundant
  torch::NoGradGuard no_grad;
  const auto maps = backbone->forward(torch::rand({1, 3, 96, 64}));
  const std::vector<std::vector<int64_t>> sizes{{24, 16}, {12, 8}, {6, 4}, {3, 2}, {2, 1}};
  for (size_t l = 0; l < maps.size(); ++l) {
    EXPECT_EQ(maps[l].tensor.size(1), 256);
    EXPECT_EQ(maps[l].tensor.size(2), sizes[l][0]) << maps[l].name;
    EXPECT_EQ(maps[l].tensor.size(3), sizes[l][1]) << maps[l].name;
  }
}

TEST(ResnetFpn, ValidateNamesTheField) {
  BackboneOptions options;
  options.depth = 42;
  EXPECT_THAT([&] { options.validate(); },
              ::testing::ThrowsMessage<ConfigError>(::testing::HasSubstr("backbone.depth")));
  options = {};
  options.trainable_layers = 6;
  EXPECT_THAT([&] { options.validate(); },
              ::testing::ThrowsMessage<ConfigError>(::testing::HasSubstr("backbone.trainable_layers")));
  options = {};
  options.norm = NormKind::kNone;
  EXPECT_THAT([&] { options.validate(); },
              ::testing::ThrowsMessage<ConfigError>(::testing::HasSubstr("backbone.norm")));
}

}  // namespace
}  // namespace instseg
