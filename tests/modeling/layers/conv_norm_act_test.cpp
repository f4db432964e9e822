// The shared conv (+norm) (+ReLU) block: torchvision Conv2dNormActivation's children and
// numerics, and each stage's initialisation.
#include "instseg/modeling/layers/conv_norm_act.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <string>

namespace instseg {
namespace {

std::set<std::string> state_keys(torch::nn::Module& m) {
  std::set<std::string> keys;
  for (const auto& p : m.named_parameters()) keys.insert(p.key());
  for (const auto& b : m.named_buffers()) keys.insert(b.key());
  return keys;
}

// Keys as torchvision's: "0" conv (bias only without norm), "1" norm; ReLU holds no state.
TEST(ConvNormAct, ChildrenAndBiasAsTorchvision) {
  ConvNormAct plain(ConvNormActOptions(4, 8, 3));
  EXPECT_EQ(state_keys(*plain), (std::set<std::string>{"0.weight", "0.bias"}));
  EXPECT_EQ(plain->size(), 2u);  // conv, ReLU
  ConvNormAct normed(ConvNormActOptions(4, 8, 3).norm(NormKind::kBatchNorm));
  EXPECT_EQ(state_keys(*normed),
            (std::set<std::string>{"0.weight", "1.weight", "1.bias", "1.running_mean",
                                   "1.running_var", "1.num_batches_tracked"}));
  EXPECT_EQ(normed->size(), 3u);  // conv, norm, ReLU
  ConvNormAct no_act(ConvNormActOptions(4, 8, 1).norm(NormKind::kFrozenBatchNorm).relu(false));
  EXPECT_EQ(no_act->size(), 2u);
}

// Output = relu(batch_norm(conv2d(x))) with torchvision's padding (kernel - 1) / 2 * dilation.
TEST(ConvNormAct, ComputesConvNormRelu) {
  torch::manual_seed(3);
  ConvNormAct block(ConvNormActOptions(4, 6, 3).dilation(2).norm(NormKind::kBatchNorm));
  block->eval();
  auto& conv = *block[0]->as<torch::nn::Conv2d>();
  auto& bn = *block[1]->as<torch::nn::BatchNorm2d>();
  {
    torch::NoGradGuard no_grad;
    bn.running_mean.copy_(torch::randn({6}));
    bn.running_var.copy_(torch::rand({6}) + 0.5);
    bn.weight.copy_(torch::randn({6}));
    bn.bias.copy_(torch::randn({6}));
  }
  const auto x = torch::randn({2, 4, 9, 11});
  const auto expected = torch::relu(torch::batch_norm(
      torch::conv2d(x, conv.weight, {}, 1, /*padding=*/2, /*dilation=*/2), bn.weight, bn.bias,
      bn.running_mean, bn.running_var, /*training=*/false, 0.1, 1e-5, false));
  const auto y = block->forward(x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 6, 9, 11}));
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-6));
  EXPECT_LT(y.min().item<double>(), 1e-12);  // the ReLU clipped something
  // Strided 1x1 (the ResNet shortcut): every other pixel.
  ConvNormAct shortcut(ConvNormActOptions(4, 6, 1).stride(2).norm(NormKind::kFrozenBatchNorm).relu(false));
  EXPECT_EQ(shortcut->forward(x).sizes(), (std::vector<int64_t>{2, 6, 5, 6}));
}

double std_of(const torch::Tensor& t) { return t.std().item<double>(); }

// Each stage's torchvision initialisation: FPN kaiming_uniform(a=1), heads kaiming_normal over
// fan_out, both with zero bias; the default keeps nn.Conv2d's own (non-zero bias).
TEST(ConvNormAct, InitialisesAsTheStageAsks) {
  torch::manual_seed(0);
  const int64_t in = 64, out = 128, k = 3;
  ConvNormAct fpn(ConvNormActOptions(in, out, k).relu(false).init(ConvInit::kKaimingUniform));
  const auto& w_fpn = fpn[0]->as<torch::nn::Conv2d>()->weight;
  const double bound = std::sqrt(3.0 / (in * k * k));  // gain sqrt(2 / (1 + 1)) = 1
  EXPECT_LE(w_fpn.abs().max().item<double>(), bound);
  EXPECT_GT(w_fpn.abs().max().item<double>(), 0.99 * bound);
  EXPECT_EQ(fpn[0]->as<torch::nn::Conv2d>()->bias.abs().sum().item<double>(), 0.0);

  ConvNormAct head(ConvNormActOptions(in, out, k).init(ConvInit::kKaimingNormalFanOut));
  const double expected_std = std::sqrt(2.0 / (out * k * k));
  EXPECT_NEAR(std_of(head[0]->as<torch::nn::Conv2d>()->weight), expected_std, 0.03 * expected_std);
  EXPECT_EQ(head[0]->as<torch::nn::Conv2d>()->bias.abs().sum().item<double>(), 0.0);

  ConvNormAct plain(ConvNormActOptions(in, out, k));
  EXPECT_GT(plain[0]->as<torch::nn::Conv2d>()->bias.abs().sum().item<double>(), 0.0);
  const double default_bound = 1.0 / std::sqrt(in * k * k);  // kaiming_uniform(a = sqrt(5))
  EXPECT_LE(plain[0]->as<torch::nn::Conv2d>()->weight.abs().max().item<double>(), default_bound);
}

}  // namespace
}  // namespace instseg
