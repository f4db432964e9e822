// ops::FusedConv2d against LibTorch's conv2d: the direct kernels and, for 3x3 stride-1
// convolutions of up to 256 channels, oneDNN's Winograd kernels (the default where the CPU has them).
#include "instseg/ops/fused_conv.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "instseg/ops/conv2d.h"
#include "layer_gradients.h"

namespace instseg::ops {
namespace {

using testing::relative;

// A 3x3 convolution with bias and ReLU through FusedConv2d's Winograd and direct kernels: both
// channels-last and equal to LibTorch's, and not the same bits (which would mean Winograd was not
// used) where the CPU has Winograd kernels.
void expect_winograd_and_direct_equal_libtorch(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  FusedConvOptions options;
  options.padding = 1;
  options.relu = true;
  const auto winograd = FusedConv2d(w, b, options).forward(x);
  options.winograd = false;
  const auto direct = FusedConv2d(w, b, options).forward(x);
  const auto reference = torch::conv2d(x, w, b, 1, 1).relu();
  EXPECT_TRUE(winograd.is_contiguous(at::MemoryFormat::ChannelsLast)) << x.sizes();
  EXPECT_LT(relative(winograd, reference), 1e-5) << x.sizes();
  EXPECT_LT(relative(direct, reference), 1e-5) << x.sizes();
  if (conv2d_uses_winograd(x, w, 1, 1, 1, 1)) {
    EXPECT_FALSE(torch::equal(winograd, direct)) << x.sizes() << ": the same bits, Winograd was not used";
  }
}

// A map whose sides are not multiples of Winograd's 4-pixel tiles.
TEST(FusedConv2d, WinogradAndDirectKernelsEqualLibTorchsConv) {
  torch::manual_seed(9);
  const auto x = torch::randn({1, 32, 21, 30}).contiguous(at::MemoryFormat::ChannelsLast);
  const auto w = torch::randn({48, 32, 3, 3}) * 0.1, b = torch::randn({48});
  expect_winograd_and_direct_equal_libtorch(x, w, b);
  // With a residual add (the bottlenecks' last convolution) the direct kernel serves.
  FusedConvOptions options;
  options.padding = 1;
  options.relu = true;
  const auto addend = torch::randn({1, 48, 21, 30}).contiguous(at::MemoryFormat::ChannelsLast);
  const auto summed = FusedConv2d(w, b, options).forward_add(x, addend.clone());
  EXPECT_LT(relative(summed, (torch::conv2d(x, w, b, 1, 1) + addend).relu()), 1e-5);

  // Above 256 channels (ResNet's layer4) the direct kernel serves: the same bits either way.
  const auto wide_x = torch::randn({1, 512, 6, 9}).contiguous(at::MemoryFormat::ChannelsLast);
  const auto wide_w = torch::randn({512, 512, 3, 3}) * 0.02;
  options.relu = false;
  const auto wide = FusedConv2d(wide_w, at::Tensor(), options).forward(wide_x);
  options.winograd = false;
  EXPECT_TRUE(torch::equal(wide, FusedConv2d(wide_w, at::Tensor(), options).forward(wide_x)));
  EXPECT_LT(relative(wide, torch::conv2d(wide_x, wide_w, {}, 1, 1)), 1e-5);
}

// Maps too large for one Winograd call run in pieces (docs/inference_speed.md): a 400x400 image in
// two strips of rows (the inner edges padded by the neighbouring rows, not by zeros), and a batch
// of five in groups of whole images (2 + 2 + 1: three fit in a piece).
TEST(FusedConv2d, WinogradInStripsAndImageGroupsEqualsLibTorchsConv) {
  torch::manual_seed(10);
  const auto w = torch::randn({32, 16, 3, 3}) * 0.1, b = torch::randn({32});
  for (const auto& shape : {std::vector<int64_t>{1, 16, 400, 400}, std::vector<int64_t>{5, 16, 200, 200}}) {
    expect_winograd_and_direct_equal_libtorch(torch::randn(shape).contiguous(at::MemoryFormat::ChannelsLast), w, b);
  }
}

// One layer fed RoI batches of changing sizes, as the mask head is: each runs as power-of-two
// groups (17 = 16 + 1) from parts the layer keeps across calls, and each equals LibTorch's.
TEST(FusedConv2d, WinogradOnChangingRoiCountsEqualsLibTorchsConv) {
  torch::manual_seed(11);
  const auto w = torch::randn({64, 64, 3, 3}) * 0.05, b = torch::randn({64});
  FusedConvOptions options;
  options.padding = 1;
  options.relu = true;
  const FusedConv2d conv(w, b, options);
  for (const int64_t rois : {17, 40, 5, 17, 1}) {
    const auto x = torch::randn({rois, 64, 14, 14}).contiguous(at::MemoryFormat::ChannelsLast);
    const auto y = conv.forward(x);
    EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast));
    EXPECT_LT(relative(y, torch::conv2d(x, w, b, 1, 1).relu()), 1e-5) << rois << " RoIs";
  }
}

}  // namespace
}  // namespace instseg::ops
