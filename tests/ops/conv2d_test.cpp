// ops::conv2d against LibTorch's own conv2d (what torch.nn.Conv2d runs): the output and all three
// gradients on the Winograd path, in both layouts, and the fallbacks around it.
#include "instseg/ops/conv2d.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "layer_gradients.h"

#include "instseg/ops/mixed_precision.h"

namespace instseg::ops {
namespace {

using testing::relative;

// An FPN-like convolution (32 -> 48 channels, a map whose sides are not multiples of Winograd's
// 4-pixel tiles), channels-last as in training steps and contiguous.
TEST(Conv2d, WinogradPathEqualsLibTorchsConvWithGradients) {
  torch::manual_seed(7);
  const auto w = torch::randn({48, 32, 3, 3}) * 0.1, b = torch::randn({48});
  if (!conv2d_uses_winograd(torch::randn({1, 32, 8, 8}), w, 1, 1, 1, 1)) {
    GTEST_SKIP() << "this CPU's oneDNN has no Winograd kernels (AVX-512 only)";
  }
  for (const auto format : {at::MemoryFormat::ChannelsLast, at::MemoryFormat::Contiguous}) {
    const auto x = torch::randn({2, 32, 19, 22}).relu().contiguous(format);
    const auto dy = torch::randn({2, 48, 19, 22}).contiguous(format);
    // The weight in the activations' layout, as MaskRcnn::set_channels_last_training lays it out.
    const auto ours = testing::layer_gradients(
        [](auto& x, auto& w, auto& b) { return conv2d(x, w, b, 1, 1, 1, 1, ConvKernel::kWinograd); }, x,
        w.contiguous(format), b, dy);
    const auto reference =
        testing::layer_gradients([](auto& x, auto& w, auto& b) { return torch::conv2d(x, w, b, 1, 1); }, x, w, b, dy);
    EXPECT_EQ(ours.y.sizes(), reference.y.sizes());
    EXPECT_TRUE(ours.y.is_contiguous(format));
    EXPECT_LT(relative(ours.y, reference.y), 1e-5);
    EXPECT_LT(relative(ours.dx, reference.dx), 1e-5);
    EXPECT_LT(relative(ours.dw, reference.dw), 1e-5);
    EXPECT_TRUE(ours.dw.is_contiguous(format)) << "the weight gradient is not in the weight's layout";
    EXPECT_LT(relative(ours.db, reference.db), 1e-5);
    EXPECT_FALSE(torch::equal(ours.y, reference.y)) << "the same bits: Winograd was not used";
    // Without a bias, and with a weight-only gradient (a frozen stage's output feeding a trained one).
    const auto wl = w.clone().requires_grad_(true);
    conv2d(x, wl, torch::Tensor(), 1, 1, 1, 1, ConvKernel::kWinograd).mul(dy).sum().backward();
    EXPECT_LT(relative(wl.grad(), reference.dw), 1e-5);
  }
}

TEST(Conv2d, OtherShapesAutocastAndTypesKeepLibTorchsPath) {
  const auto x = torch::randn({1, 32, 12, 12}), w = torch::randn({32, 32, 3, 3}), b = torch::randn({32});
  EXPECT_FALSE(conv2d_uses_winograd(x, w, 2, 1, 1, 1));                                  // stride 2
  EXPECT_FALSE(conv2d_uses_winograd(x, torch::randn({32, 32, 1, 1}), 1, 0, 1, 1));       // 1x1
  EXPECT_FALSE(conv2d_uses_winograd(x, w, 1, 2, 2, 1));                                  // dilated
  EXPECT_FALSE(conv2d_uses_winograd(torch::randn({1, 24, 12, 12}), torch::randn({32, 24, 3, 3}), 1, 1, 1, 1));
  EXPECT_FALSE(conv2d_uses_winograd(x.to(torch::kDouble), w.to(torch::kDouble), 1, 1, 1, 1));
  {
    Bf16AutocastScope autocast(true);
    EXPECT_FALSE(conv2d_uses_winograd(x, w, 1, 1, 1, 1));
  }
  // The fallback, and kLibTorch everywhere, is LibTorch's own conv2d, bit for bit.
  EXPECT_TRUE(torch::equal(conv2d(x, w, b, 2, 1, 1, 1, ConvKernel::kWinograd), torch::conv2d(x, w, b, 2, 1)));
  EXPECT_TRUE(torch::equal(conv2d(x, w, b, 1, 1), torch::conv2d(x, w, b, 1, 1)));
}

}  // namespace
}  // namespace instseg::ops
