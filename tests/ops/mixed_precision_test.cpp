#include "instseg/ops/mixed_precision.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace instseg::ops {
namespace {

TEST(Bf16AutocastScope, RunsConvolutionsInBFloat16AndRestoresTheState) {
  torch::manual_seed(0);
  const auto x = torch::randn({2, 3, 9, 9}), weight = torch::randn({4, 3, 3, 3});
  ASSERT_FALSE(at::autocast::is_cpu_enabled());
  torch::Tensor inside;
  {
    Bf16AutocastScope autocast(true);
    EXPECT_TRUE(at::autocast::is_cpu_enabled());
    inside = torch::conv2d(x, weight);
    {
      Bf16AutocastScope disabled(false);  // changes nothing, on entry or exit
      EXPECT_EQ(torch::conv2d(x, weight).scalar_type(), torch::kBFloat16);
    }
    EXPECT_TRUE(at::autocast::is_cpu_enabled());
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(inside.scalar_type(), torch::kBFloat16);
  const auto outside = torch::conv2d(x, weight);
  EXPECT_EQ(outside.scalar_type(), torch::kFloat);
  // Operands rounded to bfloat16 (relative error u = 2^-8 each), products accumulated in fp32, the
  // sum rounded once more: |error| <= 2u * sum|x||w| + u * |exact| (plus fp32 noise).
  const auto exact = torch::conv2d(x.to(torch::kDouble), weight.to(torch::kDouble));
  const auto bound = torch::conv2d(x.abs().to(torch::kDouble), weight.abs().to(torch::kDouble)) / 128 +
                     exact.abs() / 256 + 1e-5;
  const auto error = (inside.to(torch::kDouble) - exact).abs();
  EXPECT_TRUE((error <= bound).all().item<bool>()) << (error / bound).max().item<double>();
  EXPECT_GT(error.max().item<double>(), 1e-3);  // and bfloat16 really was used
}

TEST(Bf16AutocastScope, DisabledScopeLeavesFloat) {
  Bf16AutocastScope autocast(false);
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(torch::matmul(torch::randn({3, 4}), torch::randn({4, 2})).scalar_type(), torch::kFloat);
}

}  // namespace
}  // namespace instseg::ops
