// upsample_conv2x2 against LibTorch's own transposed convolution (the kernel torchvision's
// nn.ConvTranspose2d runs): outputs and all three gradients, in double and in float, for contiguous
// and channels-last inputs.
#include "instseg/ops/upsample_conv.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "layer_gradients.h"

namespace instseg::ops {
namespace {

void expect_equal_to_conv_transpose(torch::ScalarType dtype, double tolerance, at::MemoryFormat format) {
  torch::manual_seed(3);
  const auto options = torch::TensorOptions().dtype(dtype);
  // Mask-head shapes: RoIs x channels x 14 x 14 (non-square here to catch a swapped axis).
  const auto x = torch::randn({5, 6, 7, 9}, options).contiguous(format), w = torch::randn({6, 4, 2, 2}, options);
  const auto b = torch::randn({4}, options), dy = torch::randn({5, 4, 14, 18}, options).contiguous(format);
  const auto ours = testing::layer_gradients([](auto& x, auto& w, auto& b) { return upsample_conv2x2(x, w, b); }, x, w, b, dy);
  const auto reference = testing::layer_gradients([](auto& x, auto& w, auto& b) { return torch::conv_transpose2d(x, w, b, 2); }, x, w, b, dy);
  EXPECT_TRUE(ours.y.is_contiguous(format)) << "the output is not in the input's layout";
  for (const auto& [name, a, r] : {std::tuple{"output", ours.y, reference.y}, std::tuple{"grad x", ours.dx, reference.dx},
                                   std::tuple{"grad weight", ours.dw, reference.dw},
                                   std::tuple{"grad bias", ours.db, reference.db}}) {
    ASSERT_EQ(a.sizes(), r.sizes()) << name;
    const double err = (a - r).abs().max().item<double>(), scale = r.abs().max().item<double>();
    EXPECT_LE(err, tolerance * scale) << name << ": max abs difference " << err;
  }
}

TEST(UpsampleConv, EqualsConvTranspose2dForwardAndBackwardInDouble) {
  expect_equal_to_conv_transpose(torch::kFloat64, 1e-13, at::MemoryFormat::Contiguous);
}

TEST(UpsampleConv, EqualsConvTranspose2dForwardAndBackwardInFloat) {
  expect_equal_to_conv_transpose(torch::kFloat32, 1e-5, at::MemoryFormat::Contiguous);
}

// Channels-last inputs (training with that step setting) take the blocks-of-2x2 path.
TEST(UpsampleConv, ChannelsLastEqualsConvTranspose2dForwardAndBackward) {
  expect_equal_to_conv_transpose(torch::kFloat64, 1e-13, at::MemoryFormat::ChannelsLast);
  expect_equal_to_conv_transpose(torch::kFloat32, 1e-5, at::MemoryFormat::ChannelsLast);
}

TEST(UpsampleConv, WithoutBiasAndEmptyBatch) {
  // Inputs that need gradients, so the matrix-product path runs (without them it is LibTorch's).
  const auto w = torch::randn({3, 2, 2, 2}).requires_grad_(true);
  const auto x = torch::randn({2, 3, 4, 4}).requires_grad_(true);
  EXPECT_TRUE(torch::allclose(upsample_conv2x2(x, w, {}), torch::conv_transpose2d(x, w, {}, 2), 1e-5, 1e-6));
  const auto empty = torch::zeros({0, 3, 14, 14}).requires_grad_(true);
  EXPECT_EQ(upsample_conv2x2(empty, w, {}).sizes(), (std::vector<int64_t>{0, 2, 28, 28}));
}

TEST(UpsampleConv, RejectsOtherKernelSizes) {
  EXPECT_THROW(upsample_conv2x2(torch::zeros({1, 3, 4, 4}), torch::zeros({3, 2, 3, 3}), {}), c10::Error);
}

}  // namespace
}  // namespace instseg::ops
