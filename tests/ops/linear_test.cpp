// ops::linear against LibTorch's own linear (what torch.nn.Linear runs): the output and all three
// gradients, on the oneDNN path and around it.
#include "instseg/ops/linear.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "layer_gradients.h"

#include "instseg/ops/mixed_precision.h"

namespace instseg::ops {
namespace {

using testing::relative;

// A box-head-like product on the oneDNN path (300 RoIs, 1568 -> 160: 75M
// multiply-adds), non-square so that a transposed operand shows.
TEST(Linear, OneDnnPathEqualsLibTorchsLinearWithGradients) {
  torch::manual_seed(5);
  const auto x = torch::randn({300, 1568}), w = torch::randn({160, 1568}) * 0.02, b = torch::randn({160});
  const auto dy = torch::randn({300, 160});
  ASSERT_TRUE(linear_uses_onednn(x, w));
  const auto ours = testing::layer_gradients([](auto& x, auto& w, auto& b) { return linear(x, w, b, LinearKernel::kOneDnn); }, x, w, b, dy);
  const auto reference =
      testing::layer_gradients([](auto& x, auto& w, auto& b) { return torch::nn::functional::linear(x, w, b); }, x, w, b, dy);
  EXPECT_TRUE(ours.y.is_contiguous() && !ours.y.is_mkldnn());
  EXPECT_LT(relative(ours.y, reference.y), 1e-5);
  EXPECT_LT(relative(ours.dx, reference.dx), 1e-5);
  EXPECT_LT(relative(ours.dw, reference.dw), 1e-5);
  EXPECT_LT(relative(ours.db, reference.db), 1e-5);
  EXPECT_FALSE(ours.dw.is_mkldnn());
  // Without a bias, and with a non-contiguous input (a transposed view).
  const auto xt = x.t().contiguous().t();
  ASSERT_FALSE(xt.is_contiguous());
  EXPECT_LT(relative(linear(xt, w, torch::Tensor(), LinearKernel::kOneDnn), torch::nn::functional::linear(x, w)), 1e-5);
}

TEST(Linear, SmallProductsAutocastAndOtherTypesKeepLibTorchsPath) {
  const auto w = torch::randn({160, 1568});
  EXPECT_FALSE(linear_uses_onednn(torch::randn({8, 1568}), w));  // 2M multiply-adds
  EXPECT_FALSE(linear_uses_onednn(torch::randn({300, 1568}, torch::kDouble), w.to(torch::kDouble)));
  EXPECT_FALSE(linear_uses_onednn(torch::randn({0, 1568}), w));
  {
    Bf16AutocastScope autocast(true);
    EXPECT_FALSE(linear_uses_onednn(torch::randn({300, 1568}), w));
  }
  // The fallback, and kLibTorch at any size, is LibTorch's own linear, bit for bit.
  const auto x = torch::randn({8, 1568}), b = torch::randn({160});
  EXPECT_TRUE(torch::equal(linear(x, w, b, LinearKernel::kOneDnn), torch::nn::functional::linear(x, w, b)));
  const auto large = torch::randn({300, 1568});
  EXPECT_TRUE(torch::equal(linear(large, w, b), torch::nn::functional::linear(large, w, b)));
}

}  // namespace
}  // namespace instseg::ops
